"""Run a grid of trainings (datasets x losses x arms x seeds) in parallel and aggregate them.

    python benchmarks/suite.py --plan benchmarks/plans/sasrec_real.yaml --jobs 2 --out runs/suite_sasrec

Each run is a `prismrec train` subprocess writing its own run directory. Re-running a plan is
safe: a run whose summary.json exists is not repeated, and a run that was cut off (killed, machine
gone, or stopped by SIGTERM / Ctrl-C, whose summary.json says "stop_reason": "interrupted") and left its
per-epoch resume state continues from its last finished epoch with
`prismrec train --resume DIR` (the plan's values of the keys a resume may change, such as
train.time_limit_minutes or train.patience, are passed on). The aggregate JSON (mean ± std over seeds per dataset/loss/
arm, relative improvement over the baseline arm, paired tests over users on NDCG@10 between arms, on the
seeds both arms have when they share any: an arm run with seed 1 only is tested against the other arm's seed 1)
goes to benchmarks/results/<plan name>.json (or --results-dir) and a Markdown table is printed. It covers
every run of the plan that has finished in --out, also those that --only did not select (they are not
started), so that a plan run one arm or seed at a time, or by several --only commands at once, always
leaves the whole plan's table. While trainings run, a line per training on stderr every --progress-every
seconds says its last finished epoch and its best validation score so far (the trainings themselves run quiet).

Ctrl-C, SIGTERM or SIGHUP to the suite stops it cleanly: each running training gets one SIGTERM and, as
`prismrec train` does when stopped, saves a summary of its best epoch so far and keeps its resume state; no
further run starts; the aggregate of the runs that had finished is written; the suite exits with 128 + the
signal's number. The same command continues the stopped runs. (The trainings run in their own sessions, so
a terminal's Ctrl-C reaches them only through the suite, once.)
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_result  # noqa: E402

from prismrec.api import finished_summary  # noqa: E402
from prismrec.config import RESUMABLE_CHANGES  # noqa: E402
from prismrec.evaluation.compare import compare_runs  # noqa: E402
from prismrec.runlist import best_epoch, read_epochs  # noqa: E402


def load_plan(path: str) -> dict:
    plan = yaml.safe_load(Path(path).read_text())
    for key in ("name", "datasets", "arms"):
        if key not in plan:
            raise SystemExit(f"{path}: plan needs '{key}'")
    plan.setdefault("losses", ["ce"])
    plan.setdefault("seeds", [42])
    plan.setdefault("base", [])
    plan.setdefault("dataset_overrides", {})
    return plan


def plan_jobs(plan: dict, out: str, only: str | None = None) -> list[dict]:
    """Every run of ``plan`` (ids containing ``only``, if given): id, dataset, loss, arm, seed, data
    path, run directory under ``out`` and the full ``--set`` list; every arm's first seed first."""
    jobs = []
    for (ds, path), loss, (arm, sets), seed in itertools.product(plan["datasets"].items(), plan["losses"],
                                                                 plan["arms"].items(), plan["seeds"]):
        jid = f"{ds}-{loss}-{arm}-s{seed}"
        if only and only not in jid:
            continue
        limits = (plan.get("arm_limits") or {}).get(arm, {})  # e.g. {seeds: [1], datasets: [amazon_beauty]}
        if any(value not in limits.get(key, [value]) for key, value in
               (("seeds", seed), ("datasets", ds), ("losses", loss))):
            continue
        data = os.path.expanduser(os.path.expandvars(path)) if path else None
        jobs.append({"id": jid, "dataset": ds, "loss": loss, "arm": arm, "seed": seed, "data": data,
                     "dir": str(Path(out) / jid),
                     "sets": plan["base"] + plan["dataset_overrides"].get(ds, []) + list(sets or [])
                     + [f"train.loss={loss}", f"train.seed={seed}"]})
    jobs.sort(key=lambda j: plan["seeds"].index(j["seed"]))  # stable: every arm's first seed runs first
    return jobs


INTERRUPTED = "interrupted before it finished (re-run the plan to continue it)"


def _say(message: str) -> None:
    try:
        print(message, file=sys.stderr, flush=True)
    except OSError:  # the terminal is gone (SIGHUP)
        pass


class Trainings:
    """The suite's running trainings: started here, reported on while they run, and stopped together on
    the suite's first Ctrl-C / SIGTERM / SIGHUP.

    A stop sends each running training one SIGTERM (it then saves its best epoch so far and its resume
    state) and refuses to start more; :attr:`signal` records the signal. Without it, a SIGTERM to the suite
    left its trainings running unseen, and Ctrl-C ended the suite with a traceback and no aggregate."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._running: dict[subprocess.Popen, dict] = {}  # process -> its job
        self._lock = threading.Lock()

    def install(self) -> None:
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), self._handle)

    def _handle(self, signum: int, frame) -> None:
        with self._lock:
            first, procs = self.signal is None, list(self._running)
            self.signal = self.signal or signum
        if first:
            _say(f"{signal.Signals(signum).name}: stopping {len(procs)} running training(s); each saves its best "
                 f"epoch so far and its resume state; no new run starts")
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
        else:
            _say(f"already stopping; waiting for {len(procs)} training(s) to save their state")

    def start(self, job: dict, cmd: list[str], env: dict) -> subprocess.Popen | None:
        """The started training of ``job``, or None once the suite is stopping."""
        with self._lock:
            if self.signal is not None:
                return None
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                    start_new_session=True)  # signals reach it only through the suite
            self._running[proc] = job
        return proc

    def finished(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._running.pop(proc, None)

    def running_jobs(self) -> list[dict]:
        with self._lock:
            return list(self._running.values())

    def report_every(self, seconds: float, done: threading.Event) -> None:
        """Until ``done`` is set, print :func:`progress_line` of every running training each ``seconds``."""
        while not done.wait(seconds):
            for job in self.running_jobs():
                _say(f"[{time.strftime('%H:%M')}] {progress_line(job)}")


TRAININGS = Trainings()


def progress_line(job: dict) -> str:
    """Where a running training is, from its metrics.jsonl: last finished epoch, the seconds it trained, and
    the best validation score so far (the plan's ``train.metric``, default NDCG@10) with its epoch."""
    metric = next((s.split("=", 1)[1] for s in job["sets"] if s.startswith("train.metric=")), "NDCG@10")
    records = read_epochs(job["dir"])  # a half-written last line is skipped
    if not records:
        return f"{job['id']}: no epoch finished yet"
    last = records[-1]
    text = f"{job['id']}: epoch {last['epoch']} done in {last.get('train_seconds', float('nan')):.0f} s"
    best = best_epoch(records, metric)
    if best is not None:
        text += (f", best valid {metric} {best['valid'][metric]:.4f} at epoch {best['epoch']} "
                 f"({last['epoch'] - best['epoch']} epoch(s) since)")
    return text


def run_one(job: dict, device: str, threads: int, deadline: float | None = None,
            hard_deadline: float | None = None, start_new: bool = True, why_not: str = "not run") -> dict:
    """Train (or continue) one run and return its summary; with ``start_new=False`` only read the
    summary of a finished run (an unfinished one is returned as skipped, ``why_not`` saying why)."""
    out = Path(job["dir"])
    summary = finished_summary(out)
    if summary is not None:
        return summary
    interrupted = (out / "summary.json").is_file()  # stopped by SIGTERM / Ctrl-C (its best epoch so far)
    if not start_new:
        return {"failed": True, "skipped": INTERRUPTED if interrupted else why_not}
    if deadline is not None and time.time() > deadline:
        return {"failed": True, "skipped": "time budget exhausted before this run started"}
    cmd = [sys.executable, "-m", "prismrec", "train", "--quiet", "--json", "--device", device]
    cmd += ["--data", job["data"]] if job["data"] else []
    if (out / "resume").is_dir() and (out / "config.yaml").is_file():  # cut off earlier: continue it
        _say(f"resuming {job['id']} from its last finished epoch")
        cmd += ["--resume", str(out)]
        sets = [s for s in job["sets"] if s.split("=", 1)[0] in RESUMABLE_CHANGES]
    else:  # a new run, or one cut off before it saved any state: (re)start it in its folder
        cmd += ["--output-dir", str(out), "--overwrite"]
        sets = job["sets"]
    for s in sets:
        cmd += ["--set", s]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t0 = time.time()
    proc = TRAININGS.start(job, cmd, env)
    if proc is None:
        return {"failed": True, "skipped": "not started: the suite was stopped"}
    try:
        _, stderr = proc.communicate(timeout=max(5.0, hard_deadline - time.time()) if hard_deadline else None)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        _say(f"KILLED {job['id']} at the hard time budget")
        return {"failed": True, "killed": "hard time budget; metrics.jsonl holds the epochs it finished"}
    finally:
        TRAININGS.finished(proc)
    if proc.returncode != 0:
        _say(f"FAILED {job['id']}: {stderr[-2000:]}")
        return {"failed": True, "stderr": stderr[-2000:]}
    summary = finished_summary(out)
    if summary is None:  # stopped by SIGTERM / Ctrl-C: not a finished run
        _say(f"INTERRUPTED {job['id']}; re-run the plan to continue it")
        return {"failed": True, "skipped": INTERRUPTED}
    _say(f"done {job['id']} in {time.time() - t0:.0f}s")
    return summary


def runs_lost(previous: Path, table: dict) -> list[str]:
    """The finished runs (``dataset/loss/arm seed N``) that the aggregate already at ``previous`` counts and
    ``table`` does not ([] if there is no readable file there)."""
    try:
        old = json.loads(previous.read_text()).get("table", {})
    except (OSError, ValueError, AttributeError):
        return []
    have = {(key, seed) for key, row in table.items() for seed in row["seeds"]}
    return [f"{key} seed {seed}" for key, row in old.items() for seed in row.get("seeds", [])
            if (key, seed) not in have]


def same_seeds(a: list[dict] | None, b: list[dict] | None) -> tuple[list[dict], list[dict]]:
    """Two arms' finished runs, each cut to the seeds both have; when they share none, all of each (two
    seed groups of independent models, still paired over the same users)."""
    a, b = a or [], b or []
    common = {j["seed"] for j in a} & {j["seed"] for j in b}
    if not common:
        return a, b
    return [j for j in a if j["seed"] in common], [j for j in b if j["seed"] in common]


def _trained_on(summary: dict) -> str:
    """"device: GPU or CPU model" of a finished run, from its summary.json ("not recorded" before the
    summary held its hardware)."""
    hw = summary.get("hardware") or {}
    return f"{summary.get('device', '?')}: {hw.get('gpu') or hw.get('cpu') or 'not recorded'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan", required=True, help="YAML plan: name, datasets, losses, seeds, base, arms, baseline")
    ap.add_argument("--out", required=True, help="folder for the run directories")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device for every run")
    ap.add_argument("--results-dir", default=None, help="where the aggregate JSON goes (default benchmarks/results)")
    ap.add_argument("--replace-aggregate", action="store_true",
                    help="write the aggregate over an existing one that counts finished runs this one lacks (by "
                         "default it then goes to <plan name>.partial.json, so that a fresh or partial --out "
                         "folder never erases the results of runs it does not hold)")
    ap.add_argument("--only", default=None,
                    help="start or continue only the runs whose id contains this text (the aggregate still "
                         "covers every finished run of the plan)")
    ap.add_argument("--aggregate-only", action="store_true",
                    help="start no run: aggregate the runs whose summary.json exists (the others are listed as skipped)")
    ap.add_argument("--time-budget", type=float, default=0.0,
                    help="seconds after which no new run starts (0 = no limit); skipped runs are listed")
    ap.add_argument("--hard-budget", type=float, default=0.0,
                    help="seconds after which running runs are killed (0 = no limit)")
    ap.add_argument("--progress-every", type=float, default=600.0,
                    help="seconds between progress lines on stderr, one per running training: its last finished "
                         "epoch and best validation score so far (default 600; 0 = none)")
    args = ap.parse_args()
    plan = load_plan(args.plan)

    jobs = plan_jobs(plan, args.out)  # the whole plan: the aggregate covers every finished run
    selected = {j["id"] for j in plan_jobs(plan, args.out, args.only)}
    print(f"{len(selected)} runs" + (f" of the plan's {len(jobs)}" if len(selected) < len(jobs) else "")
          + f", {args.jobs} at a time", file=sys.stderr, flush=True)
    t0 = time.time()
    deadline = t0 + args.time_budget if args.time_budget > 0 else None
    hard = t0 + args.hard_budget if args.hard_budget > 0 else None
    todo = [j for j in jobs if j["id"] in selected]
    TRAININGS.install()
    done = threading.Event()
    if args.progress_every > 0 and not args.aggregate_only:
        threading.Thread(target=TRAININGS.report_every, args=(args.progress_every, done), daemon=True).start()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        summaries = dict(zip([j["id"] for j in todo],
                             pool.map(lambda j: run_one(j, args.device, args.threads, deadline, hard,
                                                        start_new=not args.aggregate_only,
                                                        why_not="--aggregate-only: not run"), todo)))
    done.set()
    wall = time.time() - t0
    # the runs --only left out are only read, after the selected ones, so that runs another command
    # finished meanwhile are counted
    summaries |= {j["id"]: run_one(j, args.device, args.threads, start_new=False, why_not="not selected by --only")
                  for j in jobs if j["id"] not in selected}

    groups: dict[tuple, list] = {}
    for job in jobs:
        job["summary"] = s = summaries[job["id"]]
        if not s.get("failed"):
            groups.setdefault((job["dataset"], job["loss"], job["arm"]), []).append(job)
    table = {}
    for (ds, loss, arm), js in groups.items():
        vals = {m: [j["summary"]["test"][m] for j in js] for m in ("NDCG@10", "HR@10", "NDCG@20", "HR@20")}
        table[f"{ds}/{loss}/{arm}"] = {
            "dataset": ds, "loss": loss, "arm": arm, "seeds": [j["seed"] for j in js],
            **{m: {"mean": float(np.mean(v)), "std": float(np.std(v))} for m, v in vals.items()},
            "seconds_per_epoch": float(np.mean([j["summary"]["seconds_per_epoch"] for j in js])),
            "peak_memory_mb": float(np.mean([j["summary"]["peak_memory_mb"] for j in js])),
            "best_epoch": [j["summary"]["best_epoch"] for j in js],
        }
    baseline = plan.get("baseline")
    comparisons = []
    for cmp_arm, others in (plan.get("compare") or {}).items():
        for other in others:
            for ds, loss in itertools.product(plan["datasets"], plan["losses"]):
                a, b = same_seeds(groups.get((ds, loss, cmp_arm)), groups.get((ds, loss, other)))
                if not a or not b:
                    continue
                # per-user NDCG@10 averaged over each arm's seeds, then paired tests over users
                (t,) = compare_runs([j["dir"] for j in a], [j["dir"] for j in b], metrics=["NDCG@10"])
                comparisons.append({"dataset": ds, "loss": loss, "arm": cmp_arm, "vs": other,
                                    "seeds": [j["seed"] for j in a], "vs_seeds": [j["seed"] for j in b],
                                    "relative_ndcg10": float(t.mean_a / max(t.mean_b, 1e-12) - 1.0),
                                    "mean_diff": t.mean_diff, "t_stat": t.t_stat, "t_pvalue": t.t_pvalue,
                                    "wilcoxon_pvalue": t.wilcoxon_pvalue, "users": t.users})
    lines = ["| dataset | loss | arm | NDCG@10 | HR@10 | s/epoch | best epochs |", "|---|---|---|---|---|---|---|"]
    for row in table.values():
        rel = ""
        if baseline and row["arm"] != baseline and f"{row['dataset']}/{row['loss']}/{baseline}" in table:
            base = table[f"{row['dataset']}/{row['loss']}/{baseline}"]["NDCG@10"]["mean"]
            rel = f" ({row['NDCG@10']['mean'] / base - 1:+.1%})"
        lines.append(f"| {row['dataset']} | {row['loss']} | {row['arm']} | {row['NDCG@10']['mean']:.4f} ± "
                     f"{row['NDCG@10']['std']:.4f}{rel} | {row['HR@10']['mean']:.4f} ± {row['HR@10']['std']:.4f} | "
                     f"{row['seconds_per_epoch']:.2f} | {row['best_epoch']} |")
    for c in comparisons:
        seeds = "" if c["seeds"] == c["vs_seeds"] else f" (seeds {c['seeds']} vs {c['vs_seeds']})"
        lines.append(f"- {c['dataset']}/{c['loss']}: {c['arm']} vs {c['vs']}{seeds}: NDCG@10 {c['relative_ndcg10']:+.1%}, "
                     f"paired t p={c['t_pvalue']:.2g}, Wilcoxon p={c['wilcoxon_pvalue']:.2g} ({c['users']} users)")
    print("\n".join(lines))
    # where the runs trained (their summary.json; "machine" below is the one that aggregated them)
    trained_on = Counter(_trained_on(j["summary"]) for j in jobs if not j["summary"].get("failed"))
    results_dir = Path(args.results_dir) if args.results_dir else RESULTS
    name = plan["name"]
    lost = runs_lost(results_dir / f"{name}.json", table)
    if lost and not args.replace_aggregate:  # e.g. an --out folder that lacks runs an earlier session finished
        name = f"{name}.partial"
        _say(f"{results_dir / plan['name']}.json holds finished runs this aggregate lacks ({', '.join(lost[:4])}"
             f"{', ...' if len(lost) > 4 else ''}): not replaced; this aggregate goes to {name}.json "
             f"(--replace-aggregate replaces it)")
    path = write_result(name, {"plan": plan, "device": args.device, "jobs": args.jobs,
                                       "trained_on": trained_on,
                                       "wall_seconds": round(wall, 1), "table": table, "comparisons": comparisons,
                                       "markdown": "\n".join(lines),
                                       "runs": [{k: v for k, v in j.items() if k != "sets"} | {"sets": j["sets"]}
                                                for j in jobs]},
                        results_dir)
    print(f"results: {path}", file=sys.stderr)
    if TRAININGS.signal is not None:
        stopped = [j["id"] for j in jobs if j["id"] in selected and j["summary"].get("failed")]
        _say(f"stopped by {signal.Signals(TRAININGS.signal).name}: {len(stopped)} selected run(s) not finished "
             f"({', '.join(stopped)}); the same command continues them")
        sys.exit(128 + TRAININGS.signal)


if __name__ == "__main__":
    main()
