#!/usr/bin/env bash
# The eager code on one CUDA GPU (docs/performance.md): the CUDA tests, the benchmark at the default,
# peer and larger settings, and the default training run. Usage: bash docs/gpu.sh [OUT_DIR]   (default gpu_out)
set -u
cd "$(dirname "$0")/.."
out=${1:-gpu_out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  $py -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  $py -m pytest -q tests/test_cuda.py 2>&1 | tail -15
  $py -m minippo.extras.bench --device cuda
  $py -m minippo.extras.bench --device cuda --algo reinforce --batch 64 --max-new-tokens 48
  $py -m minippo.extras.bench --device cuda --algo reinforce --batch 256 --max-new-tokens 64 --d-model 256 --n-layer 4
  start=$(date +%s%N)
  $py train.py --device cuda --out "$out/run" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$\|s/it\]$"
  echo "train.py --device cuda: $(( ($(date +%s%N) - start) / 1000000 )) ms wall"
} 2>&1 | tee "$out/log.txt"
