"""Pack / unpack prepared datasets for a trip to the lent GPU machine (64 MiB transfer limit).

    python benchmarks/device/carry_data.py pack   --src ~/.cache/prismrec/datasets --dst .carry/datasets
    python benchmarks/device/carry_data.py unpack --src .carry/datasets --dst /tmp/datasets

Feature matrices travel as float16 (.f16.npy) and are converted back to float32 on arrival, so
results from the GPU machine use features rounded to float16 (relative error ~1e-3); this is
stated next to every number produced that way. Everything else is copied unchanged.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["pack", "unpack"], help="pack here, unpack there")
    ap.add_argument("--src", required=True, help="folder of prepared datasets")
    ap.add_argument("--dst", required=True, help="output folder")
    ap.add_argument("--datasets", nargs="*", default=None, help="names to include (default: all)")
    args = ap.parse_args()
    src, dst = Path(args.src).expanduser(), Path(args.dst)
    for ds in sorted(p for p in src.iterdir() if (p / "dataset.json").is_file()):
        if args.datasets and ds.name not in args.datasets:
            continue
        for f in ds.rglob("*"):
            if f.is_dir():
                continue
            rel = f.relative_to(ds)
            out = dst / ds.name / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            if args.action == "pack" and f.suffix == ".npy" and f.parent.name == "features":
                np.save(out.with_suffix(".f16.npy"), np.load(f, allow_pickle=False).astype(np.float16))
            elif args.action == "unpack" and f.name.endswith(".f16.npy"):
                np.save(out.parent / f.name.replace(".f16.npy", ".npy"),
                        np.load(f, allow_pickle=False).astype(np.float32))
            elif f.suffix in (".npy",) and f.parent.name == "features":
                continue  # partial/cache files
            else:
                shutil.copy2(f, out)
        print(f"{args.action}ed {ds.name}")


if __name__ == "__main__":
    main()
