#!/usr/bin/env bash
# One lent-GPU check (not yet run; its numbers would go to docs/benchmarks.md §3, cost): the CUDA conformance tests, then the
# training cost of PRISM over each backbone on Beauty on one GPU, one process, arms interleaved epoch by
# epoch (benchmarks/bench_overhead.py --device cuda): SASRec CE and BCE with both loss placements, STOSA
# and InDiRec vanilla vs + PRISM. Each step has its own time limit so a slow one cannot starve the rest.
#   here:      python benchmarks/device/carry_data.py pack --src ~/.cache/prismrec/datasets \
#                  --dst .carry/datasets --datasets amazon_beauty
#   device:    bash benchmarks/device/gpu_cost.sh          (run tool, carry [".carry"], timeout_s 540)
# Session 28 called it once; the machine stopped answering before anything came back.
#   dry run on the CPU, synthetic data:
#     DEVICE=cpu BEAUTY= EPOCHS=2 BUDGET=1 OUT=/tmp/gpu_cost bash benchmarks/device/gpu_cost.sh
set -uo pipefail
export PYTHONPATH=$PWD/src:$PWD/tests PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_cost_out}; DEVICE=${DEVICE:-cuda}; EPOCHS=${EPOCHS:-3}
STEP=${STEP:-120}; BUDGET=${BUDGET:-50}  # per bench: hard limit (s), and no new round after BUDGET s of rounds
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
DATA=${DATA:-/tmp/datasets}
if [ ! -d "$DATA/amazon_beauty" ]; then
  python3 benchmarks/device/carry_data.py unpack --src .carry/datasets --dst "$DATA" > /dev/null || exit 1
fi
BEAUTY=${BEAUTY-$DATA/amazon_beauty}  # BEAUTY= (empty): the embedded synthetic data, for a dry run

timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log" | tail -15

bench() {  # name loss arms...
  local name=$1 loss=$2; shift 2
  echo "== $name" | tee -a "$OUT/bench.log"
  timeout "$STEP" python3 benchmarks/bench_overhead.py --data "$BEAUTY" --loss "$loss" --device "$DEVICE" \
    --threads 1 --epochs "$EPOCHS" --max-seconds "$BUDGET" --name "$name" "$@" 2>&1 | tee -a "$OUT/bench.log" \
    | grep -v "^round"
}
PRISM=model.prism.enabled=true
bench overhead_beauty_ce_gpu ce --arm sasrec= --arm prism=$PRISM \
  --arm prismPred25=$PRISM,model.prism.loss_on=prediction,model.prism.loss_user_fraction=0.25 \
  --arm prismPred=$PRISM,model.prism.loss_on=prediction
bench overhead_beauty_bce_gpu bce --arm sasrec= --arm prism=$PRISM \
  --arm prismPred25=$PRISM,model.prism.loss_on=prediction,model.prism.loss_user_fraction=0.25 \
  --arm prismPred=$PRISM,model.prism.loss_on=prediction
STOSA=model.backbone=stosa,data.max_seq_len=100,model.num_layers=1,model.num_heads=4,model.dropout=0.3,model.ffn_mult=4
bench overhead_beauty_stosa_gpu ce --arm stosa=$STOSA --arm stosaPrismMean=$STOSA,$PRISM,model.stosa.content_streams=mean \
  --arm stosaPrism=$STOSA,$PRISM
INDIREC=model.backbone=indirec,model.ffn_mult=4,train.optimizer=adamw,train.grad_clip=1.0
bench overhead_beauty_indirec_gpu ce --arm indirec=$INDIREC --arm indirecPrism=$INDIREC,$PRISM

cp benchmarks/results/overhead_beauty_*_gpu.json "$OUT/" 2>/dev/null
ls -la "$OUT"
