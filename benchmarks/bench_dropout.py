"""Training-step time with prismrec's CPU dropout vs torch's bernoulli_ dropout, in one process.

    python benchmarks/bench_dropout.py --data ~/.cache/prismrec/datasets/amazon_beauty --loss bce \
        [--set model.prism.enabled=true] [--steps 20] [--rounds 6] [--threads 2] [--name NAME]

Builds one model and trainer, then alternates blocks of ``--steps`` training steps (the same
batches each time) between ``prismrec.models.dropout.Dropout`` (64 random bits per 4 elements) and
``torch.nn.functional.dropout`` (one ``bernoulli_`` draw per element), ``--rounds`` times, so both
see the same machine conditions. Reports milliseconds per step (wall and process CPU time, median
over rounds) and writes benchmarks/results/<name>.json.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import build_trainer, train_step, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="dataset path")
    ap.add_argument("--loss", default="bce", choices=["ce", "bce"], help="training loss")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config overrides")
    ap.add_argument("--steps", type=int, default=20, help="training steps per timed block")
    ap.add_argument("--rounds", type=int, default=6, help="blocks per dropout implementation (alternating)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--name", default=None, help="result file name (default dropout_step_<loss>)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from prismrec.models.dropout import Dropout

    _, trainer = build_trainer(args.data, args.loss, args.overrides)
    batches = trainer.user_batches()[: args.steps]

    fast = Dropout.forward
    variants = {"prismrec": fast, "bernoulli": lambda self, x: F.dropout(x, self.p, self.training)}
    for users in batches[:5]:
        train_step(trainer, users)  # warm-up
    times = {name: {"wall": [], "cpu": []} for name in variants}
    for _ in range(args.rounds):
        for name, forward in variants.items():
            Dropout.forward = forward
            w0, c0 = time.perf_counter(), time.process_time()
            for users in batches:
                train_step(trainer, users)
            times[name]["wall"].append(1000 * (time.perf_counter() - w0) / len(batches))
            times[name]["cpu"].append(1000 * (time.process_time() - c0) / len(batches))
    Dropout.forward = fast
    results = {name: {clock: {"ms_per_step_median": statistics.median(v), "ms_per_step": v}
                      for clock, v in t.items()} for name, t in times.items()}
    for name, r in results.items():
        print(f"{name}: {r['wall']['ms_per_step_median']:.1f} ms/step wall, "
              f"{r['cpu']['ms_per_step_median']:.1f} ms/step CPU (median of {args.rounds})")
    path = write_result(args.name or f"dropout_step_{args.loss}",
                        {"data": args.data, "loss": args.loss, "overrides": args.overrides, "steps": len(batches),
                         "threads": args.threads, "results": results})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
