"""Do two independently trained models know different things? A score-level ensemble of two runs.

    python benchmarks/ensemble.py --member sasrec=runs/beauty_ce_table/amazon_beauty-ce-sasrec-s1 \
        --member prism=runs/beauty_ce_table/amazon_beauty-ce-prism-s1 --name ensemble_beauty_sasrec_prism_s1 \
        [--data ~/.cache/prismrec/datasets/amazon_beauty] [--out runs/ensembles/sasrec+prism-s1]

Each member's scores of every item are turned into log-probabilities (log-softmax over the real items,
as the CE loss they were trained with reads them), and the ensemble ranks by
``w * logp_A + (1 - w) * logp_B`` (a weighted product of the two members' next-item distributions).
The weight is chosen on the validation split from a grid (``--grid``); the test split is scored once
per grid point and reported at the chosen weight, beside the two members alone (w = 1 and w = 0,
which must reproduce the members' own saved test metrics: checked, the script fails otherwise).
Full ranking with the user's history excluded and pessimistic ties, as every other evaluation here
(``prismrec.evaluation``); each member is run once per user batch, every grid point reuses its scores.

Why: joint training may make an ID path and a content path learn the same thing, so that content
costs the items the IDs alone rank well (docs/benchmarks.md §3: every content arm loses on the
coldest targets). An ensemble of separately trained ID-only and content models keeps both. Compare it
with the ensemble of two ID-only seeds (same parameter count, no content) before crediting content.

Writes benchmarks/results/<name>.json (per-grid-point metrics, the chosen weight, paired tests over
users of the ensemble against each member) and prints a table. ``--out DIR`` also writes a run-like
folder (``ranks.npz``, ``summary.json``, the first member's ``config.yaml``) that ``breakdown.py`` and
``suite.py``'s paired tests read like any trained run.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

KS = (5, 10, 20)


def parse_member(spec: str, option: str = "--member") -> tuple[str, Path]:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise SystemExit(f"error: {option} {spec!r}: expected NAME=RUN_DIR")
    return name, Path(path)


def log_probs(scores):
    """(B, N + 1) scores, column 0 padding -> log-softmax over the real items; padding -inf."""
    import torch

    out = torch.full_like(scores, float("-inf"))
    out[:, 1:] = torch.log_softmax(scores[:, 1:].float(), dim=1)
    return out


def grid_ranks(models, split, grid: list[float], batch_size: int, device) -> np.ndarray:
    """Test-target ranks (len(grid), U) of ``w * logp_0 + (1 - w) * logp_1`` for every w of ``grid``."""
    import torch

    from prismrec.evaluation.evaluator import user_batches
    from prismrec.evaluation.metrics import target_ranks

    ranks = torch.empty(len(grid), split.inputs.shape[0], dtype=torch.long)
    with torch.no_grad(), models[0].cached_item_tables(), models[1].cached_item_tables():
        for idx, seq, hist in user_batches(split, batch_size):
            seq = seq.to(device)
            a, b = (log_probs(m.full_sort_scores(seq)) for m in models)  # (B, N + 1) x2
            hist = hist.to(device) if hist is not None else None
            targets = split.targets[idx].to(device)
            for g, w in enumerate(grid):
                # w = 1 or 0: the member alone (0 * -inf would be nan in the padding column)
                combined = a if w == 1 else b if w == 0 else w * a + (1 - w) * b
                ranks[g, idx] = target_ranks(combined, targets, hist).cpu()
    return ranks.numpy()


def metrics(ranks: np.ndarray) -> dict[str, float]:
    import torch

    from prismrec.evaluation.metrics import metrics_from_ranks

    return metrics_from_ranks(torch.from_numpy(ranks), KS)


def ndcg10(ranks: np.ndarray) -> np.ndarray:
    from prismrec.evaluation.compare import per_user_metric

    return per_user_metric(ranks, "NDCG@10")


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    from prismrec.evaluation.compare import paired_test

    t = paired_test(a, b, "NDCG@10")
    return {"mean_a": t.mean_a, "mean_b": t.mean_b, "relative": t.relative, "t_pvalue": t.t_pvalue,
            "wilcoxon_pvalue": t.wilcoxon_pvalue, "users": t.users}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--member", action="append", required=True, metavar="NAME=RUN_DIR",
                    help="a finished prismrec run directory (exactly two members, same dataset and max_seq_len)")
    ap.add_argument("--data", default=None, help="dataset path, if not where the runs' config.yaml says")
    ap.add_argument("--grid", default=",".join(f"{w / 20:g}" for w in range(21)),
                    help="weights w of the first member to try, comma-separated in [0, 1] (default 0, 0.05, ..., 1)")
    ap.add_argument("--select", default="NDCG@10", help="validation metric that picks the weight (default NDCG@10)")
    ap.add_argument("--batch-size", type=int, default=512, help="users per evaluation batch (default 512)")
    ap.add_argument("--device", default="cpu", help="device (default cpu)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--name", required=True, help="results file name (benchmarks/results/<name>.json)")
    ap.add_argument("--out", default=None, help="also write a run-like folder with the ensemble's ranks here")
    ap.add_argument("--compare", action="append", default=[], metavar="NAME=RUN_DIR",
                    help="also test the ensemble against this run or ensemble folder (its ranks.npz), e.g. the "
                         "ensemble of two ID-only seeds written by an earlier --out; repeatable")
    ap.add_argument("--results-dir", default=None, help="where the JSON goes (default benchmarks/results)")
    args = ap.parse_args()

    members = [parse_member(s) for s in args.member]
    if len(members) != 2:
        ap.error(f"exactly two --member runs are needed, got {len(members)}")
    try:
        grid = sorted({float(w) for w in args.grid.split(",") if w.strip()})
    except ValueError:
        ap.error(f"--grid {args.grid!r}: expected comma-separated numbers")
    if not grid or grid[0] < 0 or grid[-1] > 1:
        ap.error(f"--grid {args.grid!r}: weights must lie in [0, 1]")
    grid = sorted(set(grid) | {0.0, 1.0})  # the members alone: the reproduction check
    if args.select not in {f"{m}@{k}" for m in ("HR", "NDCG", "MRR") for k in KS}:
        ap.error(f"--select {args.select!r}: expected one of HR/NDCG/MRR @ {'/'.join(map(str, KS))}")

    import torch

    from prismrec.api import load_run
    from prismrec.data.sequences import DataError
    from prismrec.evaluation.compare import load_ranks

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        runs = [load_run(path, device=args.device, data_path=args.data) for _, path in members]
    except (FileNotFoundError, DataError) as err:
        raise SystemExit(f"error: {err}")
    fingerprints = {r.dataset.item_map_fingerprint() for r in runs}
    lengths = {r.config.data.max_seq_len for r in runs}
    if len(fingerprints) > 1:
        raise SystemExit(f"error: the members were trained on different datasets (item maps {sorted(fingerprints)})")
    if len(lengths) > 1:
        raise SystemExit(f"error: the members read histories of different lengths (data.max_seq_len {sorted(lengths)}); "
                         "an ensemble needs both to see the same inputs")
    models = [r.model.eval() for r in runs]
    data = runs[0].data

    result = {"members": {name: str(path) for name, path in members}, "grid": grid, "select": args.select,
              "combine": "w * log_softmax(A) + (1 - w) * log_softmax(B), w = weight of the first member"}
    per_split = {}
    for split in ("valid", "test"):
        ranks = grid_ranks(models, data.split(split), grid, args.batch_size, runs[0].device)  # (G, U)
        per_split[split] = ranks
        result[split] = [{"w": w, **metrics(ranks[g])} for g, w in enumerate(grid)]

    # the members alone must reproduce what they saved (same evaluation, same weights)
    for (name, path), run, w in zip(members, runs, (1.0, 0.0)):
        saved = (run.summary or {}).get("test", {}).get("NDCG@10")
        got = result["test"][grid.index(w)]["NDCG@10"]
        if saved is not None and abs(saved - got) > 1e-6:
            raise SystemExit(f"error: member {name} alone gives test NDCG@10 {got:.6f} here but saved {saved:.6f} "
                             f"({path}); the ensemble would not be evaluated like the member was")
    best = max(range(len(grid)), key=lambda g: (result["valid"][g][args.select], -abs(grid[g] - 0.5)))
    chosen = per_split["test"][best]
    result["chosen_w"] = grid[best]
    result["chosen_valid"] = result["valid"][best]
    result["chosen_test"] = result["test"][best]
    ens = ndcg10(chosen)
    result["paired_test_ndcg10"] = {name: paired(ens, ndcg10(per_split["test"][grid.index(w)]))
                                    for (name, _), w in zip(members, (1.0, 0.0))}
    for spec in args.compare:
        name, other = parse_member(spec, "--compare")
        try:
            theirs = load_ranks(other, "test").ranks
        except DataError as exc:
            raise SystemExit(f"error: --compare {spec!r}: {exc}") from None
        if theirs.shape != chosen.shape:
            raise SystemExit(f"error: --compare {spec!r}: {len(theirs)} users, the ensemble has {len(chosen)}")
        result["paired_test_ndcg10"][name] = paired(ens, ndcg10(theirs))
    path = write_result(args.name, result, Path(args.results_dir) if args.results_dir else None)

    (a, _), (b, _) = members
    print(f"| w ({a}) | valid {args.select} | test NDCG@10 | test HR@10 |")
    print("|---|---|---|---|")
    for g, w in enumerate(grid):
        mark = " **(chosen)**" if g == best else ""
        print(f"| {w:g}{mark} | {result['valid'][g][args.select]:.4f} | {result['test'][g]['NDCG@10']:.4f} | "
              f"{result['test'][g]['HR@10']:.4f} |")
    for name, p in result["paired_test_ndcg10"].items():
        print(f"ensemble vs {name}: {p['mean_a']:.4f} vs {p['mean_b']:.4f} ({100 * p['relative']:+.1f}%), "
              f"paired t p = {p['t_pvalue']:.2g}, Wilcoxon p = {p['wilcoxon_pvalue']:.2g}")
    print(f"results: {path}")

    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy2(members[0][1] / "config.yaml", out / "config.yaml")
        np.savez_compressed(out / "ranks.npz", valid=per_split["valid"][best], test=chosen,
                            user_ids=runs[0].dataset.sequences.user_ids)
        summary = {"dataset": runs[0].dataset.name, "ensemble_of": result["members"], "w": grid[best],
                   "valid": result["chosen_valid"], "test": result["chosen_test"],
                   "item_map_fingerprint": runs[0].dataset.item_map_fingerprint()}
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"ensemble run folder: {out}")


if __name__ == "__main__":
    main()
