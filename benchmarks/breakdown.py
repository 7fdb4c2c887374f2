"""Where does one arm beat another? Test NDCG@10 by target-item popularity and by history length.

    python benchmarks/breakdown.py --data ~/.cache/prismrec/datasets/amazon_beauty \
        --arm sasrec=runs/beauty_ce_random/amazon_beauty-ce-sasrec-s1,runs/.../sasrec-s2 \
        --arm prism=runs/.../prism-s1,... --baseline sasrec --name breakdown_beauty_ce

Reads only what the runs saved (``ranks.npz``: each user's test rank) and the dataset's sequences;
no model is loaded. Without ``--data`` the dataset is rebuilt from the first run's saved config (the
way to break down runs on the embedded synthetic world); every run's item map must match it. Per
arm, a user's NDCG@10 is averaged over the arm's runs (seeds) first. Users are grouped (1) by how
often their test item occurs in the training sequences (every user's sequence without its last two
items: what the model trained on), and (2) by the length of the history the test prediction reads.
Per group: users, mean NDCG@10 per arm, the relative difference of every arm to ``--baseline`` and a
paired t-test over the group's users. Writes benchmarks/results/<name>.json and prints a Markdown
table. The groups are the library's (``prismrec compare --by``, which tests two sides with a t-test and
a Wilcoxon test per group); this script puts several arms in one table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from prismrec.data.sequences import DataError  # noqa: E402
from prismrec.evaluation.compare import (GROUPINGS, group_masks, load_ranks, paired_test,  # noqa: E402
                                         per_user_metric, user_groups)

# the results' names of the library's groupings (prismrec.evaluation.compare.GROUPINGS, `prismrec compare --by`)
GROUP_KEYS = {"target-count": "target_train_count", "history-length": "history_length"}


def ndcg10(ranks: np.ndarray) -> np.ndarray:
    return per_user_metric(ranks, "NDCG@10")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None,
                    help="the dataset the runs were trained on (prepared folder or file); default: rebuilt from the "
                         "first run's saved config.yaml (needed for the embedded synthetic world)")
    ap.add_argument("--arm", action="append", required=True, metavar="NAME=DIR[,DIR...]",
                    help="an arm and its run directories (one per seed); repeat per arm")
    ap.add_argument("--baseline", required=True, help="arm the others are compared with")
    ap.add_argument("--name", required=True, help="results file name (benchmarks/results/<name>.json)")
    args = ap.parse_args()

    arms: dict[str, np.ndarray] = {}
    all_runs: list[Path] = []
    for spec in args.arm:
        name, _, dirs = spec.partition("=")
        runs = [Path(d) for d in dirs.split(",") if d]
        if not name or not runs:
            ap.error(f"--arm {spec!r}: expected NAME=DIR[,DIR...]")
        all_runs += runs
        per_run = []
        for run in runs:
            try:
                per_run.append(ndcg10(load_ranks(run, "test").ranks))
            except DataError as exc:
                ap.error(f"--arm {name}: {exc}")
        arms[name] = np.mean(per_run, axis=0)  # (U,) mean over seeds per user
    if args.baseline not in arms:
        ap.error(f"--baseline {args.baseline!r} is not one of the arms ({', '.join(arms)})")
    from prismrec.api import check_trained_on, load_run_dataset
    from prismrec.config import ConfigError

    # the first run's own data settings (path, or the synthetic world's parameters) unless --data is given
    source = args.data if args.data is not None else f"the data of {all_runs[0]}/config.yaml"
    try:
        ds = load_run_dataset(all_runs[0], args.data)
        for run in all_runs[1:]:
            summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else None
            check_trained_on(run, summary, ds)
    except (DataError, ConfigError, FileNotFoundError) as e:
        sys.exit(f"error: {e} (dataset: {source})")
    groups = user_groups(ds.sequences, "test")
    n_users = len(ds.sequences.offsets) - 1
    for name, v in arms.items():
        if len(v) != n_users:
            sys.exit(f"arm {name}: {len(v)} users in ranks.npz, {n_users} in {source} (another dataset?)")

    base = arms[args.baseline]
    report: dict[str, list[dict]] = {}
    lines = []
    for grouping, edges in GROUPINGS.items():
        key = GROUP_KEYS[grouping]
        rows = []
        for group, sel in group_masks(groups[grouping], edges):
            row = {"group": group, "users": int(sel.sum()),
                   "ndcg10": {a: float(v[sel].mean()) for a, v in arms.items()}, "vs_baseline": {}}
            for a, v in arms.items():
                if a == args.baseline:
                    continue
                rel = v[sel].mean() / base[sel].mean() - 1 if base[sel].mean() > 0 else float("nan")
                p = paired_test(v[sel], base[sel]).t_pvalue if sel.sum() > 1 else float("nan")
                row["vs_baseline"][a] = {"relative": float(rel), "t_pvalue": p}
            rows.append(row)
        report[key] = rows
        others = [a for a in arms if a != args.baseline]
        lines += [f"\nTest NDCG@10 by {key.replace('_', ' ')} (users; mean over each arm's seeds)",
                  f"| {key} | users | " + " | ".join(arms) + " | " + " | ".join(f"{a} vs {args.baseline}" for a in others)
                  + " |", "|---" * (2 + len(arms) + len(others)) + "|"]
        for row in rows:
            cmp = [f"{row['vs_baseline'][a]['relative']:+.1%} (p={row['vs_baseline'][a]['t_pvalue']:.2g})" for a in others]
            lines.append(f"| {row['group']} | {row['users']} | " + " | ".join(f"{row['ndcg10'][a]:.4f}" for a in arms)
                         + " | " + " | ".join(cmp) + " |")
    print("\n".join(lines))
    path = write_result(args.name, {"data": args.data, "arms": {s.partition("=")[0]: s.partition("=")[2].split(",")
                                                                for s in args.arm},
                                    "baseline": args.baseline, "groups": report, "markdown": "\n".join(lines)})
    print(f"results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
