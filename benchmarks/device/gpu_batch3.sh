#!/usr/bin/env bash
# Third H200 batch (docs/benchmarks.md): plans/gpu3.yaml, 17 time-boxed runs in parallel.
#   run (device tool): bash benchmarks/device/gpu_batch3.sh        (timeout_s 560)
# Follow-up: PLAN=benchmarks/plans/gpu3b.yaml HARD=290 bash benchmarks/device/gpu_batch3.sh
# Local dry run on the CPU: DEVICE=cpu LIMIT=0.05 ONLY=yelp-ce-sasrec bash benchmarks/device/gpu_batch3.sh
set -uo pipefail
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 PRISMREC_DATA=${PRISMREC_DATA:-/tmp/datasets}
OUT=${OUT:-/tmp/gpu3_out}; DEVICE=${DEVICE:-cuda}; LIMIT=${LIMIT:-}; ONLY=${ONLY:-}
mkdir -p "$OUT/results"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
if [ -d .carry/datasets ] && [ "$PRISMREC_DATA" = /tmp/datasets ]; then
  python3 benchmarks/device/carry_data.py unpack --src .carry/datasets --dst /tmp/datasets > /dev/null
fi
PLAN=${PLAN:-benchmarks/plans/gpu3.yaml}; HARD=${HARD:-470}
if [ -n "$LIMIT" ]; then  # dry run: same plan with a shorter time box
  sed -E "s/train.time_limit_minutes=[0-9.]+/train.time_limit_minutes=$LIMIT/" $PLAN > /tmp/gpu3_plan.yaml; PLAN=/tmp/gpu3_plan.yaml
fi
RUNS=/tmp/runs/gpu3; rm -rf "$RUNS"
python3 benchmarks/suite.py --plan $PLAN --out $RUNS --jobs ${JOBS:-17} --threads 1 --device $DEVICE \
  --results-dir "$OUT/results" --hard-budget $HARD ${ONLY:+--only $ONLY} > "$OUT/suite.log" 2>&1
tail -40 "$OUT/suite.log"
cd "$RUNS" && find . \( -name summary.json -o -name metrics.jsonl -o -name config.yaml -o -name ranks.npz \) -print0 \
  | tar czf "$OUT/runs.tgz" --null -T -
ls -la "$OUT" "$OUT/results"
