"""Speed of SASRec training and full-ranking evaluation on this machine.

    python benchmarks/bench_speed.py --data ../shared/data/amazon_beauty/Beauty.txt [--epochs 3]
        [--set model.prism.enabled=true --data ~/.cache/prismrec/datasets/amazon_beauty] [--name NAME]

Measures, for each loss in --losses: mean seconds per training epoch over --epochs epochs (after one
warm-up epoch), seconds to evaluate every user of the test split (best and mean of --eval-repeats),
and peak resident memory of the process. Writes benchmarks/results/<name>.json.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import build_trainer, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="dataset path")
    ap.add_argument("--losses", nargs="+", default=["ce", "bce"], help="losses to time")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per loss (after 1 warm-up epoch)")
    ap.add_argument("--eval-repeats", type=int, default=3, help="full evaluations to time")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config overrides")
    ap.add_argument("--name", default="speed_sasrec_beauty", help="result file name")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()

    from prismrec.training.trainer import peak_memory_mb

    results = {}
    for loss in args.losses:
        run, trainer = build_trainer(args.data, loss, args.overrides, device=args.device)
        trainer.train_epoch(0)  # warm-up
        times = []
        for e in range(1, args.epochs + 1):
            t0 = time.perf_counter()
            trainer.train_epoch(e)
            if run.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        evals = [trainer.evaluate("test").seconds for _ in range(args.eval_repeats)]
        results[loss] = {"seconds_per_epoch": statistics.mean(times), "epoch_seconds": times,
                         "eval_seconds_best": min(evals), "eval_seconds_mean": statistics.mean(evals),
                         "users_evaluated": run.data.num_users, "items": run.dataset.num_items,
                         "num_parameters": sum(p.numel() for p in run.model.parameters())}
        print(f"{loss}: {results[loss]['seconds_per_epoch']:.2f} s/epoch, full evaluation of "
              f"{run.data.num_users} users {min(evals):.2f} s (best of {len(evals)})", flush=True)
    results["peak_memory_mb"] = peak_memory_mb(torch.device(args.device))
    print(f"peak memory {results['peak_memory_mb']:.0f} MB")
    path = write_result(args.name, {"data": args.data, "overrides": args.overrides, "results": results})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
