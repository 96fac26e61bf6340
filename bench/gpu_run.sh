#!/usr/bin/env bash
# The GPU figures in the README, as they were made on a lent machine that has torch but not
# DALI (DALI's wheels and a small shard set travel beside the tree; see the README).
#   bash bench/gpu_run.sh step        the sync-free step test, then bench/train_step.py variants
#   bash bench/gpu_run.sh e2e SHARDS  the whole trainer (DALI on the GPU) next to the step alone
# Output goes to stdout and, when $OUT is set, to $OUT/*.log.
set -euo pipefail
cd "$(dirname "$0")/.."
# The package's folders install under one import name (vrestore), so the tree alone is not
# importable: build it into a local folder first (no dependencies: the machine brings torch,
# DALI's wheel travels beside the tree).
python3 -m pip install -q --no-deps --no-build-isolation --target .gpu_site . >/dev/null
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/.gpu_site${PYTHONPATH:+:$PYTHONPATH}"
log() { if [ -n "${OUT:-}" ]; then tee -a "$OUT/$1.log"; else cat; fi; }
case "${1:-}" in
  step)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | log step
    python3 -c "import torch; print('torch', torch.__version__)" | log step
    python3 -m pytest -q --noconftest -p no:cacheprovider tests/test_gpu_step.py 2>&1 | log step
    python3 bench/train_step.py --device cuda --ngf 64 --ndf 64 --batch-size 16 --crops 256 --warmup 5 --steps 20 --no-scaling 2>&1 | log step
    python3 bench/train_step.py --device cuda --ngf 64 --ndf 64 --batch-size 16 --crops 128 --warmup 5 --steps 20 --no-scaling \
        --only "legacy bfloat16" "legacy fp32" fp32 bfloat16 "fp32 + graphs" "bfloat16 + graphs" 2>&1 | log step
    python3 bench/train_step.py --device cuda --ngf 64 --ndf 64 --batch-size 64 --crops 256 --warmup 3 --steps 10 --no-scaling \
        --only "legacy bfloat16" bfloat16 "bfloat16 + graphs" 2>&1 | log step
    ;;
  e2e)
    # single-frame shards (the step alone is timed on single frames); crop 128 fits 320x240 frames
    python3 -m pytest -q --noconftest -p no:cacheprovider tests/test_gpu_step.py 2>&1 | log e2e
    python3 bench/ema.py --device cuda 2>&1 | log e2e
    for graphs in "" --cuda-graphs; do
      python3 bench/train_e2e.py --shards "$2" --device cuda --crop 128 --ngf 64 --batch-size 16 --steps 600 $graphs 2>&1 | log e2e
    done
    python3 bench/train_e2e.py --shards "$2" --device cuda --crop 128 --ngf 64 --batch-size 16 --steps 600 --amp off --cuda-graphs 2>&1 | log e2e
    ;;
  *) echo "usage: bench/gpu_run.sh step | e2e SHARDS" >&2; exit 2 ;;
esac
