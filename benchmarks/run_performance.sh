#!/usr/bin/env bash
# Every performance table of issue 14, one after another (never two at once on a small machine), each printed
# and kept under benchmarks/out/perf-*.md. MultiVae's side-by-side needs `bash benchmarks/setup_multivae.sh`.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p out
PY=../.venv/bin/python
$PY subset_scaling.py --model mopoe --modalities 2 5 7 10 --batch 256 --repeats 3 | tee out/perf-scaling-mopoe.md
$PY subset_scaling.py --model mopoe --modalities 2 5 7 10 --batch 256 --memory-only | tee -a out/perf-scaling-mopoe.md
$PY subset_scaling.py --model diffmvae_star --modalities 2 5 7 10 --batch 32 --repeats 3 | tee out/perf-scaling-diffmvae-star.md
$PY subset_scaling.py --model diffmvae_star --modalities 2 5 7 10 --batch 32 --memory-only | tee -a out/perf-scaling-diffmvae-star.md
if [ -x .venv-multivae/bin/python ]; then
    .venv-multivae/bin/python multivae_side_by_side.py --batch 256 --modalities 5 --repeats 3 --limit 60 | tee out/perf-multivae.md
fi
$PY eval_overhead.py --modalities 5 --tuples 500 --fid-images 200 --repeats 3 | tee out/perf-eval.md
$PY sampler_overhead.py --batch 64 --repeats 2 | tee out/perf-samplers.md
$PY memory_format.py --repeats 7 | tee out/perf-memory-format.md
