#!/usr/bin/env bash
# Issue 19's GPU checks in one prepared run (about 5 minutes on an H200): the CUDA test module
# against the CPU, then the GPU rows of the benchmarks. Run from the repository root on a
# machine with a CUDA build of torch installed (the device machine has one; nothing here
# downloads torch). Everything printed also lands in $OUT (or ./gpu-check) for the README.
set -uo pipefail
out="${OUT:-gpu-check}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
py="${PYTHON:-python3}"
$py -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" | tee "$out/env.txt"
# the library's own dependencies, without touching the machine's torch
$py -m pip install -q --no-deps -e . >/dev/null 2>&1 || true
$py -m pip install -q numpy scipy scikit-learn scikit-image safetensors filelock pytest \
    typer rich pillow plotly >/dev/null 2>&1 || true
timeout 240 $py -m pytest -m cuda tests/test_cuda.py -q -p no:cacheprovider 2>&1 | tee "$out/cuda-tests.txt"
timeout 150 $py bench/bench_fv.py --device cuda 2>&1 | tee "$out/bench-fv-cuda.txt"
timeout 90 $py bench/bench_scores.py --device cuda 2>&1 | tee "$out/bench-scores-cuda.txt"
