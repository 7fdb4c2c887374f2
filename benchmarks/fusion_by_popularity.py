"""Do a PRISM run's fusion weights depend on how popular a user's history is?

    python benchmarks/fusion_by_popularity.py --run runs/sports_bce_ablation/amazon_sports-bce-noRedundancy-s1 \
        [--data PATH] [--split test] [--groups 5] [--name NAME] [--out-dir DIR]

Loads the run (`prismrec.api.load_run`), takes each user's adaptive fusion weights at the last position
of the split's history (`prismrec.introspect.fusion_weights`, what `prismrec inspect --export-weights`
writes), and groups the users into ``--groups`` equal-sized groups by the popularity of their history:
the mean over the history's items of log(1 + the item's count in the training sequences), and, second,
by that of the history's last item alone. Per group: users, the range of the popularity measure and the
mean weight of each expert; per expert, the Spearman rank correlation of its weight with each measure.
Writes benchmarks/results/<name>.json (or --out-dir) and prints the tables.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402


def history_popularity(sequences, split: str) -> dict[str, np.ndarray]:
    """Per user: the mean log(1 + training count) of the items of the history that predicts ``split``'s
    target, and that of its last item. -> {"history_mean": (U,), "last_item": (U,)}"""
    from prismrec.data.split import train_item_counts

    back = 1 if split == "test" else 2  # the target's place from the end of each sequence
    off, items = sequences.offsets, sequences.items
    logc = np.log1p(train_item_counts(sequences)[items].astype(np.float64))
    csum = np.concatenate([[0.0], np.cumsum(logc)])
    end = off[1:] - back  # one past the history's last item
    return {"history_mean": (csum[end] - csum[off[:-1]]) / (end - off[:-1]), "last_item": logc[end - 1]}


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def by_groups(weights: np.ndarray, experts: list[str], measure: np.ndarray, groups: int) -> list[dict]:
    """Users split into ``groups`` equal-sized groups by ``measure`` (ties broken by user order)."""
    order = np.argsort(measure, kind="stable")
    rows = []
    for g, idx in enumerate(np.array_split(order, groups)):
        rows.append({"group": g + 1, "users": int(len(idx)), "measure_min": float(measure[idx].min()),
                     "measure_max": float(measure[idx].max()),
                     "mean_weight": {e: float(weights[idx, k].mean()) for k, e in enumerate(experts)}})
    return rows


MEASURES = {"history_mean": "mean over the history's items of log(1 + training count)",
            "last_item": "log(1 + training count) of the history's last item"}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a PRISM run folder with model.safetensors")
    ap.add_argument("--data", default=None, help="the run's dataset, if not at the path in its config.yaml")
    ap.add_argument("--split", default="test", choices=["valid", "test"], help="whose histories (default: test)")
    ap.add_argument("--groups", type=int, default=5, help="equal-sized user groups per measure (default: 5)")
    ap.add_argument("--name", default=None, help="result name (default: fusion_by_popularity_<run folder name>)")
    ap.add_argument("--out-dir", default=None, help="folder for the JSON (default: benchmarks/results)")
    args = ap.parse_args(argv)
    if args.groups < 2:
        ap.error("--groups must be at least 2")

    from prismrec import introspect
    from prismrec.api import load_run

    run = load_run(args.run, device="cpu", data_path=args.data)
    if not introspect.has_multimodal_input(run):
        sys.exit(f"error: {args.run}: not a PRISM run (model.prism.enabled=false)")
    fw = introspect.fusion_weights(run, args.split)
    seqs = run.dataset.sequences
    if not np.array_equal(fw.user_ids, seqs.user_ids):
        sys.exit("error: the fusion weights are not in the dataset's user order")
    measures = history_popularity(seqs, args.split)
    out = {"run": str(args.run), "split": args.split, "experts": fw.experts, "groups": args.groups,
           "overall_mean_weight": {e: float(fw.last[:, k].mean()) for k, e in enumerate(fw.experts)},
           "by_measure": {}}
    for name, measure in measures.items():
        rows = by_groups(fw.last, fw.experts, measure, args.groups)
        corr = {e: rank_correlation(measure, fw.last[:, k]) for k, e in enumerate(fw.experts)}
        out["by_measure"][name] = {"groups": rows, "spearman": corr}
        print(f"\n{name} ({MEASURES[name]}); Spearman with each weight: "
              + ", ".join(f"{e} {c:+.3f}" for e, c in corr.items()))
        print("| group | users | measure | " + " | ".join(fw.experts) + " |")
        print("|---" * (3 + len(fw.experts)) + "|")
        for r in rows:
            print(f"| {r['group']} | {r['users']:,} | {r['measure_min']:.2f}–{r['measure_max']:.2f} | "
                  + " | ".join(f"{r['mean_weight'][e]:.3f}" for e in fw.experts) + " |")
    name = args.name or f"fusion_by_popularity_{Path(args.run).name}"
    path = write_result(name, out, Path(args.out_dir) if args.out_dir else None)
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
