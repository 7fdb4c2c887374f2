"""``prismrec data``: dataset statistics, preparation from raw sources, RecBole export."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

FORMAT_DOC = "docs/data_format.md"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect, prepare and export datasets",
                       description=f"Dataset tools. Prepared folders are described in {FORMAT_DOC}.")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    s = dsub.add_parser("stats", help="print dataset statistics",
                        description="Users, items, interactions, sequence lengths and feature matrices of a dataset.")
    s.add_argument("--data", required=True, metavar="PATH",
                   help="sequence file, prepared folder, or benchmark folder (e.g. ../shared/data/amazon_beauty)")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.add_argument("--min-seq-len", type=int, default=3, metavar="N",
                   help="drop users with fewer items, as training does (default: 3)")
    s.set_defaults(func=cmd_stats)

    _register_prepare(dsub)

    e = dsub.add_parser("export-recbole", help="write RecBole atomic files (.inter, .item)",
                        description="Export a dataset as RecBole atomic files. Timestamps are ordinal (a user's "
                                    "items get 0, 1, 2, ... in order) so RecBole's order equals the sequences.")
    e.add_argument("--data", required=True, metavar="PATH", help="sequence file, prepared folder, or benchmark folder")
    e.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    e.add_argument("--name", help="file stem of <name>.inter / <name>.item (default: the dataset name)")
    e.set_defaults(func=cmd_export_recbole)


def _add_common_import(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="prepared dataset folder to write")
    p.add_argument("--name", help="dataset name recorded in dataset.json (default: from the input file's name; "
                                  "'yelp' for yelp)")
    p.add_argument("--k-core", type=int, default=5, metavar="K",
                   help="iterated k-core: keep users and items with at least K interactions (default: 5; 0 = off)")
    p.add_argument("--dedup", action="store_true",
                   help="keep only the earliest interaction of each repeated (user, item) pair")
    p.add_argument("--min-rating", type=float, metavar="R", help="drop interactions rated below R")
    p.add_argument("--on-error", choices=("error", "skip"), default="error",
                   help="malformed lines: stop with file:line (error, default) or skip and count them (skip)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing prepared folder at --out")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _register_prepare(dsub) -> None:
    p = dsub.add_parser("prepare", help="build a prepared dataset folder from raw data or a benchmark folder",
                        description="Build a prepared dataset folder. Sources: amazon2014, amazon2018, yelp, recbole, "
                                    "folder. `prismrec data prepare --from-folder SRC --out DIR` is short for "
                                    "`prismrec data prepare folder --from-folder SRC --out DIR`.")
    p.add_argument("--from-folder", dest="top_from_folder", metavar="SRC",
                   help="benchmark folder to convert (shortcut for the 'folder' source)")
    p.add_argument("--out", dest="top_out", metavar="DIR", help="prepared folder to write (with --from-folder)")
    p.add_argument("--overwrite", dest="top_overwrite", action="store_true",
                   help="replace an existing prepared folder (with --from-folder)")
    p.set_defaults(func=cmd_prepare_shortcut)
    psub = p.add_subparsers(dest="source", metavar="SOURCE")

    for key, year in (("amazon2014", "2014"), ("amazon2018", "2018")):
        a = psub.add_parser(key, help=f"Amazon reviews {year} (reviews_*.json.gz + meta_*.json.gz)",
                            description=f"Import the Amazon {year} review release.")
        a.add_argument("--reviews", required=True, nargs="+", metavar="FILE",
                       help="review file(s), JSON lines, optionally .gz (e.g. reviews_Beauty_5.json.gz)")
        a.add_argument("--meta", metavar="FILE", help="metadata file (meta_<Category>.json.gz) for text, "
                       "attributes and image URLs" + (" (Python-literal lines, parsed safely)" if year == "2014" else ""))
        _add_common_import(a)
        a.set_defaults(func=cmd_prepare_source)

    y = psub.add_parser("yelp", help="Yelp open dataset (review + business JSON)",
                        description="Import the Yelp open dataset.")
    y.add_argument("--reviews", required=True, nargs="+", metavar="FILE",
                   help="yelp_academic_dataset_review.json")
    y.add_argument("--business", metavar="FILE", help="yelp_academic_dataset_business.json (names, categories)")
    _add_common_import(y)
    y.set_defaults(func=cmd_prepare_source)

    r = psub.add_parser("recbole", help="RecBole atomic files (.inter + optional .item)",
                        description="Import RecBole atomic files.")
    r.add_argument("--inter", required=True, metavar="FILE", help="the .inter file")
    r.add_argument("--item", metavar="FILE", help="the .item file (text, attributes, image_url)")
    r.add_argument("--user-field", default="user_id", help="user id field of .inter (default: user_id)")
    r.add_argument("--item-field", default="item_id", help="item id field of .inter/.item (default: item_id)")
    r.add_argument("--time-field", default="timestamp",
                   help="timestamp field of .inter (default: timestamp; absent = file order)")
    r.add_argument("--rating-field", default="rating",
                   help="rating field of .inter, used by --min-rating (default: rating)")
    r.add_argument("--text-field", help="text field of .item (default: first of text, title, name, ...)")
    r.add_argument("--attribute-fields", nargs="+", metavar="FIELD",
                   help="attribute fields of .item (default: every other token/token_seq field)")
    r.add_argument("--seq-separator", default=" ", help="token_seq separator (default: a space)")
    _add_common_import(r)
    r.set_defaults(func=cmd_prepare_source)

    f = psub.add_parser("folder", help="a benchmark folder such as ../shared/data/amazon_beauty",
                        description="Convert a benchmark folder (sequence file, datamaps.json, item2attributes, "
                                    "derived/item_meta.tsv) into a prepared folder. The source is only read.")
    f.add_argument("--from-folder", required=True, metavar="SRC", help="benchmark folder")
    f.add_argument("--out", required=True, metavar="DIR", help="prepared folder to write")
    f.add_argument("--overwrite", action="store_true", help="replace an existing prepared folder at --out")
    f.set_defaults(func=cmd_prepare_folder)


# ----------------------------------------------------------------------------- commands


def cmd_stats(args) -> int:
    from ..config import ConfigError
    from ..data import load_dataset

    if args.min_seq_len < 1:
        raise ConfigError(f"--min-seq-len: expected an integer >= 1 (users with fewer items are dropped), got "
                          f"{args.min_seq_len}")
    ds = load_dataset(args.data, min_seq_len=args.min_seq_len)
    stats = ds.statistics()
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    width = max(len(k) for k in stats)
    for k, v in stats.items():
        if k == "modalities":
            continue
        print(f"{k:<{width}}  {v:,}" if isinstance(v, int) else f"{k:<{width}}  {v}")
    mods = stats["modalities"]
    if mods:
        print("modalities:")
        for name, m in mods.items():
            print(f"  {name:<12} dim {m['dim']:<5} present {m['present']:,}/{ds.num_items:,}  encoder {m['encoder']}"
                  + ("  (SYNTHETIC)" if m["synthetic"] else ""))
    else:
        print("modalities: none")
    return 0


def cmd_prepare_shortcut(args) -> int:
    from ..data.sequences import DataError

    if args.top_from_folder is None:
        raise DataError("data prepare: give a source (amazon2014, amazon2018, yelp, recbole, folder) "
                        "or --from-folder SRC --out DIR")
    if args.top_out is None:
        raise DataError("data prepare --from-folder needs --out DIR")
    args.from_folder, args.out, args.overwrite = args.top_from_folder, args.top_out, args.top_overwrite
    return cmd_prepare_folder(args)


def cmd_prepare_folder(args) -> int:
    from ..api import check_output_dir
    from ..data.folders import prepare_from_folder
    from ..data.prepared import read_dataset_json

    check_output_dir(args.out, "--out")
    out = prepare_from_folder(args.from_folder, args.out, overwrite=args.overwrite)
    meta = read_dataset_json(out)
    print(f"prepared {out}: {meta['num_users']:,} users, {meta['num_items']:,} items, "
          f"{meta['num_interactions']:,} interactions")
    return 0


def cmd_prepare_source(args) -> int:
    from ..api import check_output_dir
    from ..data.importers import (PipelineConfig, import_amazon2014, import_amazon2018, import_recbole,
                                  import_yelp)
    from ..data.prepared import write_prepared

    check_output_dir(args.out, "--out")  # before the (long) import
    cfg = PipelineConfig(k_core=args.k_core, dedup=args.dedup, min_rating=args.min_rating)
    common = dict(config=cfg, on_error=args.on_error, progress=not args.no_progress)
    if args.name:
        common["name"] = args.name
    if args.source == "amazon2014":
        ds = import_amazon2014(args.reviews, args.meta, **common)
    elif args.source == "amazon2018":
        ds = import_amazon2018(args.reviews, args.meta, **common)
    elif args.source == "yelp":
        ds = import_yelp(args.reviews, args.business, **common)
    else:
        _check_rating_field(args)
        ds = import_recbole(args.inter, args.item, user_field=args.user_field, item_field=args.item_field,
                            time_field=args.time_field, rating_field=args.rating_field, text_field=args.text_field,
                            attribute_fields=args.attribute_fields, seq_separator=args.seq_separator, **common)
    report = ds.extras.get("import_report", {})
    out = write_prepared(args.out, ds, overwrite=args.overwrite, provenance=report)
    print(f"prepared {out}: {ds.num_users:,} users, {ds.num_items:,} items, "
          f"{ds.sequences.num_interactions:,} interactions (read {report.get('interactions_read', 0):,}, "
          f"{args.k_core}-core)")
    skipped = sum(report.get("skipped_lines", {}).values())
    if skipped:
        print(f"skipped {skipped:,} malformed line(s) (--on-error skip), e.g.:", file=sys.stderr)
        for ex in report.get("skipped_examples", []):
            print(f"  {ex}", file=sys.stderr)
    if "items_with_metadata" in report:
        print(f"metadata: {report['items_with_metadata']:,} items matched, {report['items_with_text']:,} with text, "
              f"{report['items_with_attributes']:,} with attributes, {report['items_with_image_url']:,} with image URL")
    return 0


def _check_rating_field(args) -> None:
    """``--min-rating`` with a ``--rating-field`` the .inter header lacks: name the field and list the header's
    (checked before the import, which would only say that the source has no ratings)."""
    from ..data.importers.lines import iter_line_chunks
    from ..data.importers.recbole import parse_header
    from ..data.sequences import DataError

    if args.min_rating is None:
        return
    inter = Path(args.inter)
    for chunk in iter_line_chunks(inter, chunk_bytes=1 << 16, progress=False):
        if chunk.height:
            names = [n for n, _ in parse_header(chunk["line"][0], inter)]
            if args.rating_field not in names:
                raise DataError(f"{inter}: --min-rating needs ratings, but there is no field {args.rating_field!r} "
                                f"in the header (fields: {', '.join(names)}); name it with --rating-field")
            return


def cmd_export_recbole(args) -> int:
    from ..api import check_output_dir
    from ..data import load_dataset
    from ..data.importers import export_recbole

    check_output_dir(args.out, "--out")
    ds = load_dataset(Path(args.data), min_seq_len=1)
    paths = export_recbole(ds, args.out, name=args.name)
    print("wrote " + ", ".join(map(str, paths)))
    return 0
