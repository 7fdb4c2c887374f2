"""Does PRISM recover the planted structure of the synthetic world?

    python benchmarks/planted_world.py --out runs/planted [--jobs 2] [--device cpu]

1. Runs benchmarks/plans/planted.yaml (SASRec, PRISM, naive fusions, PRISM ablations; 3 seeds) on
   the embedded SYNTHETIC world (via suite.py; resumable).
2. Per planted user type (unique_image, unique_text, redundant, synergy): test NDCG@10 of every arm.
3. Fusion weights of the PRISM runs at each user's last test position: mean weight per expert per
   planted type, and how well the weights predict the type (5-fold nearest-centroid accuracy;
   chance = 0.25); for runs with model.prism.output_fusion=user, the prediction-layer weights too.
4. Linear probes (prismrec.introspect.expert_probes): 5-fold accuracy of a ridge classifier from
   each expert's item embeddings (and, for reference, the projected input features and the ID
   embeddings) to each planted item property (8 categories; chance 0.125). A synergy expert
   that learned the planted synergy reads (a + b) mod K where the inputs cannot.
Writes benchmarks/results/planted_world.json (planted_world_<plan name>.json for another --plan)
and prints Markdown tables.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

HERE = Path(__file__).resolve().parent


def ndcg10(ranks: np.ndarray) -> np.ndarray:
    r = ranks.astype(np.float64)
    return np.where(r <= 10, 1.0 / np.log2(r + 1.0), 0.0)


def centroid_cv_accuracy(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """Nearest-centroid classification accuracy with k-fold cross-validation (standardised x)."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(y))
    correct = 0
    for f in range(folds):
        test = idx[f::folds]
        train = np.setdiff1d(idx, test)
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-9
        z_tr, z_te = (x[train] - mu) / sd, (x[test] - mu) / sd
        classes = np.unique(y[train])
        cents = np.stack([z_tr[y[train] == c].mean(0) for c in classes])
        pred = classes[np.argmin(((z_te[:, None, :] - cents[None]) ** 2).sum(-1), axis=1)]
        correct += int((pred == y[test]).sum())
    return correct / len(y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for run directories")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="device for training")
    ap.add_argument("--plan", default=str(HERE / "plans" / "planted.yaml"), help="suite plan to run")
    ap.add_argument("--results-dir", default=None, help="where planted_world.json goes")
    ap.add_argument("--time-budget", type=float, default=0,
                    help="passed to suite.py: seconds after which no new run starts (0 = no limit)")
    ap.add_argument("--aggregate-only", action="store_true",
                    help="start no training run: analyse the runs that already finished")
    args = ap.parse_args()
    suite_cmd = [sys.executable, str(HERE / "suite.py"), "--plan", args.plan, "--out", args.out,
                 "--jobs", str(args.jobs), "--device", args.device, "--time-budget", str(args.time_budget)]
    if args.aggregate_only:
        suite_cmd.append("--aggregate-only")
    if args.results_dir:
        suite_cmd += ["--results-dir", args.results_dir]
    subprocess.run(suite_cmd, check=True)

    from prismrec.api import load_run
    from prismrec.introspect import expert_probes, fusion_weights, output_fusion_weights

    runs = sorted(p for p in Path(args.out).iterdir() if (p / "summary.json").is_file())
    first = load_run(runs[0], device="cpu")
    extras = first.dataset.extras
    types = np.asarray(extras["user_type"])
    names = list(extras["user_types"])
    per_type: dict[str, dict[str, list[float]]] = {}
    weights_report = {}
    probes_report: dict[str, list[dict]] = {}
    for run_dir in runs:
        arm = run_dir.name.split("-")[2]
        r = np.load(run_dir / "ranks.npz", allow_pickle=False)["test"]
        nd = ndcg10(r)
        d = per_type.setdefault(arm, {n: [] for n in names + ["all"]})
        for t, n in enumerate(names):
            d[n].append(float(nd[types == t].mean()))
        d["all"].append(float(nd.mean()))
        run = load_run(run_dir, device="cpu")
        mm = run.model.item_input
        if getattr(mm, "fusion_weights", None) is None or not hasattr(mm.fuser, "fusion"):
            continue
        w = fusion_weights(run).last  # (U, E) at each user's last test position
        props = {k: np.asarray(v) for k, v in extras["item_properties"].items()}
        probes_report.setdefault(arm, []).append({"run": run_dir.name, "probes": expert_probes(run, props)})
        sets = [(arm, w)]  # input-side fusion weights; prediction-layer weights too with output_fusion=user
        if getattr(mm, "query_fusion", None) is not None:
            sets.append((f"{arm} (prediction layer)", output_fusion_weights(run).last))
        for key, w in sets:
            if np.allclose(w, w[:1]):
                continue  # uniform fusion carries no per-user information
            experts = mm.expert_names
            weights_report.setdefault(key, []).append({
                "run": run_dir.name,
                "experts": experts,
                "mean_weight_by_type": {n: dict(zip(experts, w[types == t].mean(0).round(4).tolist()))
                                        for t, n in enumerate(names)},
                "weight_std_across_users": dict(zip(experts, w.std(0).round(4).tolist())),
                "type_from_weights_cv_accuracy": centroid_cv_accuracy(w, types),
            })
    table = {arm: {n: {"mean": float(np.mean(v)), "std": float(np.std(v))} for n, v in d.items()}
             for arm, d in per_type.items()}
    lines = ["| arm | " + " | ".join(names + ["all"]) + " |", "|---" * (len(names) + 2) + "|"]
    for arm, d in table.items():
        lines.append(f"| {arm} | " + " | ".join(f"{d[n]['mean']:.4f} ± {d[n]['std']:.4f}" for n in names + ["all"])
                     + " |")
    for arm, reps in weights_report.items():
        acc = [r["type_from_weights_cv_accuracy"] for r in reps]
        lines.append(f"\n{arm}: planted type from fusion weights, 5-fold nearest-centroid accuracy "
                     f"{np.mean(acc):.3f} ± {np.std(acc):.3f} (chance 0.25)")
        rep = reps[0]
        lines.append("| planted type | " + " | ".join(rep["experts"]) + " |")
        lines.append("|---" * (len(rep["experts"]) + 1) + "|")
        for n in names:
            m = np.mean([[r["mean_weight_by_type"][n][e] for e in rep["experts"]] for r in reps], axis=0)
            lines.append(f"| {n} | " + " | ".join(f"{v:.3f}" for v in m) + " |")
    prop_names = list(extras["item_properties"])
    for arm, reps in probes_report.items():
        lines.append(f"\n{arm}: linear-probe accuracy, item embedding -> planted property "
                     f"(5-fold, chance 0.125; mean over {len(reps)} seeds)")
        lines.append("| embedding | " + " | ".join(prop_names) + " |")
        lines.append("|---" * (len(prop_names) + 1) + "|")
        for row in reps[0]["probes"]:
            vals = [np.mean([r["probes"][row][p] for r in reps]) for p in prop_names]
            lines.append(f"| {row} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    print("\n".join(lines))
    import yaml
    plan_name = yaml.safe_load(Path(args.plan).read_text())["name"]
    name = "planted_world" if plan_name == "planted_suite" else f"planted_world_{plan_name}"
    path = write_result(name, {"ndcg10_by_planted_type": table, "fusion_weights": weights_report,
                               "expert_probes": probes_report, "markdown": "\n".join(lines)},
                        Path(args.results_dir) if args.results_dir else None)
    print(f"results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
