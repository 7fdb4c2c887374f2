"""Does a popularity prior at ranking time close the content arms' loss on popular targets?

    python benchmarks/popularity_prior.py --data ~/.cache/prismrec/datasets/amazon_sports \
        --arm sasrec=runs/sports_bce_table/amazon_sports-bce-sasrec-s1,... --arm concat=... --arm prism=... \
        --baseline sasrec --out runs/prior/sports_bce --name popularity_prior_sports_bce --threads 1

For every saved run: choose beta (score + beta * log(1 + count), the count of each item among the
interactions before the split's targets) on the run's *validation*
split from the grid (``Run.choose_popularity_beta``; the test split is not read to choose it), then
rank valid and test with that beta and save the ranks to ``--out/<run name>`` (a folder that
``prismrec compare`` and ``benchmarks/breakdown.py`` read like a run; the same as
``prismrec evaluate --run RUN --popularity-prior auto --save-ranks DIR``). Reports, per arm, the chosen
betas and test NDCG@10 without and with the prior (mean +- population std over the arm's runs, as
suite.py), and paired tests over users (each user's NDCG@10 averaged over an arm's seeds): every arm
with its prior against the baseline without and with its prior, and against itself without. Writes
benchmarks/results/<name>.json and prints a Markdown table. No model is trained; each rebuilt model
must reproduce its run's saved validation NDCG@10 at beta = 0, or the script stops.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402


def test_curve(run, betas, metric: str) -> dict[str, float]:
    """The test split's mean ``metric`` at every beta of the grid (one scoring pass)."""
    from prismrec.evaluation.compare import per_user_metric

    ranks = run.popularity_ranks("test", betas)
    return {str(b): float(per_user_metric(r.numpy(), metric).mean()) for b, r in ranks.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="the dataset the runs were trained on (default: each run's config)")
    ap.add_argument("--arm", action="append", required=True, metavar="NAME=DIR[,DIR...]",
                    help="an arm and its run directories (one per seed); repeat per arm")
    ap.add_argument("--baseline", required=True, help="arm the others are compared with")
    ap.add_argument("--out", required=True, help="folder for the ranks under the prior (one subfolder per run)")
    ap.add_argument("--name", required=True, help="results file name (benchmarks/results/<name>.json)")
    ap.add_argument("--betas", default=None, help="grid of betas, comma-separated (default: the library's)")
    ap.add_argument("--metric", default="NDCG@10", help="validation metric that chooses beta (default: NDCG@10)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                    help="device to evaluate on (default: auto; runs trained on a GPU evaluate on the CPU)")
    ap.add_argument("--test-curve", action="store_true",
                    help="also report test NDCG@10 at every beta of the grid (a diagnostic of how well the "
                         "validation choice transfers; never used to choose beta)")
    ap.add_argument("--reuse", action="store_true",
                    help="keep ranks already saved under --out (a cut-off invocation continues) instead of "
                         "refusing to overwrite them")
    args = ap.parse_args()

    import json

    import torch

    from prismrec.api import load_run, save_prior_ranks
    from prismrec.evaluation.compare import compare_runs
    from prismrec.evaluation.popularity import DEFAULT_BETAS, check_betas

    torch.set_num_threads(args.threads)
    betas = check_betas(args.betas.split(",")) if args.betas else DEFAULT_BETAS
    if args.test_curve and 0.0 not in betas:
        ap.error("--test-curve reports each beta relative to beta 0: put 0 in --betas")
    arms: dict[str, list[Path]] = {}
    for spec in args.arm:
        name, _, dirs = spec.partition("=")
        arms[name] = [Path(d) for d in dirs.split(",") if d]
        if not name or not arms[name]:
            ap.error(f"--arm {spec!r}: expected NAME=DIR[,DIR...]")
    if args.baseline not in arms:
        ap.error(f"--baseline {args.baseline!r} is not one of the arms ({', '.join(arms)})")

    out = Path(args.out)
    derived: dict[str, list[Path]] = {}
    per_run: dict[str, list[dict]] = {}
    for name, runs in arms.items():
        derived[name], per_run[name] = [], []
        for run_dir in runs:
            dest = out / run_dir.name
            run = None
            if args.reuse and (dest / "summary.json").is_file():
                summary = json.loads((dest / "summary.json").read_text())
            else:
                run = load_run(run_dir, device=args.device, data_path=args.data)
                choice = run.choose_popularity_beta(betas, args.metric)
                summary = save_prior_ranks(run, dest, choice.beta, choice)
            curve = None
            if args.test_curve:  # read only after beta was chosen and saved
                run = run or load_run(run_dir, device=args.device, data_path=args.data)
                curve = test_curve(run, betas, args.metric)
            trained = json.loads((run_dir / "summary.json").read_text())
            before = trained["test"]["NDCG@10"]
            # the rebuilt model must reproduce the run: its validation metric at beta = 0 is the saved one
            # (a run trained on a GPU may differ in the last digits)
            valid0 = summary["popularity_choice"]["valid"].get("0.0")
            if valid0 is not None and abs(valid0 - trained["valid"]["NDCG@10"]) > 1e-4 * max(valid0, 1e-9) + 1e-7:
                sys.exit(f"{run_dir}: the rebuilt model's validation NDCG@10 at beta 0 ({valid0:.6f}) is not the "
                         f"saved {trained['valid']['NDCG@10']:.6f}; the run cannot be reproduced by this code")
            row = {"run": str(run_dir), "saved": str(dest), "beta": summary["popularity_beta"],
                   "valid_by_beta": summary["popularity_choice"]["valid"], "valid_ndcg10_beta0": valid0,
                   "valid_ndcg10_saved": trained["valid"]["NDCG@10"],
                   "test_ndcg10": before, "test_ndcg10_prior": summary["test"]["NDCG@10"]}
            if curve is not None:
                row["test_by_beta"] = curve
            print(f"{name} {run_dir.name}: beta {row['beta']:g}, test NDCG@10 {before:.4f} -> "
                  f"{row['test_ndcg10_prior']:.4f}", file=sys.stderr, flush=True)
            per_run[name].append(row)
            derived[name].append(dest)

    def mean_std(values: list[float]) -> tuple[float, float]:
        return statistics.fmean(values), statistics.pstdev(values)  # std over seeds as suite.py: ddof 0

    def test(a: list[Path], b: list[Path]) -> dict:
        t = compare_runs(a, b, metrics=("NDCG@10",))[0]
        return {"relative": t.relative, "t_pvalue": t.t_pvalue, "wilcoxon_pvalue": t.wilcoxon_pvalue}

    def fmt(t: dict) -> str:
        return f"{t['relative']:+.1%} ({t['t_pvalue']:.2g} / {t['wilcoxon_pvalue']:.2g})"

    base_raw, base_prior = arms[args.baseline], derived[args.baseline]
    rows, lines = {}, [
        "| arm | betas (chosen on valid) | test NDCG@10 as trained | with the prior | prior vs as trained "
        f"| vs {args.baseline} as trained | vs {args.baseline} with its prior |",
        "|---|---|---|---|---|---|---|"]
    for name in arms:
        raw_m, raw_s = mean_std([r["test_ndcg10"] for r in per_run[name]])
        pri_m, pri_s = mean_std([r["test_ndcg10_prior"] for r in per_run[name]])
        row = {"runs": per_run[name], "test_ndcg10": [raw_m, raw_s], "test_ndcg10_prior": [pri_m, pri_s],
               "prior_vs_as_trained": test(derived[name], arms[name])}
        if name != args.baseline:
            row["vs_baseline_as_trained"] = test(derived[name], base_raw)
            row["vs_baseline_with_prior"] = test(derived[name], base_prior)
        rows[name] = row
        other = (["—", "—"] if name == args.baseline else
                 [fmt(row["vs_baseline_as_trained"]), fmt(row["vs_baseline_with_prior"])])
        chosen = ", ".join(format(r["beta"], "g") for r in per_run[name])
        lines.append(f"| {name} | {chosen} | {raw_m:.4f} ± {raw_s:.4f} "
                     f"| {pri_m:.4f} ± {pri_s:.4f} | {fmt(row['prior_vs_as_trained'])} | " + " | ".join(other) + " |")
    if args.test_curve:
        lines += ["", f"Test {args.metric} at every beta, relative to beta 0 "
                      "(mean over each arm's runs; diagnostic only)",
                  "| arm | " + " | ".join(f"{b:g}" for b in betas) + " |", "|---" * (1 + len(betas)) + "|"]
        for name in arms:
            rel = [statistics.fmean(r["test_by_beta"][str(b)] / r["test_by_beta"]["0.0"] - 1 for r in per_run[name])
                   for b in betas]
            lines.append(f"| {name} | " + " | ".join(f"{v:+.1%}" for v in rel) + " |")
    print("\n".join(lines))
    path = write_result(args.name, {"data": args.data, "betas": list(betas), "metric": args.metric,
                                    "baseline": args.baseline, "arms": rows, "markdown": "\n".join(lines),
                                    "note": "relative change, paired t / Wilcoxon p over users (NDCG@10)"})
    print(f"results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
