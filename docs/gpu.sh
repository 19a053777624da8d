#!/usr/bin/env bash
# The GPU figures of docs/performance.md, on one CUDA GPU (about 3 minutes on an H200):
# the CUDA tests, the benchmark at the default, peer and larger settings, bf16 autocast, the scaling
# table, and the default training run. Usage: bash docs/gpu.sh [OUT_DIR]   (default gpu_out)
set -u
cd "$(dirname "$0")/.."
out=${1:-gpu_out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  $py -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  $py -m pytest -q tests/test_cuda.py tests/test_cuda_graphs.py 2>&1 | tail -15
  $py -m minippo.extras.bench --device cuda
  $py -m minippo.extras.bench --device cuda --algo reinforce --batch 64 --max-new-tokens 48
  $py -m minippo.extras.bench --device cuda --algo reinforce --batch 256 --max-new-tokens 64 --d-model 256 --n-layer 4
  $py -m minippo.extras.bench --device cuda --autocast
  $py -m minippo.extras.bench --device cuda --algo reinforce --batch 256 --max-new-tokens 64 --d-model 256 --n-layer 4 --autocast
  $py -m minippo.extras.bench --device cuda --scaling --iters 3
  start=$(date +%s%N)
  $py train.py --device cuda --out "$out/run" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$\|s/it\]$"
  echo "train.py --device cuda: $(( ($(date +%s%N) - start) / 1000000 )) ms wall"
} 2>&1 | tee "$out/log.txt"
