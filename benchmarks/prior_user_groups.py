"""Would a per-user popularity prior do better than one beta per model?

    python benchmarks/prior_user_groups.py --data ~/.cache/prismrec/datasets/amazon_sports \
        --run runs/sports_bce_table/amazon_sports-bce-prism-s1 --run ... --groups 5 --name prior_user_groups_sports_bce

The ranking-time popularity prior (``prismrec.evaluation.popularity``: score + beta * log(1 + c_i)) uses
one beta per trained model, chosen on the validation split. It over-corrects for users who read niche
items (docs/benchmarks.md §3 session 23: the coldest targets lose 58% on Sports). This script asks
whether letting beta depend on the user helps: users are put in ``--groups`` equal-sized groups by
the mean ``log(1 + c_i)`` of their history items (the same counts the prior uses; group edges are the
validation split's quantiles, reused unchanged for the test split), and each group gets the beta of
the grid with its best mean validation NDCG@10. Reported per run: test NDCG@10 as trained, with the
one validation-chosen beta, and with the per-group betas; the test split is never used to choose.
Writes benchmarks/results/<name>.json and prints a Markdown table. No model is trained.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402


def history_popularity(run, split: str) -> np.ndarray:
    """(U,) each user's mean log(1 + count) over the items before the split's target."""
    prior = run.popularity_prior(split)  # (N + 1,), 0 for padding
    hist = run.data.split(split).history  # (U, H) right-padded
    real = (hist != 0).float()
    return ((prior[hist] * real).sum(1) / real.sum(1).clamp(min=1)).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="the dataset the runs were trained on (default: each run's config)")
    ap.add_argument("--run", action="append", required=True, metavar="DIR", help="a trained run; repeat")
    ap.add_argument("--groups", type=int, default=5, help="user groups by history popularity (default: 5)")
    ap.add_argument("--name", required=True, help="results file name (benchmarks/results/<name>.json)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    args = ap.parse_args()
    if args.groups < 1:
        ap.error("--groups must be >= 1")

    import torch

    from prismrec.api import load_run
    from prismrec.evaluation.compare import per_user_metric
    from prismrec.evaluation.popularity import DEFAULT_BETAS, choose_beta

    torch.set_num_threads(args.threads)
    rows, lines = [], ["| run | beta (one) | betas per group (niche → mainstream users) | test NDCG@10 as trained "
                       "| one beta | per-group betas | per-group vs one |", "|---|---|---|---|---|---|---|"]
    for run_dir in args.run:
        run = load_run(run_dir, device="cpu", data_path=args.data)
        valid = {b: r.numpy() for b, r in run.popularity_ranks("valid", DEFAULT_BETAS).items()}
        test = {b: per_user_metric(r.numpy(), "NDCG@10") for b, r in run.popularity_ranks("test", DEFAULT_BETAS).items()}
        feat = {split: history_popularity(run, split) for split in ("valid", "test")}
        edges = np.quantile(feat["valid"], np.linspace(0, 1, args.groups + 1)[1:-1])
        group = {s: np.searchsorted(edges, feat[s]) for s in feat}
        # the library's choice (best mean validation NDCG@10, smallest beta on a tie): for all users, per group
        one = choose_beta(valid).beta
        per_group = [choose_beta({b: r[group["valid"] == g] for b, r in valid.items()}).beta for g in range(args.groups)]
        test_grouped = np.zeros(len(feat["test"]))
        for g, b in enumerate(per_group):
            users = group["test"] == g
            test_grouped[users] = test[b][users]
        row = {"run": str(run_dir), "beta": one, "group_betas": per_group, "group_edges": edges.tolist(),
               "test_ndcg10": float(test[0.0].mean()), "test_ndcg10_one_beta": float(test[one].mean()),
               "test_ndcg10_group_betas": float(test_grouped.mean())}
        rows.append(row)
        rel = row["test_ndcg10_group_betas"] / row["test_ndcg10_one_beta"] - 1
        lines.append(f"| {Path(run_dir).name} | {one:g} | {', '.join(format(b, 'g') for b in per_group)} "
                     f"| {row['test_ndcg10']:.5f} | {row['test_ndcg10_one_beta']:.5f} "
                     f"| {row['test_ndcg10_group_betas']:.5f} | {rel:+.1%} |")
        print(lines[-1], file=sys.stderr, flush=True)
    mean_rel = statistics.fmean(r["test_ndcg10_group_betas"] / r["test_ndcg10_one_beta"] - 1 for r in rows)
    lines.append(f"\nper-group betas vs one beta, mean over runs: {mean_rel:+.2%}")
    print("\n".join(lines))
    path = write_result(args.name, {"data": args.data, "groups": args.groups, "betas": list(DEFAULT_BETAS),
                                    "runs": rows, "mean_relative_group_vs_one": mean_rel,
                                    "markdown": "\n".join(lines)})
    print(f"results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
