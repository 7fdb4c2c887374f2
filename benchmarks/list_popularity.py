"""Which items do the models recommend? Popularity of the top-K lists, per run.

    python benchmarks/list_popularity.py --run sasrec=runs/ce_models/sasrec-s3 \
        --run prismOutput=runs/beauty_ce_table/amazon_beauty-ce-prismOutput-s3 --k 10 --name lists_beauty_ce

Every content arm loses 9-12% NDCG@10 on Beauty's coldest test targets (docs/benchmarks.md). This
asks whether that is because content models put rare items in their lists less often. Each run is
reloaded from its folder (config.yaml + model.safetensors), evaluated on the test split by full
ranking (its NDCG@10 must reproduce its summary.json, or the script stops), and its top-K lists are
described with :func:`prismrec.evaluation.lists.list_stats`: catalogue coverage, Gini of how often
each item is listed, and per training-count group the share of list slots, of targets and of hits,
and the hit rate. Writes benchmarks/results/<name>.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from prismrec.api import load_run  # noqa: E402
from prismrec.data.split import train_item_counts  # noqa: E402
from prismrec.evaluation.lists import list_stats  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, metavar="NAME=DIR",
                    help="a label and a run directory written by `prismrec train`; repeat per run")
    ap.add_argument("--k", type=int, default=10, help="list length (default: 10)")
    ap.add_argument("--data", default=None, help="dataset path, instead of the one in each run's config.yaml")
    ap.add_argument("--name", required=True, help="results file name (benchmarks/results/<name>.json)")
    args = ap.parse_args()

    rows = []
    for spec in args.run:
        label, _, path = spec.partition("=")
        if not label or not path:
            ap.error(f"--run {spec!r}: expected NAME=DIR")
        run = load_run(path, device="cpu", data_path=args.data)
        res = run.evaluate("test", top_k=args.k)
        saved = (run.summary or {}).get("test", {}).get("NDCG@10")
        if saved is not None and abs(saved - res.metrics["NDCG@10"]) > 1e-6:
            sys.exit(f"{path}: test NDCG@10 {res.metrics['NDCG@10']:.6f} does not reproduce the saved {saved:.6f}")
        stats = list_stats(res.top_items.numpy(), run.data.split("test").targets.cpu().numpy(),
                           train_item_counts(run.dataset.sequences))
        rows.append({"name": label, "run": path, "NDCG@10": res.metrics["NDCG@10"],
                     f"HR@{args.k}": res.metrics.get(f"HR@{args.k}"), "lists": stats.to_dict()})
        print(f"{label}: NDCG@10 {res.metrics['NDCG@10']:.4f}, coverage {stats.coverage:.1%}", file=sys.stderr)

    groups = [g["group"] for g in rows[0]["lists"]["groups"]]
    head = ["run", "NDCG@10", f"coverage@{args.k}", "Gini", "mean log2(1+count) listed"]
    head += [f"listed {g} (targets {rows[0]['lists']['groups'][i]['targets']:.1%})" for i, g in enumerate(groups)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        s = r["lists"]
        cells = [r["name"], f"{r['NDCG@10']:.4f}", f"{s['coverage']:.1%}", f"{s['gini']:.3f}",
                 f"{s['mean_log2_count_listed']:.2f}"]
        cells += [f"{g['listed']:.1%} (HR {g['hit_rate']:.4f})" if g["hit_rate"] is not None else f"{g['listed']:.1%}"
                  for g in s["groups"]]
        lines.append("| " + " | ".join(cells) + " |")
    markdown = "\n".join(lines)
    print(markdown)
    path = write_result(args.name, {"k": args.k, "runs": rows, "markdown": markdown})
    print(f"results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
