"""Throughput of the Amazon review importer on a generated review file.

Writes a gzipped JSON-lines file of ``--reviews`` Amazon-2014-style reviews (random users
and items with Zipf-like popularity, ~500 bytes of review text each) to a temporary
folder, then times ``import_amazon2014`` (read + 5-core + ordering + ids) on it and prints
lines/s, MB/s and peak RSS. Writes ``benchmarks/results/import_throughput.json``.

    python benchmarks/bench_import.py --reviews 1000000
"""
from __future__ import annotations

import argparse
import gzip
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result_to  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks" / "results" / "import_throughput.json"


def write_reviews(path: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    users = rng.zipf(1.3, n) % (n // 8 + 1)
    items = rng.zipf(1.2, n) % (n // 20 + 1)
    times = rng.integers(1_000_000_000, 1_400_000_000, n)
    text = "lorem ipsum dolor sit amet " * 18
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as fh:
        for u, i, t in zip(users.tolist(), items.tolist(), times.tolist()):  # generation only
            fh.write(json.dumps({"reviewerID": f"U{u:010d}", "asin": f"B{i:09d}", "reviewerName": "n",
                                 "helpful": [0, 0], "reviewText": text, "overall": 4.0, "summary": "ok",
                                 "unixReviewTime": t, "reviewTime": "01 1, 2014"}) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reviews", type=int, default=1_000_000, help="number of generated reviews (default: 1e6)")
    p.add_argument("--out", type=Path, default=RESULT, metavar="FILE.json",
                   help=f"result JSON, with the command, commit and machine (default: {RESULT})")
    args = p.parse_args(argv)

    from prismrec.data.importers import import_amazon2014

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reviews_Synthetic.json.gz"
        write_reviews(path, args.reviews)
        gz_mb = path.stat().st_size / 1e6
        with gzip.open(path, "rb") as fh:
            raw_mb = sum(len(b) for b in iter(lambda: fh.read(1 << 24), b"")) / 1e6
        t0 = time.perf_counter()
        ds = import_amazon2014(path, progress=False)
        secs = time.perf_counter() - t0
    rep = ds.extras["import_report"]
    result = {"what": "import_amazon2014 on generated reviews (read + 5-core + order + ids)",
              "reviews": args.reviews, "file_mb_gz": round(gz_mb, 1), "file_mb_uncompressed": round(raw_mb, 1),
              "seconds": round(secs, 2), "lines_per_second": round(args.reviews / secs),
              "uncompressed_mb_per_second": round(raw_mb / secs, 1),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
              "kept": {k: rep[k] for k in ("users", "items", "interactions", "k_core_rounds")}}
    print(write_result_to(args.out, result).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
