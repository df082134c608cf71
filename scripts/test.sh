#!/usr/bin/env bash
# The tests on a fresh machine: set up (SLURM, munge and Chromium from Debian's packages when this is a root
# shell with apt-get; without them the cluster and browser tests skip and say why), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if { ! command -v slurmctld >/dev/null || ! command -v chromium >/dev/null; } && [ "$(id -u)" = 0 ] && \
        command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge chromium >/dev/null || \
        echo "could not install slurm-wlm, munge and chromium; the SLURM and browser tests will skip" >&2
fi
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
