"""Training-time overhead of one configuration over another, measured with interleaved epochs.

    python benchmarks/bench_overhead.py --data ~/.cache/prismrec/datasets/amazon_beauty --loss ce \
        --arm sasrec= --arm prism=model.prism.enabled=true [--epochs 3] [--threads 2] [--device cpu|cuda] [--name NAME]

Builds every arm's model in one process and trains them in turn, one full epoch each, for
``--epochs`` rounds (after one untimed warm-up epoch per arm): arm A epoch 1, arm B epoch 1, arm A
epoch 2, ... On a shared or frequency-scaled VM whose speed drifts over minutes, timing arms in
separate processes minutes apart mixes the drift into the ratio; interleaving exposes every arm to
the same drift. Reports seconds per epoch per arm (median and every epoch), and each arm's ratio to
the first arm (ratio of medians, and min-max of the per-round ratios), for wall time and for the
process's CPU time (``time.process_time``: not advanced while the VM's CPU is stolen by other guests,
so it is the steadier measure with ``--threads 1``). With ``--device cuda`` every timed epoch starts
and ends with a device synchronisation, and each arm's peak GPU memory during its epochs is recorded
(``torch.cuda.max_memory_allocated``, which also counts the other arms' resident weights and optimizer
states: a few MB). Writes benchmarks/results/<name>.json.
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


def parse_arm(text: str) -> tuple[str, list[str]]:
    name, _, sets = text.partition("=")
    if not name:
        raise SystemExit(f"--arm {text!r}: expected NAME=key=value[,key=value...] (or NAME= for defaults)")
    return name, [s for s in sets.split(",") if s]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="dataset path (a prepared folder for multimodal arms)")
    ap.add_argument("--loss", default="ce", choices=["ce", "bce"], help="training loss for every arm")
    ap.add_argument("--arm", action="append", required=True,
                    help="NAME=overrides, comma-separated (e.g. prism=model.prism.enabled=true); the first "
                         "arm is the reference of the ratios; repeat for more arms")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="overrides for every arm")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per arm (interleaved rounds)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--max-seconds", type=float, default=0.0,
                    help="time budget: start no further round once this many seconds have passed since the "
                         "first timed epoch (the rounds done are reported; default 0 = no budget)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device of every arm")
    ap.add_argument("--name", default=None, help="result file name (default overhead_<loss>)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    arms = [parse_arm(a) for a in args.arm]
    trainers = {}
    for name, sets in arms:
        _, trainers[name] = build_trainer(args.data, args.loss, [*args.overrides, *sets], device=args.device)
        trainers[name].train_epoch(0)  # warm-up (allocator, kernels), untimed
    cuda = args.device == "cuda"
    times: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name, _ in arms}
    peak_mb = {name: 0.0 for name, _ in arms}
    start, rounds = time.perf_counter(), 0
    for epoch in range(1, args.epochs + 1):
        if args.max_seconds and rounds and time.perf_counter() - start > args.max_seconds:
            print(f"--max-seconds {args.max_seconds:g} reached after {rounds} round(s)", flush=True)
            break
        rounds += 1
        for name, trainer in trainers.items():
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            w0, c0 = time.perf_counter(), time.process_time()
            trainer.train_epoch(epoch)
            if cuda:
                torch.cuda.synchronize()
                peak_mb[name] = max(peak_mb[name], torch.cuda.max_memory_allocated() / 2**20)
            times[name]["wall"].append(time.perf_counter() - w0)
            times[name]["cpu"].append(time.process_time() - c0)
            print(f"round {epoch}: {name} {times[name]['wall'][-1]:.2f} s wall, {times[name]['cpu'][-1]:.2f} s CPU",
                  flush=True)
    ref = arms[0][0]
    results = {}
    for name, _ in arms:
        results[name] = {"num_parameters": sum(p.numel() for p in trainers[name].model.parameters())}
        if cuda:
            results[name]["peak_cuda_memory_mb"] = peak_mb[name]
            print(f"{name}: peak GPU memory {peak_mb[name]:.0f} MB")
        for clock in ("wall", "cpu"):
            mine, base = times[name][clock], times[ref][clock]
            per_round = [t / r for t, r in zip(mine, base)]
            ratio = statistics.median(mine) / statistics.median(base)
            results[name][clock] = {"seconds_per_epoch_median": statistics.median(mine), "epoch_seconds": mine,
                                    "ratio_to_" + ref: ratio, "per_round_ratio_min": min(per_round),
                                    "per_round_ratio_max": max(per_round)}
            print(f"{name} ({clock}): {statistics.median(mine):.2f} s/epoch (median of {rounds}), "
                  f"{ratio:.2f}x {ref} (rounds {min(per_round):.2f}-{max(per_round):.2f})")
    path = write_result(args.name or f"overhead_{args.loss}",
                        {"data": args.data, "loss": args.loss, "arms": dict(arms), "overrides": args.overrides,
                         "threads": args.threads, "device": args.device, "rounds": rounds,
                         "results": results})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
