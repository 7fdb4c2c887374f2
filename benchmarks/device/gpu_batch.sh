#!/usr/bin/env bash
# One prepared batch for the lent GPU machine (see docs/benchmarks.md). Runs from the repo root there:
#   bash benchmarks/device/gpu_batch.sh   (with .carry/datasets carried; OUT set by the device tool)
# Runs the real-data suite and the planted-world suite in parallel processes sharing the GPU, stops
# starting new runs after BUDGET seconds, and packs summaries, metrics, ranks and configs into $OUT.
set -uo pipefail
BUDGET=${BUDGET:-330}
HARD=${HARD:-450}
JOBS=${JOBS:-12}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 PRISMREC_DATA=/tmp/datasets
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0])"
python3 benchmarks/device/carry_data.py unpack --src .carry/datasets --dst /tmp/datasets
mkdir -p /tmp/runs "$OUT/results"
python3 benchmarks/suite.py --plan benchmarks/plans/real.yaml --out /tmp/runs/real --jobs "$JOBS" --device cuda \
  --time-budget "$BUDGET" --hard-budget "$HARD" --results-dir "$OUT/results" > "$OUT/real.log" 2>&1 &
python3 benchmarks/suite.py --plan benchmarks/plans/planted.yaml --out /tmp/runs/planted --jobs 3 --device cuda \
  --time-budget "$BUDGET" --hard-budget "$HARD" --results-dir "$OUT/results" > "$OUT/planted.log" 2>&1 &
if [ -f benchmarks/plans/backbones.yaml ]; then
  python3 benchmarks/suite.py --plan benchmarks/plans/backbones.yaml --out /tmp/runs/backbones --jobs 4 \
    --device cuda --time-budget "$BUDGET" --hard-budget "$HARD" --results-dir "$OUT/results" > "$OUT/backbones.log" 2>&1 &
fi
wait
cd /tmp/runs && find . \( -name summary.json -o -name metrics.jsonl -o -name ranks.npz -o -name config.yaml \
  -o -path './planted/*/model.safetensors' \) -print0 | tar czf "$OUT/runs.tgz" --null -T -
ls -la "$OUT" "$OUT/results"
