"""Where the runs under a folder stand: found, read and summarised without loading a model or torch.

A run folder is one that ``prismrec train`` wrote: ``config.yaml`` beside ``metrics.jsonl``,
``summary.json`` or ``resume/``. :func:`find_runs` finds them, :func:`run_status` reads one
(its config, the epochs in ``metrics.jsonl``, and ``summary.json`` once the run has ended or was
stopped) and :func:`read_epochs` / :func:`best_epoch` are the metrics readers that
``benchmarks/suite.py`` also uses for its progress lines. ``prismrec runs`` prints the table.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

SKIP_DIRS = {"resume", "__pycache__", "node_modules", "site-packages"}
"""Folders :func:`find_runs` does not search (nor hidden ones, such as ``.git`` or ``.venv``)."""

STOP_REASONS = {"early_stopping": "done: early stop", "max_epochs": "done: epoch limit",
                "time_limit": "done: time limit"}
"""``summary.json``'s ``stop_reason`` -> the state ``prismrec runs`` shows (``interrupted`` is not done)."""


def read_epochs(run_dir: str | Path) -> list[dict]:
    """The epoch records of ``run_dir/metrics.jsonl`` in order ([] if there is none yet). A line that is
    not JSON (the last one while a training writes it) is skipped."""
    try:
        lines = (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    records = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "epoch" in rec:
            records.append(rec)
    return records


def read_summary(run_dir: str | Path) -> dict | None:
    """``run_dir/summary.json`` as a dict, or None if there is none or it cannot be read as a JSON object
    (e.g. half-written). Says nothing about whether the run ended: see its ``stop_reason``."""
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable, not UTF-8 or not JSON
        return None
    return summary if isinstance(summary, dict) else None


def best_epoch(records: list[dict], metric: str) -> dict | None:
    """The record with the highest validation ``metric`` (the first of equal ones, as early stopping
    keeps it), or None if no record was evaluated on it."""
    scored = [r for r in records if isinstance(r.get("valid"), dict) and metric in r["valid"]]
    return max(scored, key=lambda r: r["valid"][metric]) if scored else None


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and any(
        (path / name).exists() for name in ("metrics.jsonl", "summary.json", "resume"))


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Every run folder at or below each of ``paths``, sorted, each once (``resume/``, hidden and
    :data:`SKIP_DIRS` folders are not searched). A path that does not exist raises FileNotFoundError."""
    found: set[Path] = set()
    for root in map(Path, paths):
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such folder (expected a run folder or a folder of runs)")
        stack = [root]
        while stack:
            d = stack.pop()
            if is_run_dir(d):
                found.add(d)
                continue  # a run folder holds no further runs
            try:
                stack.extend(c for c in d.iterdir()
                             if c.is_dir() and c.name not in SKIP_DIRS and not c.name.startswith("."))
            except OSError:  # unreadable: nothing to list there
                pass
    return sorted(found)


@dataclass
class RunStatus:
    """One run folder as ``prismrec runs`` shows it (``None`` where the folder does not say)."""

    run: str
    dataset: str | None
    model: str | None  # backbone, + the content fusion when model.prism.enabled (e.g. "sasrec+prism")
    loss: str | None
    seed: int | None
    # "done: early stop" | "done: epoch limit" | "done: time limit" | "stopped" | "unfinished" | "no epoch yet"
    # | "summary.json unreadable"
    state: str
    epochs: int  # epochs finished (metrics.jsonl)
    last_epoch_age_s: float | None  # seconds since metrics.jsonl was last written (None: no epoch)
    metric: str
    best_epoch: int | None
    best_valid: float | None
    test: float | None  # the test value at the best epoch, once a summary holds it
    seconds_per_epoch: float | None  # mean training seconds of the finished epochs (metrics.jsonl)

    def to_dict(self) -> dict:
        return asdict(self)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("-inf")


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _section(raw: dict, name: str) -> dict:
    value = raw.get(name)
    return value if isinstance(value, dict) else {}


def run_status(run_dir: str | Path, metric: str | None = None) -> RunStatus:
    """Read one run folder: its config, epochs and summary. ``metric`` defaults to the run's own
    ``train.metric`` (NDCG@10 if unset). Never raises on a half-written or damaged file: what cannot
    be read is shown as unknown."""
    run_dir = Path(run_dir)
    cfg = _read_yaml(run_dir / "config.yaml")
    data, model, train = _section(cfg, "data"), _section(cfg, "model"), _section(cfg, "train")
    prism = _section(model, "prism")
    metric = metric or str(train.get("metric") or "NDCG@10")
    summary = read_summary(run_dir)
    records = read_epochs(run_dir)
    written = _mtime(run_dir / "metrics.jsonl")  # when the last epoch was written (-inf: none yet)
    summarised = _mtime(run_dir / "summary.json")  # -inf: no summary
    current = summarised > float("-inf") and written <= summarised  # a summary, written after the last epoch
    if summary is not None and not current:
        summary = None  # epochs written after it: the run was resumed and trains on (or was cut off again)
    damaged = summary is None and current  # there, after the epochs, but not a JSON object
    best = best_epoch(records, metric)

    backbone = model.get("backbone") or (summary or {}).get("backbone")
    if backbone and prism.get("enabled"):
        backbone = f"{backbone}+{prism.get('method') or 'prism'}"
    dataset = (summary or {}).get("dataset")
    if not dataset and data.get("path"):
        dataset = Path(str(data["path"])).name
    elif not dataset and "path" in data:  # no path: the embedded synthetic world
        dataset = "synthetic"
    seed = train.get("seed")

    if summary is not None and summary.get("stop_reason") != "interrupted":
        state = STOP_REASONS.get(summary.get("stop_reason"), "done")
    elif summary is not None:
        state = "stopped"  # Ctrl-C / SIGTERM: the best epoch so far is summarised; --resume continues it
    elif damaged:
        state = "summary.json unreadable"  # not "unfinished": the run ended and its summary was damaged since
    else:
        state = "unfinished" if records else "no epoch yet"  # running, or cut off (resumable)
    test = None
    best_no, best_valid = (best["epoch"], best["valid"][metric]) if best else (None, None)
    if summary is not None:
        valid_s, test_s = summary.get("valid"), summary.get("test")
        if isinstance(valid_s, dict) and metric in valid_s:
            best_no, best_valid = summary.get("best_epoch", best_no), valid_s[metric]
        if isinstance(test_s, dict):
            test = test_s.get(metric)
    seconds = [r["train_seconds"] for r in records if isinstance(r.get("train_seconds"), (int, float))]
    age = max(0.0, time.time() - written) if records and written > float("-inf") else None
    return RunStatus(run=str(run_dir), dataset=dataset, model=backbone, loss=train.get("loss") or
                     (summary or {}).get("loss"), seed=seed if isinstance(seed, int) else None, state=state,
                     epochs=int(records[-1]["epoch"]) if records else 0, last_epoch_age_s=age, metric=metric,
                     best_epoch=best_no, best_valid=best_valid, test=test,
                     seconds_per_epoch=sum(seconds) / len(seconds) if seconds else None)
