"""Do PRISM's experts decompose their input, or do separate t-SNE clusters come for free?

    python benchmarks/expert_map.py --run planted4=runs/planted_synergy4/synthetic-ce-prism-s1 \
        --run beautyBce=runs/beauty_bce_loss_items/amazon_beauty-bce-prism-s1 --svg-dir docs/img --name expert_map

The paper shows decomposition with a t-SNE picture in which every expert forms its own cluster
(PAPER.md §6: "decomposition quality is only shown by t-SNE pictures"). For every run this script
computes the same picture (``prismrec.introspect.expert_map``: t-SNE of the L2-normalised expert
embeddings of a seeded sample of items) and two measures taken in the embedding space itself:
the mean cosine similarity between two experts' embeddings of the same item, and how linearly an
embedding's expert can be told from it (5-fold ridge accuracy, chance 1/E). Each is measured for
the trained model and for **the same model at its initialisation** (``prismrec.api.build`` with the
run's own config and seed, no training): if the untrained experts are already as separate, the
picture says nothing about what training made the experts encode (for that, see the linear probes
of ``planted_world.py``, which this script repeats for trained and initial experts on the
embedded synthetic world: linear-probe accuracy of each planted item property). Writes
benchmarks/results/<name>.json, prints a Markdown table, and with ``--svg-dir`` the trained and
initial pictures as <dir>/<name>_<run>{,_init}.svg.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402


def measure(run, items: int, perplexity: float, svg: Path | None, title: str) -> dict:
    from prismrec.introspect import expert_map
    from prismrec.plotting import scatter_svg

    m = expert_map(run, num_items=items, perplexity=perplexity)
    E = len(m.experts)
    if svg is not None:
        scatter_svg(svg, *m.points(), m.experts, title=title)
    off = m.similarity[~np.eye(E, dtype=bool)]
    return {**m.summary(), "mean_offdiag_similarity": float(off.mean()), "max_offdiag_similarity": float(off.max()),
            "svg": str(svg) if svg is not None else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, metavar="NAME=DIR",
                    help="a PRISM run directory to measure, under a short name (repeatable)")
    ap.add_argument("--items", type=int, default=1000, help="items sampled per run (default 1000)")
    ap.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity (default 30)")
    ap.add_argument("--svg-dir", default=None, help="write the trained and initial t-SNE pictures here")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--name", default="expert_map", help="result file name (default expert_map)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from prismrec import api
    from prismrec.introspect import expert_probes

    svg_dir = Path(args.svg_dir) if args.svg_dir else None
    if svg_dir is not None:
        svg_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for spec in args.run:
        name, _, path = spec.partition("=")
        if not path:
            ap.error(f"--run expects NAME=DIR, got {spec!r}")
        run = api.load_run(path)
        init = api.build(run.config, dataset=run.dataset)  # the run's own initial weights (same seed)
        svg = (lambda tag: svg_dir / f"{args.name}_{name}{tag}.svg" if svg_dir is not None else None)
        results[name] = {
            "run": path,
            "trained": measure(run, args.items, args.perplexity, svg(""), f"{name}: trained experts"),
            "init": measure(init, args.items, args.perplexity, svg("_init"), f"{name}: experts at initialisation"),
        }
        props = run.dataset.extras.get("item_properties")
        if props is not None:  # the planted world: what each expert reads, trained vs at initialisation
            results[name]["trained"]["probes"] = expert_probes(run, props)
            results[name]["init"]["probes"] = expert_probes(init, props)
        print(f"{name}: done", file=sys.stderr, flush=True)

    lines = ["| run | experts | trained: mean / max cosine between experts | trained: expert told from embedding "
             "| at init: mean / max cosine | at init: expert told from embedding | chance |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        t, i = r["trained"], r["init"]
        lines.append(f"| {name} | {len(t['experts'])} | {t['mean_offdiag_similarity']:.3f} / "
                     f"{t['max_offdiag_similarity']:.3f} | {t['separability']:.3f} | "
                     f"{i['mean_offdiag_similarity']:.3f} / {i['max_offdiag_similarity']:.3f} | "
                     f"{i['separability']:.3f} | {t['chance']:.3f} |")
    for name, r in results.items():
        if "probes" not in r["trained"]:
            continue
        props = list(next(iter(r["trained"]["probes"].values())))
        lines += ["", f"{name}: linear-probe accuracy of each planted property, trained / at initialisation", "",
                  "| embedding | " + " | ".join(props) + " |", "|---|" + "---|" * len(props)]
        for emb, accs in r["trained"]["probes"].items():
            init_accs = r["init"]["probes"][emb]
            lines.append(f"| {emb} | " + " | ".join(f"{accs[p]:.3f} / {init_accs[p]:.3f}" for p in props) + " |")
    table = "\n".join(lines)
    print(table)
    path = write_result(args.name, {"items": args.items, "perplexity": args.perplexity, "runs": results,
                                    "markdown": table})
    print(f"results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
