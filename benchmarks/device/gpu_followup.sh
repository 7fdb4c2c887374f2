#!/usr/bin/env bash
# Second, shorter H200 batch (see docs/benchmarks.md): plans/followup.yaml, plans/planted_followup.yaml
# and two backbone runs, all in parallel; every run is time-boxed by train.time_limit_minutes.
set -uo pipefail
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 PRISMREC_DATA=/tmp/datasets
nvidia-smi --query-gpu=name --format=csv,noheader
python3 benchmarks/device/carry_data.py unpack --src .carry/datasets --dst /tmp/datasets > /dev/null
mkdir -p "$OUT/results"
S="python3 benchmarks/suite.py --device cuda --results-dir $OUT/results --hard-budget 290"
$S --plan benchmarks/plans/followup.yaml --out /tmp/runs/followup --jobs 10 > "$OUT/followup.log" 2>&1 &
$S --plan benchmarks/plans/planted_followup.yaml --out /tmp/runs/planted --jobs 3 > "$OUT/planted.log" 2>&1 &
$S --plan benchmarks/plans/backbones.yaml --out /tmp/runs/bb1 --jobs 1 --only amazon_beauty-ce-stosaPrism-s1 \
  > "$OUT/bb_stosaPrism.log" 2>&1 &
$S --plan benchmarks/plans/backbones.yaml --out /tmp/runs/bb2 --jobs 1 --only amazon_beauty-ce-indirec-s1 \
  > "$OUT/bb_indirec.log" 2>&1 &
wait
cd /tmp/runs && find . \( -name summary.json -o -name metrics.jsonl \) -print0 | tar czf "$OUT/runs.tgz" --null -T -
ls -la "$OUT" "$OUT/results"
