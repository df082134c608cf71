#!/usr/bin/env bash
# The tests on a fresh machine: set up (SLURM, munge, Chromium and texlive from Debian's packages when this is a
# root shell with apt-get; without them the cluster, browser and LaTeX tests skip and say why), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if { ! command -v slurmctld >/dev/null || ! command -v chromium >/dev/null || ! command -v pdflatex >/dev/null; } && [ "$(id -u)" = 0 ] && \
        command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge chromium >/dev/null && \
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends texlive-latex-base texlive-latex-recommended >/dev/null || \
        echo "could not install slurm-wlm, munge, chromium and texlive; the SLURM, browser and LaTeX tests will skip" >&2
fi
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
