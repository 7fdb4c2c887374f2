"""Train every backbone, vanilla and +PRISM, on one dataset; record test metrics, speed and memory.

    python benchmarks/bench_backbones.py                                   # Beauty, all backbones, both arms
    python benchmarks/bench_backbones.py --arms vanilla --set train.epochs=2 --name backbones_beauty_2ep
    python benchmarks/bench_backbones.py --seeds 1 2 3 --device cuda --jobs 3
    python benchmarks/bench_backbones.py --data ../shared/data/amazon_sports --name backbones_sports

Each run is its own ``prismrec train`` process (so peak memory is per run) using the backbone's
recipe ``recipes/<backbone>_beauty.yaml`` when it exists (SASRec: the defaults), then the --set
overrides. The vanilla arm trains on --data; the PRISM arm adds ``model.prism.enabled=true`` and
trains on --prism-data (a prepared folder with at least two feature matrices, e.g. text +
attributes from benchmarks/prepare_benchmark_data.py; default: ~/.cache/prismrec/datasets/<name>
when it exists). A PRISM arm without such data is recorded as skipped, with the reason.

Writes benchmarks/results/<name>.json: per run the exact command, test and validation metrics,
seconds per epoch, peak memory, epochs run and the run directory; per backbone x arm the mean and
std over seeds; the paper's reported numbers for the dataset (PAPER.md §4); the machine, git commit
and timestamp. Runs whose summary.json already exists under <out>/<name>/ are not repeated
(resumable; a different --name starts afresh).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, write_result  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "amazon_beauty" / "Beauty.txt"
PREPARED = Path.home() / ".cache" / "prismrec" / "datasets"
METRICS = ("HR@10", "NDCG@10", "HR@20", "NDCG@20")

#: PAPER.md §4, (R@10, N@10) vanilla -> +PRISM
PAPER = {
    "amazon_beauty": {"sasrec": ((.0534, .0247), (.0681, .0343)), "stosa": ((.0648, .0339), (.0762, .0481)),
                      "indirec": ((.0941, .0573), (.1012, .0618))},
    "amazon_sports": {"sasrec": ((.0336, .0175), (.0406, .0227)), "stosa": ((.0389, .0220), (.0433, .0258)),
                      "indirec": ((.0522, .0309), (.0557, .0337))},
    "yelp": {"sasrec": ((.0233, .0123), (.0271, .0141)), "stosa": ((.0238, .0128), (.0285, .0161)),
             "indirec": ((.0372, .0262), (.0422, .0305))},
}


def dataset_name(path: str) -> str:
    low = path.lower()
    for key, name in (("beauty", "amazon_beauty"), ("sports", "amazon_sports"), ("yelp", "yelp")):
        if key in low:
            return name
    return Path(path).stem


def modalities(path: str) -> list[str]:
    from prismrec.api import dataset_from_config
    from prismrec.config import build_config

    try:
        return sorted(dataset_from_config(build_config(overrides=[f"data.path={path}"])).features)
    except Exception as exc:  # noqa: BLE001  a bad path is reported as a skipped arm
        print(f"cannot load {path}: {exc}", file=sys.stderr)
        return []


def run(job: dict, device: str, threads: int) -> dict:
    out = Path(job["dir"])
    cmd = [sys.executable, "-m", "prismrec", "train", "--quiet", "--json", "--output-dir", str(out), "--overwrite",
           "--device", device, "--data", job["data"]]
    if job["recipe"]:
        cmd += ["--config", job["recipe"]]
    for s in job["sets"]:
        cmd += ["--set", s]
    job["command"] = " ".join(cmd)
    if (out / "summary.json").is_file():
        return json.loads((out / "summary.json").read_text())
    env = dict(os.environ)
    if threads > 0:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"FAILED {job['id']} (exit code {proc.returncode}): {proc.stderr[-1500:]}", file=sys.stderr, flush=True)
        return {"failed": True, "returncode": proc.returncode, "stderr": proc.stderr[-2000:]}
    print(f"done {job['id']} in {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    return json.loads((out / "summary.json").read_text())


def main() -> None:
    from prismrec.models import registered_backbones

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="dataset of the vanilla arm (default: Beauty.txt)")
    ap.add_argument("--prism-data", default=None, help="prepared folder with >= 2 modalities for the PRISM arm")
    ap.add_argument("--backbones", nargs="+", default=registered_backbones(), help="backbones to train")
    ap.add_argument("--arms", nargs="+", default=["vanilla", "prism"], choices=["vanilla", "prism"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[1], help="train.seed values")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override for every run (repeatable), e.g. --set train.epochs=2")
    ap.add_argument("--recipes", default=str(REPO / "recipes"), help="folder of <backbone>_beauty.yaml recipes")
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=0, help="OMP threads per run (0 = torch default)")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench_backbones"),
                    help="run directories go to <out>/<name>/<run id>")
    ap.add_argument("--name", default=None, help="result name (default: backbones_<dataset>)")
    ap.add_argument("--results-dir", default=None, help="where <name>.json goes (default: benchmarks/results)")
    args = ap.parse_args()

    args.data = str(Path(args.data).expanduser().resolve())
    ds = dataset_name(args.data)
    prism_data = args.prism_data or (str(PREPARED / ds) if (PREPARED / ds).is_dir() else args.data)
    prism_data = str(Path(prism_data).expanduser().resolve())
    name = args.name or f"backbones_{ds}"
    skipped, jobs = {}, []
    if "prism" in args.arms:
        mods = modalities(prism_data)
        if len(mods) < 2:
            skipped["prism"] = f"{prism_data} has modalities {mods}; PRISM needs >= 2 (see --prism-data)"
    for backbone in args.backbones:
        recipe = Path(args.recipes) / f"{backbone}_beauty.yaml"
        for arm in args.arms:
            if arm in skipped:
                continue
            for seed in args.seeds:
                jid = f"{ds}-{backbone}-{arm}-s{seed}"
                jobs.append({"id": jid, "backbone": backbone, "arm": arm, "seed": seed,
                             "data": prism_data if arm == "prism" else args.data,
                             "recipe": str(recipe) if recipe.is_file() else None, "dir": str(Path(args.out) / name / jid),
                             "sets": [f"model.backbone={backbone}", f"train.seed={seed}", *args.overrides]
                             + (["model.prism.enabled=true"] if arm == "prism" else [])})
    print(f"{len(jobs)} runs, {args.jobs} at a time" + (f"; skipped: {skipped}" if skipped else ""), file=sys.stderr)
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        summaries = list(pool.map(lambda j: run(j, args.device, args.threads), jobs))

    runs, table = [], {}
    for job, s in zip(jobs, summaries):
        failure = {k: s.get(k) for k in ("returncode", "stderr")} if s.get("failed") else {}
        runs.append({**job, "failed": bool(s.get("failed")), **failure,
                     **({k: s[k] for k in ("test", "valid", "seconds_per_epoch", "peak_memory_mb", "epochs_run",
                                           "best_epoch", "stopped_early", "eval_seconds", "num_parameters",
                                           "device")} if not s.get("failed") else {})})
    for backbone in args.backbones:
        for arm in args.arms:
            ok = [r for r in runs if r["backbone"] == backbone and r["arm"] == arm and not r["failed"]]
            if not ok:
                continue
            paper = PAPER.get(ds, {}).get(backbone)
            table[f"{backbone}/{arm}"] = {
                "backbone": backbone, "arm": arm, "seeds": [r["seed"] for r in ok],
                **{m: {"mean": float(np.mean([r["test"][m] for r in ok])),
                       "std": float(np.std([r["test"][m] for r in ok]))} for m in METRICS},
                "seconds_per_epoch": float(np.mean([r["seconds_per_epoch"] for r in ok])),
                "peak_memory_mb": float(np.mean([r["peak_memory_mb"] for r in ok])),
                "epochs_run": [r["epochs_run"] for r in ok],
                "paper_HR@10_NDCG@10": paper[arm == "prism"] if paper else None,
            }
    lines = ["| backbone | arm | HR@10 | NDCG@10 | paper R@10 / N@10 | s/epoch | peak MB | epochs |",
             "|---|---|---|---|---|---|---|---|"]
    for row in table.values():
        paper = row["paper_HR@10_NDCG@10"]
        lines.append(f"| {row['backbone']} | {row['arm']} | {row['HR@10']['mean']:.4f} ± {row['HR@10']['std']:.4f} | "
                     f"{row['NDCG@10']['mean']:.4f} ± {row['NDCG@10']['std']:.4f} | "
                     f"{f'{paper[0]:.4f} / {paper[1]:.4f}' if paper else '-'} | {row['seconds_per_epoch']:.2f} | "
                     f"{row['peak_memory_mb']:.0f} | {row['epochs_run']} |")
    print("\n".join(lines))
    path = write_result(name, {
        "dataset": ds, "data": args.data, "prism_data": prism_data if "prism" in args.arms else None,
        "device": args.device, "jobs": args.jobs, "threads": args.threads, "overrides": args.overrides,
        "skipped_arms": skipped, "wall_seconds": round(time.time() - t0, 1), "table": table,
        "markdown": "\n".join(lines), "runs": runs}, Path(args.results_dir) if args.results_dir else None)
    print(f"results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
