#!/usr/bin/env bash
# The main job on a fresh machine: set up, then the CPU demo (PolyMNIST -> MoPoE -> coherence -> leaderboard).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mmbench demo "$@"
