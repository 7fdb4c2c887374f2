"""Does PRISM recover the planted structure of the synthetic world?

    python benchmarks/planted_world.py --out runs/planted [--jobs 2] [--device cpu]

1. Runs benchmarks/plans/planted.yaml (SASRec, PRISM, naive fusions, PRISM ablations; 3 seeds) on
   the embedded SYNTHETIC world (via suite.py; resumable).
2. Per planted user type (unique_image, unique_text, redundant, synergy): test NDCG@10 of every arm,
   and each of the plan's `compare` pairs paired-tested inside each type (seed-averaged per user).
3. Fusion weights of the PRISM runs at each user's last test position: mean weight per expert per
   planted type, and how well the weights predict the type (5-fold nearest-centroid accuracy;
   chance = 0.25); for runs with model.prism.output_fusion=user, the prediction-layer weights too.
4. Linear probes (prismrec.introspect.expert_probes): 5-fold accuracy of a ridge classifier from
   each expert's item embeddings (and, for reference, the projected input features and the ID
   embeddings) to each planted item property (8 categories, chance 0.125; the synergy property has
   data.synthetic.synergy_categories). A synergy expert that learned the planted synergy reads
   (a + b) mod K_s where the inputs cannot.
5. The same probe on the learned ID embeddings of every arm (SASRec's included): how much of each
   property the collaborative signal put into the ID table, with and without content beside it.
6. A supervised ceiling: an MLP of the experts' width and depth trained directly on each property
   from the concatenated (standardised) features, 5-fold held-out accuracy: whether an expert
   *could* read the property from the features at all, given a direct training signal.
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
    from prismrec.evaluation.compare import per_user_metric

    return per_user_metric(ranks, "NDCG@10")


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


def supervised_ceiling(features: list[np.ndarray], labels: dict[str, np.ndarray], hidden: int, layers: int,
                       folds: int = 5, epochs: int = 1000, seed: int = 0) -> dict[str, float]:
    """Held-out accuracy of an MLP (``layers`` GELU layers of width ``hidden``) trained with full-batch
    Adam on each labelling (rows = items 1..N) from the concatenated standardised features."""
    import torch
    from torch import nn

    x = torch.tensor(np.concatenate(features, axis=1), dtype=torch.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    idx = np.random.default_rng(seed).permutation(len(x))
    out = {}
    for name, lab in labels.items():
        y = torch.as_tensor(lab, dtype=torch.long)
        correct = 0
        for f in range(folds):
            test = torch.as_tensor(idx[f::folds])
            train = torch.as_tensor(np.setdiff1d(idx, idx[f::folds]))
            torch.manual_seed(seed + f)
            mods: list[nn.Module] = []
            width_in = x.shape[1]
            for _ in range(layers):
                mods += [nn.Linear(width_in, hidden), nn.GELU()]
                width_in = hidden
            net = nn.Sequential(*mods, nn.Linear(width_in, int(y.max()) + 1))
            opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
            for _ in range(epochs):
                opt.zero_grad()
                nn.functional.cross_entropy(net(x[train]), y[train]).backward()
                opt.step()
            with torch.no_grad():
                correct += int((net(x[test]).argmax(1) == y[test]).sum())
        out[name] = correct / len(y)
    return out


def id_embeddings(run) -> np.ndarray:
    """The learned ID table (N, D), items 1..N, of any arm (SASRec's own, or beside the content)."""
    item_input = run.model.item_input
    table = getattr(item_input, "id_input", item_input).output_embeddings()
    return table[1:].detach().cpu().numpy()


def per_type_comparisons(compare: dict[str, list[str]], by_arm: dict[str, list[Path]], types: np.ndarray,
                         names: list[str]) -> list[dict]:
    """Each of the plan's ``compare`` pairs (arm -> the arms it is compared with) whose arms have finished
    runs (``by_arm``: arm -> its run directories), tested inside every planted type:
    ``[{"arm", "vs", "by_type": {type: PairedTest as a dict}}]``."""
    from prismrec.evaluation.compare import compare_in_groups

    groups = [(n, types == t) for t, n in enumerate(names)]
    out = []
    for arm, others in compare.items():
        for other in others:
            if arm in by_arm and other in by_arm:
                tests = compare_in_groups(by_arm[arm], by_arm[other], groups)
                out.append({"arm": arm, "vs": other,
                            "by_type": {g.group: g.tests[0].to_dict() for g in tests}})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for run directories")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="device for training")
    ap.add_argument("--plan", default=str(HERE / "plans" / "planted.yaml"), help="suite plan to run")
    ap.add_argument("--results-dir", default=None, help="where planted_world.json goes")
    ap.add_argument("--time-budget", type=float, default=0,
                    help="passed to suite.py: seconds after which no new run starts (0 = no limit)")
    ap.add_argument("--ceiling-epochs", type=int, default=1000,
                    help="full-batch epochs of each supervised-ceiling MLP fit (5 folds x 4 properties)")
    ap.add_argument("--aggregate-only", action="store_true",
                    help="start no training run: analyse the runs that already finished")
    args = ap.parse_args()
    from suite import load_plan  # imports prismrec (and torch): not needed for --help

    plan = load_plan(args.plan)  # checked before any training starts; its compare pairs are tested per type
    suite_cmd = [sys.executable, str(HERE / "suite.py"), "--plan", args.plan, "--out", args.out,
                 "--jobs", str(args.jobs), "--device", args.device, "--time-budget", str(args.time_budget)]
    if args.aggregate_only:
        suite_cmd.append("--aggregate-only")
    if args.results_dir:
        suite_cmd += ["--results-dir", args.results_dir]
    subprocess.run(suite_cmd, check=True)

    from prismrec.api import load_run
    from prismrec.introspect import (content_gates, content_variation, expert_agreement, expert_probes,
                                     fusion_layer_state, fusion_weights, linear_probe_accuracy, output_fusion_weights)

    runs = sorted(p for p in Path(args.out).iterdir() if (p / "summary.json").is_file())
    first = load_run(runs[0], device="cpu")
    extras = first.dataset.extras
    types = np.asarray(extras["user_type"])
    names = list(extras["user_types"])
    per_type: dict[str, dict[str, list[float]]] = {}
    weights_report = {}
    gates_report: dict[str, list[dict]] = {}
    probes_report: dict[str, list[dict]] = {}
    props = {k: np.asarray(v) for k, v in extras["item_properties"].items()}
    id_probes: dict[str, list[dict[str, float]]] = {}
    expert_size = None
    by_arm: dict[str, list[Path]] = {}
    for run_dir in runs:
        arm = run_dir.name.split("-")[2]
        by_arm.setdefault(arm, []).append(run_dir)
        r = np.load(run_dir / "ranks.npz", allow_pickle=False)["test"]
        nd = ndcg10(r)
        d = per_type.setdefault(arm, {n: [] for n in names + ["all"]})
        for t, n in enumerate(names):
            d[n].append(float(nd[types == t].mean()))
        d["all"].append(float(nd.mean()))
        run = load_run(run_dir, device="cpu")
        ids = id_embeddings(run)
        id_probes.setdefault(arm, []).append({k: linear_probe_accuracy(ids, v[1:]) for k, v in props.items()})
        mm = run.model.item_input
        if getattr(mm, "content_gate", None) is not None:
            g = content_gates(run).last  # (U,) at each user's last test position
            gates_report.setdefault(arm, []).append({
                "run": run_dir.name,
                "mean_gate_by_type": {n: round(float(g[types == t].mean()), 4) for t, n in enumerate(names)},
                "gate_std_by_type": {n: round(float(g[types == t].std()), 4) for t, n in enumerate(names)}})
        if getattr(mm, "fusion_weights", None) is None or not hasattr(mm.fuser, "fusion"):
            continue
        pc = run.config.model.prism
        expert_size = expert_size or (pc.expert_hidden, pc.expert_layers)
        w = fusion_weights(run).last  # (U, E) at each user's last test position
        probes_report.setdefault(arm, []).append({"run": run_dir.name, "probes": expert_probes(run, props),
                                                  "expert_agreement": expert_agreement(run),
                                                  "content_variation": content_variation(run)})
        layer = fusion_layer_state(run) if pc.fusion == "adaptive" else None  # live units, input norms
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
                **({"fusion_layer": layer} if layer is not None and key == arm else {}),
            })
    table = {arm: {n: {"mean": float(np.mean(v)), "std": float(np.std(v))} for n, v in d.items()}
             for arm, d in per_type.items()}
    lines = ["| arm | " + " | ".join(names + ["all"]) + " |", "|---" * (len(names) + 2) + "|"]
    for arm, d in table.items():
        lines.append(f"| {arm} | " + " | ".join(f"{d[n]['mean']:.4f} ± {d[n]['std']:.4f}" for n in names + ["all"])
                     + " |")
    type_tests = per_type_comparisons(plan.get("compare") or {}, by_arm, types, names)
    if type_tests:
        lines.append("\nPaired tests inside each planted type (the plan's comparisons; each user's NDCG@10 averaged "
                     "over the arm's seeds): relative change of the arm over the other, t-test p")
        lines.append("| arm vs other | " + " | ".join(names) + " |")
        lines.append("|---" * (len(names) + 1) + "|")
        for row in type_tests:
            cells = [f"{t['relative']:+.1%} (p = {t['t_pvalue']:.2g})" if t["relative"] is not None else "n/a"
                     for t in (row["by_type"][n] for n in names)]
            lines.append(f"| {row['arm']} vs {row['vs']} | " + " | ".join(cells) + " |")
    for arm, reps in weights_report.items():
        acc = [r["type_from_weights_cv_accuracy"] for r in reps]
        lines.append(f"\n{arm}: planted type from fusion weights, 5-fold nearest-centroid accuracy "
                     f"{np.mean(acc):.3f} ± {np.std(acc):.3f} (chance 0.25)")
        layers = [r["fusion_layer"] for r in reps if "fusion_layer" in r]
        if layers:
            norms = {e: np.mean([x["expert_output_norm"][e] for x in layers]) for e in layers[0]["expert_output_norm"]}
            lines.append(f"fusion MLP: live hidden units {', '.join(str(x['live_units']) for x in layers)} of "
                         f"{layers[0]['hidden_units']} (per seed); mean input norms "
                         + ", ".join(f"{e} {v:.2f}" for e, v in norms.items())
                         + f", ID embedding {np.mean([x['id_embedding_norm'] for x in layers]):.2f}")
        rep = reps[0]
        lines.append("| planted type | " + " | ".join(rep["experts"]) + " |")
        lines.append("|---" * (len(rep["experts"]) + 1) + "|")
        for n in names:
            m = np.mean([[r["mean_weight_by_type"][n][e] for e in rep["experts"]] for r in reps], axis=0)
            lines.append(f"| {n} | " + " | ".join(f"{v:.3f}" for v in m) + " |")
    for arm, reps in gates_report.items():
        lines.append(f"\n{arm}: content gate at the last test position, mean over each planted type's users "
                     f"(1 = content in full, 0 = IDs only; mean over {len(reps)} seeds)")
        lines.append("| " + " | ".join(names) + " |")
        lines.append("|---" * len(names) + "|")
        lines.append("| " + " | ".join(f"{np.mean([r['mean_gate_by_type'][n] for r in reps]):.3f}" for n in names)
                     + " |")
    prop_names = list(extras["item_properties"])
    cats = extras["categories_per_property"]
    chances = sorted({1 / cats[p] for p in prop_names})
    chance = (f"chance {chances[0]:.3f}" if len(chances) == 1 else
              "chance " + ", ".join(f"{p} {1 / cats[p]:.3f}" for p in prop_names))
    for arm, reps in probes_report.items():
        lines.append(f"\n{arm}: linear-probe accuracy, item embedding -> planted property "
                     f"(5-fold, {chance}; mean over {len(reps)} seeds)")
        lines.append("| embedding | " + " | ".join(prop_names) + " |")
        lines.append("|---" * (len(prop_names) + 1) + "|")
        for row in reps[0]["probes"]:
            vals = [np.mean([r["probes"][row][p] for r in reps]) for p in prop_names]
            lines.append(f"| {row} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
        agree = reps[0]["expert_agreement"]
        lines.append("expert outputs, mean cosine between two items' / between full input and unimodal view "
                     "(mean over seeds): " + "; ".join(
                         f"{e} {np.mean([r['expert_agreement'][e]['between_items'] for r in reps]):.3f} / "
                         f"{np.mean([r['expert_agreement'][e]['full_vs_view'] for r in reps]):.3f}" for e in agree))
        lines.append("input-side content: varying share of its energy "
                     + ", ".join(f"{r['content_variation']['varying_share']:.3f}" for r in reps)
                     + " (per seed), varying RMS / ID RMS "
                     + ", ".join(f"{r['content_variation']['varying_rms'] / r['content_variation']['id_rms']:.3f}"
                                 for r in reps))
    lines.append("\nID embeddings of every arm: linear-probe accuracy -> planted property "
                 f"(5-fold, {chance}; mean ± std over seeds)")
    lines.append("| arm | " + " | ".join(prop_names) + " |")
    lines.append("|---" * (len(prop_names) + 1) + "|")
    id_table = {arm: {p: {"mean": float(np.mean([r[p] for r in reps])), "std": float(np.std([r[p] for r in reps]))}
                      for p in prop_names} for arm, reps in id_probes.items()}
    for arm, row in id_table.items():
        lines.append(f"| {arm} | " + " | ".join(f"{row[p]['mean']:.3f} ± {row[p]['std']:.3f}" for p in prop_names) + " |")
    ceiling = None
    if expert_size is not None:
        hidden, layers = expert_size
        feats = [np.asarray(f.values[1:]) for f in first.dataset.features.values()]
        ceiling = {"expert_hidden": hidden, "expert_layers": layers, "epochs": args.ceiling_epochs, "folds": 5,
                   "accuracy": supervised_ceiling(feats, {k: v[1:] for k, v in props.items()}, hidden, layers,
                                                  epochs=args.ceiling_epochs)}
        lines.append(f"\nSupervised ceiling: an MLP of the experts' size ({layers} x {hidden}, GELU) trained on each "
                     f"property from the concatenated features, 5-fold held-out accuracy ({chance})")
        lines.append("| " + " | ".join(prop_names) + " |")
        lines.append("|---" * len(prop_names) + "|")
        lines.append("| " + " | ".join(f"{ceiling['accuracy'][p]:.3f}" for p in prop_names) + " |")
    print("\n".join(lines))
    plan_name = plan["name"]
    name = "planted_world" if plan_name == "planted_suite" else f"planted_world_{plan_name}"
    path = write_result(name, {"ndcg10_by_planted_type": table, "fusion_weights": weights_report,
                               "content_gates": gates_report, "per_type_comparisons": type_tests,
                               "expert_probes": probes_report, "id_embedding_probes": id_table,
                               "supervised_ceiling": ceiling,
                               "probe_chance": {p: 1 / cats[p] for p in prop_names}, "markdown": "\n".join(lines)},
                        Path(args.results_dir) if args.results_dir else None)
    print(f"results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
