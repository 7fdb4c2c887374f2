"""Resumable training: what the trainer saves after every epoch and how it is restored.

``<run>/resume/`` holds

* ``model.safetensors``: the weights after the last finished epoch (not the best ones);
* ``best.safetensors``: the best weights so far (absent before the first improvement);
* ``optimizer.pt``: the optimizer's state dict, read back with ``torch.load(weights_only=True)``
  (tensors, numbers and lists only: nothing is unpickled into objects);
* ``rng.safetensors``: the global CPU (and CUDA) generator states and the trainer's shuffling
  generator, so batches, negatives, dropout and masking continue the same random streams;
* ``state.json``: epoch, early-stopping counters, best metrics, per-epoch times and the metrics history.

Everything is written to ``resume.tmp/`` and then swapped in, so a run killed while saving keeps
the previous epoch's complete state. Resuming from it gives the same weights and metrics as an
uninterrupted run on CPU (tested); CUDA kernels are not bitwise deterministic.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..config import ConfigError
from ..data.sequences import DataError
from .checkpoint import weights_mismatch

RESUME_DIR = "resume"
STATE_VERSION = 1


@dataclass
class TrainingState:
    """The trainer's loop state between epochs."""

    epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = 0
    best_valid: dict[str, float] = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] | None = None
    bad_evals: int = 0
    epoch_times: list[float] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    previous_seconds: float = 0.0
    """Training wall time of earlier invocations (up to their last saved epoch)."""
    elapsed_seconds: float = 0.0
    """Training wall time up to the last finished epoch, all invocations."""


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU tensors for ``save_file``. Entries that share memory (modules shared between two paths of
    a model, e.g. PRISM's experts in STOSA's mean and covariance streams) are copied apart: safetensors
    refuses shared tensors, and ``load_state_dict`` writes the same values into the shared module twice."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in state.items():
        t = v.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen:
            t = t.clone()
        seen.add(ptr)
        out[k] = t
    return out


def save_training_state(directory: Path, st: TrainingState, model: torch.nn.Module,
                        optimizer: torch.optim.Optimizer, generators: dict[str, torch.Generator],
                        device: torch.device, tags: dict[str, str]) -> None:
    """Write the state after a finished epoch; ``tags`` (what the run was trained on, e.g. the
    dataset's item-map fingerprint) are checked by :func:`load_training_state`."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_tensors(model.state_dict()), str(tmp / "model.safetensors"))
    if st.best_state is not None:
        _save_best(directory / "best.safetensors", tmp / "best.safetensors", st)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    rng = {"cpu": torch.get_rng_state(), **{f"gen_{k}": g.get_state() for k, g in generators.items()}}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    save_file(rng, str(tmp / "rng.safetensors"))
    meta = {"version": STATE_VERSION, "epoch": st.epoch, "best_score": st.best_score, "best_epoch": st.best_epoch,
            "best_valid": st.best_valid, "bad_evals": st.bad_evals, "epoch_times": st.epoch_times,
            "elapsed_seconds": st.elapsed_seconds, "tags": tags, "history": st.history}
    (tmp / "state.json").write_text(json.dumps(meta))
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def _saved_best_epoch(path: Path) -> int | None:
    """The epoch recorded in a saved ``best.safetensors`` (None if absent or unreadable)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return int((f.metadata() or {})["epoch"])
    except (OSError, KeyError, ValueError, TypeError):
        return None


def _save_best(previous: Path, target: Path, st: TrainingState) -> None:
    """Write the best weights to ``target``, or hard-link the previous epoch's file when the best
    epoch has not changed since (most epochs late in a run), so unchanged weights are not rewritten."""
    if _saved_best_epoch(previous) == st.best_epoch:
        try:
            os.link(previous, target)
            return
        except OSError:  # a file system without hard links: write it again
            pass
    save_file(_tensors(st.best_state), str(target), metadata={"epoch": str(st.best_epoch)})


#: the keys of ``state.json`` that :func:`load_training_state` reads
STATE_KEYS = ("epoch", "best_score", "best_epoch", "best_valid", "bad_evals", "epoch_times", "history",
              "elapsed_seconds")


def damaged(path: Path, why: str) -> DataError:
    """The error for an unreadable resume file: which file, why, and what to do instead."""
    run = path.parent.parent
    return DataError(f"{path}: the resume state is damaged ({why}); the run cannot be resumed: start a fresh run "
                     f"(e.g. `prismrec train --config {run / 'config.yaml'} --output-dir {run} --overwrite`)")


def _reason(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _load_tensors(path: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device=str(device))
    except FileNotFoundError:
        raise damaged(path, "the file is missing") from None
    except (SafetensorError, OSError) as exc:
        raise damaged(path, f"not a valid safetensors file: {_reason(exc)}") from None


def _read_state_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except (ValueError, OSError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise damaged(path, f"not valid JSON: {_reason(exc)}") from None
    if not isinstance(meta, dict):
        raise damaged(path, "expected a JSON object")
    if meta.get("version", STATE_VERSION) != STATE_VERSION:
        return meta  # another format: the caller says so
    absent = [k for k in ("version", *STATE_KEYS) if k not in meta]
    if absent:
        raise damaged(path, f"no {', '.join(absent)}")
    return meta


def load_training_state(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        generators: dict[str, torch.Generator], device: torch.device,
                        tags: dict[str, str] | None = None) -> TrainingState:
    """Restore model, optimizer and generators in place from ``directory``; return the loop state.
    ``tags``, when given, must equal those saved (a tag the state predates is not checked). A file that
    cannot be read (truncated, garbled, missing) is a :class:`DataError` naming it."""
    directory = Path(directory)
    if not (directory / "state.json").is_file():
        raise FileNotFoundError(f"{directory}: no saved training state (was the run trained with "
                                f"train.resume_state=true, and did it finish at least one epoch?)")
    meta = _read_state_json(directory / "state.json")
    if meta.get("version") != STATE_VERSION:
        raise ConfigError(f"{directory}: training state version {meta.get('version')}, expected {STATE_VERSION}")
    saved_tags = meta.get("tags", {}) if isinstance(meta.get("tags"), dict) else {}
    # a tag the saved state predates (sequences_fingerprint, since 2026-12-06) is not checked
    if tags is not None and any(saved_tags.get(k, v) != v for k, v in tags.items()):
        raise DataError(f"{directory}: the run was trained with {saved_tags}, not {tags} "
                        f"(a different dataset?)")
    weights = _load_tensors(directory / "model.safetensors", device)
    try:
        model.load_state_dict(weights)
    except RuntimeError:  # readable, but not this model's: the config or the data changed, not the file
        path = directory / "model.safetensors"
        raise DataError(f"{path} does not fit the model built from the run's config.yaml and dataset: "
                        f"{weights_mismatch(model, path)}") from None
    path = directory / "optimizer.pt"
    try:
        optimizer.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    except FileNotFoundError:
        raise damaged(path, "the file is missing") from None
    except Exception as exc:  # noqa: BLE001  a garbled file fails in torch.load or load_state_dict in many ways
        raise damaged(path, _reason(exc)) from None
    rng = _load_tensors(directory / "rng.safetensors")
    try:
        torch.set_rng_state(rng["cpu"])
        for k, g in generators.items():
            if f"gen_{k}" in rng:
                g.set_state(rng[f"gen_{k}"])
        if device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], device)
    except (KeyError, RuntimeError, TypeError) as exc:
        raise damaged(directory / "rng.safetensors", _reason(exc)) from None
    best = directory / "best.safetensors"
    try:
        return TrainingState(epoch=int(meta["epoch"]), best_score=float(meta["best_score"]),
                             best_epoch=int(meta["best_epoch"]), best_valid=dict(meta["best_valid"]),
                             best_state=_load_tensors(best, device) if best.is_file() else None,
                             bad_evals=int(meta["bad_evals"]), epoch_times=list(meta["epoch_times"]),
                             history=list(meta["history"]), previous_seconds=float(meta["elapsed_seconds"]),
                             elapsed_seconds=float(meta["elapsed_seconds"]))
    except (TypeError, ValueError) as exc:
        raise damaged(directory / "state.json", f"a value has the wrong type: {_reason(exc)}") from None
