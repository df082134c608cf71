#!/usr/bin/env bash
# The peer's own environment for the side-by-side benchmarks (never the test environment): MultiVae from PyPI
# beside the same CPU torch, torchvision 0.28.0 with the import workaround of scripts/setup.sh, and mmbench
# itself (editable, no extras), so one process can time both on identical network modules.
#   bash benchmarks/setup_multivae.sh      -> benchmarks/.venv-multivae
set -euo pipefail
cd "$(dirname "$0")/.."
ENV=benchmarks/.venv-multivae
PY=${PYTHON:-python3}
[ -x "$ENV/bin/python" ] || "$PY" -m venv "$ENV"
"$ENV/bin/python" -m pip install -q "torch==2.13.0"
"$ENV/bin/python" -m pip install -q "torchvision==0.28.0"
"$ENV/bin/python" -m pip install -q "multivae" "torch==2.13.0" "torchvision==0.28.0"
"$ENV/bin/python" -m pip install -q --no-deps -e .
"$ENV/bin/python" -m pip install -q numpy pandas tqdm scipy scikit-learn tabulate submitit matplotlib pillow
if ! "$ENV/bin/python" -c "import torchvision" >/dev/null 2>&1; then
    SITE=$("$ENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    cp scripts/torchvision_cpu_fix.py "$SITE/_mmbench_torchvision_cpu_fix.py"
    echo "import _mmbench_torchvision_cpu_fix" > "$SITE/_mmbench_torchvision_cpu_fix.pth"
fi
"$ENV/bin/python" -c "import multivae, mmbench; print('multivae', multivae.__version__ if hasattr(multivae, '__version__') else '?')"
