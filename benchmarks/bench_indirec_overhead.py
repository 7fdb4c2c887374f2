"""Cost of InDiRec's training extras on one dataset, without a full training run.

    python benchmarks/bench_indirec_overhead.py [--data ../shared/data/amazon_beauty/Beauty.txt] [--batches 20]
        [--threads 1]

Measures (a) the per-epoch intent clustering (encode every training prefix + K-means), and (b) the
time of --batches training steps with InDiRec's full loss against the same steps with the plain
SASRec loss on the same model, interleaved step by step (the difference is the diffusion loss, view sampling and InfoNCE).
Uses recipes/indirec_beauty.yaml plus --set overrides. Writes benchmarks/results/<name>.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "amazon_beauty" / "Beauty.txt"))
    ap.add_argument("--batches", type=int, default=20, help="training steps timed per loss")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config overrides")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    ap.add_argument("--name", default=None, help="result name (default: indirec_overhead_<device>_<threads>t)")
    args = ap.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from prismrec.api import build
    from prismrec.config import build_config
    from prismrec.data.split import trim_left_padding
    from prismrec.models import TrainBatch
    from prismrec.models.sasrec import SASRec
    from prismrec.training import Trainer

    cfg = build_config(REPO / "recipes" / "indirec_beauty.yaml",
                       overrides=[f"data.path={args.data}", f"train.device={args.device}", *args.overrides])
    run = build(cfg)
    model, data = run.model, run.data
    trainer = Trainer(model, data, cfg.train, cfg.eval, run.device, progress=False)

    def sync() -> None:
        if run.device.type == "cuda":
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    model.on_epoch_start(1, data, run.device)
    sync()
    cluster_seconds = time.perf_counter() - t0
    batches = trainer.user_batches()

    def step(loss_fn, users: torch.Tensor) -> float:
        users = users.to(run.device)
        b = TrainBatch(*trim_left_padding(trainer.train_inputs[users], trainer.train_targets[users]), user_index=users)
        sync()
        t = time.perf_counter()
        out = loss_fn(b)
        trainer.optimizer.zero_grad()
        out.total.backward()
        trainer.optimizer.step()
        sync()
        return time.perf_counter() - t

    model.train()
    step(model.training_loss, batches[0])  # warm-up
    indirec = sasrec = 0.0
    for users in batches[:args.batches]:  # interleaved, so both see the same machine load
        indirec += step(model.training_loss, users)
        sasrec += step(lambda b: SASRec.training_loss(model, b), users)
    n = min(args.batches, len(batches))
    result = {
        "data": args.data, "device": str(run.device), "torch_threads": torch.get_num_threads(),
        "overrides": args.overrides,
        "prefixes": int(model.intents.bank.shape[0]), "num_intents": model.intents.counts.numel(),
        "cluster_seconds": round(cluster_seconds, 2), "batches_per_epoch": len(batches), "timed_batches": n,
        "indirec_seconds_per_batch": round(indirec / n, 4), "sasrec_seconds_per_batch": round(sasrec / n, 4),
        "extras_overhead": round(indirec / sasrec - 1, 3),
        "estimated_epoch_seconds": {"indirec": round(cluster_seconds + indirec / n * len(batches), 1),
                                    "sasrec_loss_same_model": round(sasrec / n * len(batches), 1)},
    }
    print(result)
    name = args.name or f"indirec_overhead_{run.device.type}_{torch.get_num_threads()}t"
    print(f"results: {write_result(name, result)}", file=sys.stderr)


if __name__ == "__main__":
    main()
