"""Headline results: one table of every dataset x loss x backbone measured, the vanilla backbone beside
its content arms, from the suite aggregates in benchmarks/results (nothing is retrained or re-tested).

    python benchmarks/headline.py                     # spec benchmarks/headline.yaml -> results/headline.json

The spec (YAML) lists the rows: for each a ``source`` (a suite aggregate JSON, relative to the results
folder), its ``dataset`` and ``loss``, a ``backbone`` label, the ``vanilla`` arm, the content ``arms``
({label: arm}, in table order), optionally the ``naive`` arm that every other content arm is compared
with, the paper's NDCG@10 (``paper: [vanilla, +PRISM]``) and a ``note``. Each cell comes from the source's
table (mean ± std over its seeds) and its ``comparisons`` (relative NDCG@10 and paired t-test p over users,
per-user NDCG averaged over each arm's seeds, as benchmarks/suite.py computes them: on the seeds both arms
ran where they share any; where the test's seeds are not the rows' the cell says so); a pair the source did
not compare is shown as "—", never recomputed from something else.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ROW_KEYS = {"source", "dataset", "loss", "backbone", "vanilla", "arms", "naive", "paper", "note"}


def load_spec(path: Path) -> list[dict]:
    """The rows of a headline spec, checked: unknown or missing keys are errors naming the row."""
    spec = yaml.safe_load(path.read_text()) or {}
    rows = spec.get("rows")
    if not isinstance(rows, list) or not rows:
        raise SystemExit(f"{path}: needs a non-empty list 'rows'")
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise SystemExit(f"{path}: row {i} is not a mapping")
        unknown, missing = set(row) - ROW_KEYS, {"source", "dataset", "loss", "backbone", "vanilla", "arms"} - set(row)
        if unknown or missing:
            raise SystemExit(f"{path}: row {i}: " + "; ".join(
                ([f"unknown keys {sorted(unknown)} (valid: {sorted(ROW_KEYS)})"] if unknown else [])
                + ([f"missing keys {sorted(missing)}"] if missing else [])))
        if not isinstance(row["arms"], dict) or not row["arms"]:
            raise SystemExit(f"{path}: row {i}: 'arms' must map labels to arm names")
    return rows


def _comparison(agg: dict, ds: str, loss: str, arm: str, vs: str) -> dict | None:
    """The source's paired test of ``arm`` against ``vs``, with the seeds each side averaged over."""
    for c in agg.get("comparisons", []):
        if (c["dataset"], c["loss"], c["arm"], c["vs"]) == (ds, loss, arm, vs):
            run = {"seeds": agg["table"][f"{ds}/{loss}/{arm}"]["seeds"],
                   "vs_seeds": agg["table"][f"{ds}/{loss}/{vs}"]["seeds"]}
            tested = {k: c.get(k, run[k]) for k in run}  # aggregates before the seed pairing lack them
            return {"relative_ndcg10": c["relative_ndcg10"], "t_pvalue": c["t_pvalue"],
                    "wilcoxon_pvalue": c["wilcoxon_pvalue"], "users": c["users"], **tested,
                    "cut_to_shared_seeds": tested != run}
    return None


def build_rows(spec_rows: list[dict], results: Path) -> list[dict]:
    """One entry per (row, arm) with its metrics and comparisons; a source, table entry or arm that is
    not there is an error naming the row and the file."""
    out = []
    for row in spec_rows:
        path = results / row["source"]
        if not path.is_file():
            raise SystemExit(f"headline: {path} not found (row {row['dataset']}/{row['loss']}/{row['backbone']})")
        agg = json.loads(path.read_text())
        ds, loss = row["dataset"], row["loss"]
        arms = {"vanilla": row["vanilla"], **row["arms"]}
        for label, arm in arms.items():
            entry = agg.get("table", {}).get(f"{ds}/{loss}/{arm}")
            if entry is None:
                raise SystemExit(f"headline: {path} has no finished run of {ds}/{loss}/{arm}")
            naive_compared = bool(row.get("naive")) and arm not in (row["vanilla"], row["naive"])
            out.append({
                "dataset": ds, "loss": loss, "backbone": row["backbone"], "label": label, "arm": arm,
                "vanilla": row["vanilla"],
                "source": row["source"], "seeds": entry["seeds"],
                "NDCG@10": entry["NDCG@10"], "HR@10": entry["HR@10"],
                "vs_vanilla": None if arm == row["vanilla"] else _comparison(agg, ds, loss, arm, row["vanilla"]),
                "naive": row.get("naive"), "naive_compared": naive_compared,
                "vs_naive": _comparison(agg, ds, loss, arm, row["naive"]) if naive_compared else None,
                "paper": row.get("paper") if label == "vanilla" else None, "note": row.get("note", ""),
            })
    return out


def _cell(c: dict | None) -> str:
    if c is None:
        return "—"
    cell = f"{c['relative_ndcg10']:+.1%} (p = {c['t_pvalue']:.2g}"
    if c["seeds"] != c["vs_seeds"]:  # e.g. one seed against another arm's mean over three: say so
        cell += (f"; seed{'s' if len(c['seeds']) > 1 else ''} {','.join(map(str, c['seeds']))} vs the mean "
                 f"of seeds {','.join(map(str, c['vs_seeds']))}")
    elif c.get("cut_to_shared_seeds"):  # the test ran on the seeds both arms have, fewer than one of them ran
        cell += f"; seed{'s' if len(c['seeds']) > 1 else ''} {','.join(map(str, c['seeds']))} of both"
    return cell + ")"


def markdown(rows: list[dict]) -> str:
    lines = ["| dataset | loss | backbone | arm | NDCG@10 | HR@10 | seeds | vs vanilla | vs naive fusion | "
             "paper N@10 (vanilla → + PRISM) | source |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        paper = "" if not r["paper"] else f"{r['paper'][0]:.4f} → {r['paper'][1]:.4f}"
        spread = f" ± {r['NDCG@10']['std']:.4f}" if len(r["seeds"]) > 1 else ""  # no spread from one seed
        naive = _cell(r["vs_naive"]) if r["naive_compared"] else ""
        lines.append(
            f"| {r['dataset']} | {r['loss']} | {r['backbone']} | {r['label']} (`{r['arm']}`) | "
            f"{r['NDCG@10']['mean']:.4f}{spread} | {r['HR@10']['mean']:.4f} | "
            f"{len(r['seeds'])} | {'' if r['label'] == 'vanilla' else _cell(r['vs_vanilla'])} | {naive} | "
            f"{paper} | `{r['source']}`{' — ' + r['note'] if r['note'] and r['label'] == 'vanilla' else ''} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default=str(Path(__file__).resolve().parent / "headline.yaml"),
                    help="YAML list of rows (default benchmarks/headline.yaml)")
    ap.add_argument("--results-dir", default=str(RESULTS),
                    help="folder the rows' sources are read from and the JSON is written to (default benchmarks/results)")
    ap.add_argument("--name", default="headline", help="name of the JSON written (default headline)")
    args = ap.parse_args()
    rows = build_rows(load_spec(Path(args.spec)), Path(args.results_dir))
    md = markdown(rows)
    print(md)
    path = write_result(args.name, {"spec": args.spec, "rows": rows, "markdown": md}, Path(args.results_dir))
    print(f"results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
