"""Where a training step's time goes: torch.profiler over the trainer's own steps.

    python benchmarks/profile_step.py --data ~/.cache/prismrec/datasets/amazon_beauty --loss bce \
        [--set model.prism.enabled=true] [--steps 20] [--threads 1] [--top 25] [--name NAME]

Builds one model and trainer, runs 3 untimed warm-up steps, then profiles ``--steps`` steps of
``Trainer.accumulate_gradients`` + optimizer step (the loop's own work, micro-batches included) on
the first batches of an epoch. Prints the operators with the most self CPU time, and writes them
(with the total, the milliseconds per step and the setup) to benchmarks/results/<name>.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import build_trainer, train_step, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="dataset path (a prepared folder for multimodal runs)")
    ap.add_argument("--loss", default="ce", choices=["ce", "bce"], help="training loss")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config overrides")
    ap.add_argument("--steps", type=int, default=20, help="profiled training steps")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--top", type=int, default=25, help="operators to report")
    ap.add_argument("--name", default=None, help="result file name (default profile_step_<loss>)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    _, trainer = build_trainer(args.data, args.loss, args.overrides)
    batches = trainer.user_batches()
    if len(batches) < args.steps + 3:
        raise SystemExit(f"only {len(batches)} batches per epoch; ask for fewer --steps")
    for users in batches[:3]:
        train_step(trainer, users)
    w0, c0 = time.perf_counter(), time.process_time()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for users in batches[3:3 + args.steps]:
            train_step(trainer, users)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total_us = sum(e.self_cpu_time_total for e in events)
    top = [{"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1e3, "share": e.self_cpu_time_total / total_us,
            "calls": e.count} for e in events[: args.top]]
    print(f"{args.steps} steps: {1e3 * wall / args.steps:.1f} ms/step wall, {1e3 * cpu / args.steps:.1f} ms/step "
          f"CPU (profiled, so slower than unprofiled)")
    for row in top:
        print(f"{row['share']:6.1%}  {row['self_cpu_ms']:9.1f} ms  {row['calls']:6d}  {row['op']}")
    path = write_result(args.name or f"profile_step_{args.loss}",
                        {"data": args.data, "loss": args.loss, "overrides": args.overrides, "steps": args.steps,
                         "threads": args.threads, "ms_per_step_wall": 1e3 * wall / args.steps,
                         "ms_per_step_cpu": 1e3 * cpu / args.steps, "self_cpu_ms_total": total_us / 1e3,
                         "top_ops": top})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
