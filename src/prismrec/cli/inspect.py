"""``prismrec inspect``: what a PRISM run learned."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="fusion weights and expert embeddings of a PRISM run",
                       description="Print the average fusion weight of each expert and its spread across users "
                                   "(weights at each user's most recent position), the per-user content gate "
                                   "where the run has one (model.prism.content_gate), the prediction layer's "
                                   "scales per popularity bucket where it has them "
                                   "(model.prism.output_popularity_buckets), the learned item offsets against "
                                   "item popularity where it has them (model.item_bias; also for an ID-only "
                                   "run), and optionally export "
                                   "per-user weights and per-item expert embeddings, linear-probe the experts against item labels, "
                                   "or draw the experts' t-SNE map. A naive fusion (model.prism.method=concat, sum, "
                                   "mean or gated) has no experts or fusion weights: for it, the content variation, "
                                   "content gate and item offsets where it has them, and --probe of its fused item "
                                   "embedding.")
    p.add_argument("--run", required=True, metavar="DIR",
                   help="run directory trained with model.prism.enabled=true (or with model.item_bias=true)")
    p.add_argument("--data", metavar="PATH", help="override the dataset path stored in the run's config (e.g. "
                   "when the run was trained from another directory)")
    p.add_argument("--split", choices=["valid", "test"], default="test", help="whose input sequences (default test)")
    p.add_argument("--export-weights", metavar="FILE.npz",
                   help="write user_ids, experts and weights (U, E) (with a content gate also gate (U,)); with "
                        "--per-position also per_position (U, L, E) and gate_per_position (U, L)")
    p.add_argument("--per-position", action="store_true", help="export causal weights at every position too")
    p.add_argument("--export-experts", metavar="FILE.npz", help="write per-item expert embeddings (N, E, D)")
    p.add_argument("--probe", action="store_true",
                   help="linear-probe every expert's item embeddings (a naive fusion: its fused item embedding; "
                        "and, for reference, the input features and "
                        "ID embeddings): 5-fold accuracy of a ridge classifier predicting item labels. Labels: the "
                        "planted item properties of the embedded synthetic world, or --probe-labels")
    p.add_argument("--probe-labels", metavar="FILE.tsv",
                   help="item labels for --probe on real data: one 'item_id<TAB>label' per line (item ids as in "
                        "the run's dataset; labels are any strings, e.g. a category; unlisted items are ignored)")
    p.add_argument("--tsne", metavar="FILE.svg",
                   help="t-SNE map of the experts' item embeddings (the paper's expert picture): writes FILE.svg (one "
                        "colour per expert) and FILE.csv (item, expert, x, y) for a seeded sample of items, and "
                        "reports two measures taken in the embedding space itself: the mean cosine similarity "
                        "between every two experts' embeddings of the same item, and how linearly the expert "
                        "can be told from an embedding (5-fold ridge accuracy; chance 1/E). Needs scikit-learn")
    p.add_argument("--tsne-items", type=int, metavar="N",
                   help="items sampled for --tsne, which it needs (default 1000; all items if fewer); N x E points "
                        "are embedded")
    p.add_argument("--tsne-perplexity", type=float, metavar="P",
                   help="t-SNE perplexity for --tsne, which it needs (default 30; capped at (points - 1) / 3)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu", help="device (default cpu)")
    p.add_argument("--json", action="store_true",
                   help="print the summary as one JSON object: fusion_weights (a list of per-expert rows, when the "
                        "run has PRISM's experts), fusion_layer (the adaptive fusion MLP's live hidden units and "
                        "its inputs' norms; not with fusion=uniform), expert_agreement (per expert: mean cosine "
                        "between two items' outputs and between the full input's and a unimodal view's), "
                        "content_variation (how much of the input-side content varies across positions, beside the "
                        "ID embeddings' norm), "
                        "output_fusion_weights, fusion_equal_share (the share of the "
                        "weights split equally, with model.prism.fusion_floor or fusion_warmup_epochs), "
                        "content_gate, output_popularity_scales, item_bias, probes and expert_map where they apply")
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    from ..api import check_output_file, load_run
    from ..config import ConfigError

    if args.per_position and not args.export_weights:
        raise ConfigError("--per-position adds per-position weights to --export-weights FILE.npz; give that too")
    for flag, value in (("--tsne-items", args.tsne_items), ("--tsne-perplexity", args.tsne_perplexity)):
        if value is not None and not args.tsne:
            raise ConfigError(f"{flag} sets up the t-SNE map of --tsne FILE.svg; give that too")
    if args.tsne_items is not None and args.tsne_items < 2:
        raise ConfigError(f"--tsne-items: expected an integer >= 2 (items sampled for --tsne), got {args.tsne_items}")
    if args.tsne_perplexity is not None and not args.tsne_perplexity > 0:
        raise ConfigError(f"--tsne-perplexity: expected a number > 0, got {args.tsne_perplexity:g}")
    # output paths are checked before the run is loaded and anything is computed
    for path, flag, example in ((args.export_weights, "--export-weights", "weights.npz"),
                                (args.export_experts, "--export-experts", "experts.npz")):
        if path:
            check_output_file(path, flag, example)
            if not path.endswith(".npz"):  # numpy appends .npz
                check_output_file(path + ".npz", flag, example)
    if args.tsne:
        check_output_file(args.tsne, "--tsne", "map.svg")
        check_output_file(Path(args.tsne).with_suffix(".csv"), "--tsne", "map.svg")
    run = load_run(args.run, device=args.device, data_path=args.data)
    try:
        return _inspect(run, args)
    except ValueError as exc:  # e.g. the t-SNE map without scikit-learn
        raise ConfigError(str(exc)) from None


def _inspect(run, args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from ..introspect import (LIVE_PRE_ACTIVATION, LIVE_SHARE, content_gates, content_variation, expert_agreement,
                              expert_embeddings, expert_probes, fusion_layer_state, fusion_weights,
                              has_multimodal_input, item_bias_summary, output_fusion_weights, popularity_scales)

    item_input = run.model.item_input
    multimodal = has_multimodal_input(run)
    if not multimodal and run.model.item_bias is None:
        raise ConfigError(f"{args.run}: nothing to inspect: this run has no multimodal item input and no item "
                          f"offsets; inspect reads runs trained with model.prism.enabled=true (PRISM, or a naive "
                          f"fusion such as model.prism.method=concat) or with model.item_bias=true")
    experts = multimodal and bool(item_input.expert_names)  # a naive fusion has one fused embedding, no experts
    for flag, value in (("--export-experts", args.export_experts), ("--tsne", args.tsne)):
        if value and not experts:
            why = (f"the naive fusion model.prism.method={run.config.model.prism.method} has no experts"
                   if multimodal else "it has no multimodal item input")
            raise ConfigError(f"{flag}: this run has no per-expert item embeddings ({why}; they exist with "
                              f"model.prism.enabled=true and model.prism.method=prism)")
    if (args.probe or args.probe_labels) and not multimodal:
        raise ConfigError(f"{'--probe' if args.probe else '--probe-labels'}: this run has no multimodal item input "
                          f"to probe (train with model.prism.enabled=true)")
    has_gate = getattr(run.model.item_input, "content_gate", None) is not None
    gates = content_gates(run, args.split, per_position=args.per_position) if has_gate else None
    has_popularity = getattr(run.model.item_input, "popularity", None) is not None
    pop_rows = popularity_scales(run) if has_popularity else None
    bias = item_bias_summary(run) if run.model.item_bias is not None else None
    # no fusion layer (a naive fusion, or IDs only): the other parts are all there is to report
    fw = fusion_weights(run, args.split, per_position=args.per_position) if experts else None
    rows = fw.summary() if fw is not None else None
    content = content_variation(run, args.split) if hasattr(run.model.item_input, "input_parts") else None
    agreement = expert_agreement(run) if fw is not None else None
    # equal weights (fusion=uniform) have no fusion MLP to describe
    layer = fusion_layer_state(run, args.split) if fw is not None and run.model.item_input.has_fusion_mlp else None
    gate_row = gates.summary() if gates is not None else None
    equal_share = getattr(run.model.item_input, "fusion_equal_share", None)
    out_rows = None
    if getattr(run.model.item_input, "query_fusion", None) is not None:
        out_rows = output_fusion_weights(run, args.split).summary()
    if args.export_weights and fw is None and gates is None:
        raise ConfigError("--export-weights: this run has no fusion weights or content gate to export "
                          "(it has no adaptive fusion layer)")
    if args.export_weights:
        arrays: dict[str, np.ndarray] = {}
        if fw is not None:
            arrays |= {"user_ids": fw.user_ids, "experts": np.array(fw.experts), "weights": fw.last}
            if args.per_position:
                arrays |= {"per_position": fw.per_position, "padding_mask": fw.padding_mask}
        if gates is not None:
            arrays |= {"user_ids": gates.user_ids, "gate": gates.last}
            if args.per_position:
                arrays |= {"gate_per_position": gates.per_position, "padding_mask": gates.padding_mask}
        np.savez_compressed(args.export_weights, **arrays)
    if args.export_experts:
        names, emb = expert_embeddings(run)
        np.savez_compressed(args.export_experts, items=np.arange(1, run.dataset.num_items + 1),
                            experts=np.array(names), embeddings=emb)
    emap = _expert_map(run, args) if args.tsne else None
    probes = None
    if args.probe or args.probe_labels:
        labels = read_item_labels(args.probe_labels, run.dataset.num_items) if args.probe_labels else \
            run.dataset.extras.get("item_properties")
        if labels is None:
            raise ConfigError("--probe needs item labels: this dataset has no planted item properties "
                              "(only the embedded synthetic world does); pass --probe-labels FILE.tsv")
        probes = expert_probes(run, labels)
    if args.json:  # always one object; absent parts are left out
        print(json.dumps({k: v for k, v in (("fusion_weights", rows), ("fusion_layer", layer),
                                            ("expert_agreement", agreement), ("content_variation", content),
                                            ("output_fusion_weights", out_rows),
                                            ("fusion_equal_share", equal_share), ("content_gate", gate_row),
                                            ("output_popularity_scales", pop_rows), ("item_bias", bias),
                                            ("probes", probes), ("expert_map", emap))
                          if v is not None}, indent=2))
    else:
        if gate_row is not None:
            n = len(gates.user_ids)
            print(f"content gate at each user's most recent position ({n} users, split {args.split}; "
                  "1 = content in full, 0 = ID embedding only)")
            print(f"{'mean':>7} {'std':>7} {'p25':>7} {'median':>7} {'p75':>7} {'share < 0.5':>11}")
            print(f"{gate_row['mean']:7.4f} {gate_row['std']:7.4f} {gate_row['p25']:7.4f} {gate_row['median']:7.4f} "
                  f"{gate_row['p75']:7.4f} {gate_row['share_below_0.5']:11.3f}")
            if rows is not None:
                print()
        if bias is not None:
            print(f"learned item offsets b_i (model.item_bias; score = q . k_i + b_i): mean {bias['mean']:.3f}, "
                  f"std {bias['std']:.3f}, Spearman correlation with the training count "
                  f"{bias['spearman_with_train_count']:.3f}")
            print(f"{'train count':>11} {'items':>7} {'mean':>7} {'std':>7} {'median':>7}")
            for r in bias["groups"]:
                print(f"{r['train_count']:>11} {r['items']:7d} {r['mean']:7.3f} {r['std']:7.3f} {r['median']:7.3f}")
            if pop_rows is not None or rows is not None:
                print()
        if pop_rows is not None:
            print("prediction-layer scales per popularity bucket (key = a_id * ID embedding + a_content * "
                  "content; both start at 1)")
            print(f"{'train count':>11} {'items':>7} {'a_id':>7} {'a_content':>9}")
            for r in pop_rows:
                print(f"{r['train_count']:>11} {r['items']:7d} {r['a_id']:7.3f} {r['a_content']:9.3f}")
            if rows is not None or out_rows is not None:
                print()
        tables = [("input-side fusion weights (adaptive fusion layer)", rows)] if rows is not None else []
        if out_rows is not None:
            tables.append(("prediction-layer fusion weights (output_fusion=user)", out_rows))
        for title, table in tables:
            print(f"{title} at each user's most recent position ({len(fw.user_ids)} users, split {args.split})")
            if equal_share is not None:
                print(f"  (these include a share {equal_share:.3f} split equally among the experts: "
                      f"model.prism.fusion_floor / fusion_warmup_epochs)")
            print(f"{'expert':<20} {'mean':>7} {'std':>7} {'p25':>7} {'median':>7} {'p75':>7} {'top share':>9}")
            for r in table:
                print(f"{r['expert']:<20} {r['mean']:7.4f} {r['std']:7.4f} {r['p25']:7.4f} {r['median']:7.4f} "
                      f"{r['p75']:7.4f} {r['top_expert_share']:9.3f}")
            if table is rows and layer is not None:
                norms = ", ".join(f"{n} {v:.2f}" for n, v in layer["expert_output_norm"].items())
                print(f"fusion MLP: {layer['live_units']} of {layer['hidden_units']} hidden units live (pre-activation "
                      f"> {LIVE_PRE_ACTIVATION:g} for >= {LIVE_SHARE:.0%} of users; with none the weights are the "
                      f"same for everyone); its inputs' mean norms: {norms}, ID embedding "
                      f"{layer['id_embedding_norm']:.2f}" + (" (standardised before the MLP: fusion_input_norm)"
                                                              if layer["input_norm"] else ""))
            if table is rows and agreement is not None:
                print("expert outputs, mean cosine (2,048 sampled items): between two items' outputs (near 1 = the same "
                      "vector for every item) and between the full input's and each unimodal view's (the interaction "
                      "losses' quantity)")
                print(f"{'expert':<20} {'between items':>13} {'full vs view':>12}")
                for name, a in agreement.items():
                    print(f"{name:<20} {a['between_items']:13.3f} {a['full_vs_view']:12.3f}")
        if content is not None:
            print(f"\ninput-side content at the {content['positions']:,} real positions of split {args.split}: "
                  f"{content['varying_share']:.1%} of its mean squared norm varies across positions (RMS "
                  f"{content['varying_rms']:.3f}; the rest is one vector shared by all), beside ID embeddings of RMS "
                  f"norm {content['id_rms']:.3f}")
        if probes is not None:
            names = list(next(iter(probes.values())))
            print("\nlinear-probe accuracy (5-fold ridge classifier), item embedding -> label")
            print(f"{'embedding':<20} " + " ".join(f"{n[:14]:>14}" for n in names))
            for emb, accs in probes.items():
                print(f"{emb:<20} " + " ".join(f"{accs[n]:14.3f}" for n in names))
        if emap is not None:
            experts = emap["experts"]
            print(f"\nexpert embeddings of {emap['items']} sampled items (t-SNE map: {emap['svg']}, {emap['csv']})")
            print("mean cosine similarity between experts, same item:")
            print(f"{'':<20} " + " ".join(f"{n[:14]:>14}" for n in experts))
            for name, row in zip(experts, emap["similarity"]):
                print(f"{name:<20} " + " ".join(f"{v:14.3f}" for v in row))
            print(f"expert told from its embedding (5-fold linear probe): {emap['separability']:.3f} "
                  f"(chance {emap['chance']:.3f})")
    return 0


def _expert_map(run, args: argparse.Namespace) -> dict:
    """Compute the t-SNE map, write FILE.svg and FILE.csv, return the summary (with the file paths)."""
    from ..introspect import expert_map
    from ..plotting import scatter_svg

    # options left out take expert_map's own defaults
    given = {"num_items": args.tsne_items, "perplexity": args.tsne_perplexity}
    m = expert_map(run, **{k: v for k, v in given.items() if v is not None})
    svg = Path(args.tsne)
    csv = svg.with_suffix(".csv")
    xy, expert = m.points()
    scatter_svg(svg, xy, expert, m.experts,
                title=f"t-SNE of expert embeddings, {len(m.items)} items ({Path(args.run).name})")
    items = np.repeat(m.items, len(m.experts))
    with open(csv, "w", encoding="utf-8") as fh:
        fh.write("item,expert,x,y\n")
        fh.writelines(f"{i},{m.experts[e]},{x:.5f},{y:.5f}\n" for i, e, (x, y) in zip(items, expert, xy))
    return {**m.summary(), "svg": str(svg), "csv": str(csv)}


def read_item_labels(path: str, num_items: int) -> dict[str, np.ndarray]:
    """``item_id<TAB>label`` lines -> {"label": (N + 1,) class index per item, -1 where unlabelled}."""
    from ..data.sequences import DataError

    labels = np.full(num_items + 1, -1, dtype=np.int64)
    classes: dict[str, int] = {}
    first: dict[int, int] = {}  # item -> line of its label
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2 or not parts[0].strip().isdigit():
                raise DataError(f"{path}:{lineno}: expected 'item_id<TAB>label', got {line.strip()[:80]!r}")
            item = int(parts[0])
            if not 1 <= item <= num_items:
                raise DataError(f"{path}:{lineno}: item id {item} is outside 1..{num_items}")
            if item in first:
                raise DataError(f"{path}:{lineno}: item {item} already has a label (line {first[item]}); give each "
                                f"item one label")
            first[item] = lineno
            labels[item] = classes.setdefault(parts[1].strip(), len(classes))
    if len(classes) < 2:
        raise DataError(f"{path}: need at least 2 distinct labels to probe, found {len(classes)}")
    return {"label": labels}
