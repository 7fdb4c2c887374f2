"""What outranks a cold test item? Popularity of the items each model puts above cold targets.

    python benchmarks/cold_targets.py --data ~/.cache/prismrec/datasets/amazon_beauty \
        --run sasrec=runs/real_bce_cpu/amazon_beauty-bce-sasrec-s1 \
        --run concatOutput=runs/real_bce_cpu/amazon_beauty-bce-concatOutput-s1 --name cold_targets_beauty_bce

For the users whose test item occurs at most ``--max-count`` times in the training sequences (each
user's sequence without its last two items), every run scores all items for the test position
(history excluded, as in evaluation) and reports: the test item's median rank, the mean training
count of its top-10 items and the share of them that are themselves cold, and the median training
count of the items ranked *above* the test item. If content makes cold targets lose to popular
look-alikes, the last number rises when content enters the scores. Writes
benchmarks/results/<name>.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from breakdown import user_groups  # noqa: E402
from common import write_result  # noqa: E402

from prismrec.data.split import train_item_counts  # noqa: E402


@torch.no_grad()
def outrankers(score_fn, inputs: torch.Tensor, targets: torch.Tensor, history: torch.Tensor,
               counts: torch.Tensor, cold_max: int, batch_size: int = 512) -> dict[str, float]:
    """Statistics of the items scored above each target and of the top 10 (history excluded)."""
    ranks, top_count, top_cold, above_median = [], [], [], []
    for lo in range(0, len(targets), batch_size):
        s = score_fn(inputs[lo:lo + batch_size]).float()  # (B, N + 1)
        s[:, 0] = -torch.inf  # padding
        s.scatter_(1, history[lo:lo + batch_size], -torch.inf)  # history (right-padded with 0)
        t = targets[lo:lo + batch_size]
        above = s > s.gather(1, t[:, None])  # (B, N + 1) items ranked above the target
        ranks.append(above.sum(1) + 1)
        top = s.topk(10, dim=1).indices  # (B, 10)
        top_count.append(counts[top].float().mean(1))
        top_cold.append((counts[top] <= cold_max).float().mean(1))
        # median training count of the outrankers, per user (users with none: skipped)
        c = torch.where(above, counts[None].float(), torch.nan)
        above_median.append(torch.nanmedian(c, dim=1).values)
    med = torch.cat(above_median)
    return {"users": int(len(targets)), "median_rank": float(torch.cat(ranks).float().median()),
            "top10_mean_train_count": float(torch.cat(top_count).mean()),
            "top10_cold_share": float(torch.cat(top_cold).mean()),
            "outrankers_median_train_count": float(med[~torch.isnan(med)].median())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="the dataset the runs were trained on (prepared folder)")
    ap.add_argument("--run", action="append", required=True, metavar="NAME=DIR", help="a run directory; repeat")
    ap.add_argument("--max-count", type=int, default=4, help="cold = at most this many training occurrences")
    ap.add_argument("--name", required=True, help="results file name (benchmarks/results/<name>.json)")
    args = ap.parse_args()

    from prismrec.api import load_run

    rows = {}
    for spec in args.run:
        name, _, run_dir = spec.partition("=")
        if not name or not run_dir:
            ap.error(f"--run {spec!r}: expected NAME=DIR")
        run = load_run(run_dir, device="cpu", data_path=args.data)
        seqs = run.dataset.sequences
        g = user_groups(seqs.items, seqs.offsets, seqs.num_items)
        counts = torch.as_tensor(train_item_counts(seqs))
        users = torch.as_tensor(np.flatnonzero(g["target_train_count"] <= args.max_count))
        split = run.data.test
        run.model.eval()
        rows[name] = outrankers(run.model.full_sort_scores, split.inputs[users], split.targets[users],
                                split.history[users], counts, args.max_count)
        print(f"{name}: {rows[name]}", file=sys.stderr, flush=True)
    keys = ["users", "median_rank", "top10_mean_train_count", "top10_cold_share", "outrankers_median_train_count"]
    lines = [f"Cold test items (<= {args.max_count} training occurrences)", "| run | " + " | ".join(keys) + " |",
             "|---" * (len(keys) + 1) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys)
                     + " |")
    print("\n".join(lines))
    path = write_result(args.name, {"data": args.data, "max_count": args.max_count,
                                    "runs": {s.partition("=")[0]: s.partition("=")[2] for s in args.run},
                                    "cold_targets": rows, "markdown": "\n".join(lines)})
    print(f"results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
