"""``prismrec inspect``: what a PRISM run learned."""
from __future__ import annotations

import argparse
import json

import numpy as np


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="fusion weights and expert embeddings of a PRISM run",
                       description="Print the average fusion weight of each expert and its spread across users "
                                   "(weights at each user's most recent position), and optionally export "
                                   "per-user weights and per-item expert embeddings.")
    p.add_argument("--run", required=True, metavar="DIR", help="run directory trained with model.prism.enabled=true")
    p.add_argument("--split", choices=["valid", "test"], default="test", help="whose input sequences (default test)")
    p.add_argument("--export-weights", metavar="FILE.npz",
                   help="write user_ids, experts and weights (U, E); with --per-position also (U, L, E)")
    p.add_argument("--per-position", action="store_true", help="export causal weights at every position too")
    p.add_argument("--export-experts", metavar="FILE.npz", help="write per-item expert embeddings (N, E, D)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu", help="device (default cpu)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    from ..api import load_run
    from ..config import ConfigError
    from ..introspect import expert_embeddings, fusion_weights

    run = load_run(args.run, device=args.device)
    try:
        fw = fusion_weights(run, args.split, per_position=args.per_position)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    rows = fw.summary()
    if args.export_weights:
        extra = {"per_position": fw.per_position, "padding_mask": fw.padding_mask} if args.per_position else {}
        np.savez_compressed(args.export_weights, user_ids=fw.user_ids, experts=np.array(fw.experts),
                            weights=fw.last, **extra)
    if args.export_experts:
        names, emb = expert_embeddings(run)
        np.savez_compressed(args.export_experts, items=np.arange(1, run.dataset.num_items + 1),
                            experts=np.array(names), embeddings=emb)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"fusion weights at each user's most recent position ({len(fw.user_ids)} users, split {args.split})")
        print(f"{'expert':<20} {'mean':>7} {'std':>7} {'p25':>7} {'median':>7} {'p75':>7} {'top share':>9}")
        for r in rows:
            print(f"{r['expert']:<20} {r['mean']:7.4f} {r['std']:7.4f} {r['p25']:7.4f} {r['median']:7.4f} "
                  f"{r['p75']:7.4f} {r['top_expert_share']:9.3f}")
    return 0
