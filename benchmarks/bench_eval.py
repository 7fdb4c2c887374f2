"""Where full-ranking evaluation time goes, and how it depends on ``eval.batch_size``.

    python benchmarks/bench_eval.py --data ../shared/data/amazon_beauty/Beauty.txt --threads 2

For each batch size in --batch-sizes: seconds to evaluate every user of the test split with
``prismrec.evaluation.evaluate`` (best and median of --repeats), and the same users split into
its three stages, timed separately: the sequence encoder, the score matmul against all items, and
the ranking step (history exclusion + pessimistic rank). The model is untrained: evaluation cost
does not depend on the weights. Writes benchmarks/results/<name>.json.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="dataset path")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 256, 512, 1024, 2048],
                    help="eval.batch_size values to time")
    ap.add_argument("--repeats", type=int, default=5, help="timed evaluations per batch size")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config overrides")
    ap.add_argument("--name", default="eval_speed_beauty_cpu", help="result file name")
    ap.add_argument("--reference", action="store_true",
                    help="also time, interleaved with the default path, scoring from the full forward pass "
                         "(forward()[:, -1], every position in every block) instead of last_hidden")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from prismrec.api import build
    from prismrec.config import build_config
    from prismrec.evaluation import evaluate
    from prismrec.evaluation.evaluator import user_batches
    from prismrec.evaluation.metrics import target_ranks

    cfg = build_config(overrides=[f"data.path={args.data}"] + args.overrides)
    run = build(cfg)
    model, split = run.model.eval(), run.data.split("test")
    results = {}
    for bs in args.batch_sizes:
        evaluate(model.full_sort_scores, split, cfg.eval.ks, batch_size=bs)  # warm-up
        totals = [evaluate(model.full_sort_scores, split, cfg.eval.ks, batch_size=bs).seconds
                  for _ in range(args.repeats)]
        stages = {"encoder": 0.0, "score_matmul": 0.0, "rank": 0.0}
        with torch.no_grad():
            for idx, seq, hist in user_batches(split, bs):  # the evaluator's own batches
                t0 = time.perf_counter()
                h = model.last_hidden(seq)  # what full_sort_scores uses
                t1 = time.perf_counter()
                scores = model.score(h)
                t2 = time.perf_counter()
                target_ranks(scores, split.targets[idx], hist)
                t3 = time.perf_counter()
                stages["encoder"] += t1 - t0
                stages["score_matmul"] += t2 - t1
                stages["rank"] += t3 - t2
        results[str(bs)] = {"best_seconds": min(totals), "median_seconds": statistics.median(totals),
                            "all_seconds": totals, "stages_seconds": stages}
        if args.reference:
            full_forward = lambda seq: model.score(model(seq)[:, -1])  # noqa: E731
            pairs = [(evaluate(full_forward, split, cfg.eval.ks, batch_size=bs).seconds,
                      evaluate(model.full_sort_scores, split, cfg.eval.ks, batch_size=bs).seconds)
                     for _ in range(args.repeats)]
            ref, new = [a for a, _ in pairs], [b for _, b in pairs]
            results[str(bs)]["interleaved"] = {"full_forward_seconds": ref, "last_hidden_seconds": new}
            print(f"  interleaved: full forward median {statistics.median(ref):.2f} s, last_hidden median "
                  f"{statistics.median(new):.2f} s", flush=True)
        print(f"batch {bs:5d}: full evaluation best {min(totals):.2f} s, median {statistics.median(totals):.2f} s; "
              + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items()), flush=True)
    path = write_result(args.name, {"data": args.data, "users": int(split.inputs.shape[0]),
                                    "items": run.dataset.num_items, "threads": args.threads,
                                    "overrides": args.overrides, "results": results})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
