#!/usr/bin/env bash
# Set up mmbench in ./.venv on a fresh machine: CPU PyTorch first (pinned, so pip takes the local CPU
# build rather than downloading CUDA packages; torchvision 0.28.0 is the release that matches it, pulled by
# pytorch-fid), then mmbench with its build, test and lint extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q "torchvision==0.28.0"
.venv/bin/python -m pip install -q -e ".[build,test,lint]"
# torchvision's wheel is built for CUDA; beside the CPU torch its import needs two ops declared (DESIGN.md)
if ! .venv/bin/python -c "import torchvision" >/dev/null 2>&1; then
    SITE=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    cp scripts/torchvision_cpu_fix.py "$SITE/_mmbench_torchvision_cpu_fix.py"
    echo "import _mmbench_torchvision_cpu_fix" > "$SITE/_mmbench_torchvision_cpu_fix.pth"
    .venv/bin/python -c "import torchvision" || { echo "torchvision does not import in .venv" >&2; exit 1; }
fi
echo "mmbench is installed in $(pwd)/.venv (activate with: source .venv/bin/activate)"
