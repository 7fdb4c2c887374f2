"""Checkpoints: weights as safetensors (no pickle), config as YAML, run summaries as JSON."""
from __future__ import annotations

import functools
import json
import platform
import subprocess
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model

from ..data.prepared import atomic_write_text
from ..data.sequences import DataError

WEIGHTS = "model.safetensors"


def save_weights(model: torch.nn.Module, run_dir: str | Path, metadata: dict[str, str] | None = None) -> Path:
    path = Path(run_dir) / WEIGHTS
    save_model(model, str(path), metadata=metadata)
    return path


def load_weights(model: torch.nn.Module, run_dir: str | Path, device: str | torch.device = "cpu") -> None:
    """Load weights into an already-built model. Plain tensors only: nothing is unpickled.

    A file that is not valid safetensors, or whose tensors do not fit the model built from the
    run's ``config.yaml``, is a :class:`DataError` that says which (and the first tensor that differs)."""
    path = Path(run_dir) / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no {WEIGHTS} (is this a prismrec run directory?)")
    try:
        missing, unexpected = load_model(model, str(path), strict=True, device=str(device))
    except SafetensorError as exc:
        raise DataError(f"{path} is not a valid safetensors file ({exc}); the run's weights are damaged") from None
    except RuntimeError:  # load_state_dict lists every mismatch; name the first one instead
        raise DataError(f"{Path(run_dir) / 'config.yaml'} does not match {WEIGHTS}: "
                        f"{weights_mismatch(model, path)}") from None
    if missing or unexpected:  # pragma: no cover - strict=True raises first
        raise RuntimeError(f"checkpoint mismatch: missing {missing}, unexpected {unexpected}")


def weights_mismatch(model: torch.nn.Module, path: Path) -> str:
    """How the tensors in ``path`` differ from ``model``'s: the first differing tensor and a count."""
    with safe_open(str(path), framework="pt") as f:
        saved = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    state = model.state_dict()
    expected = {k: tuple(v.shape) for k, v in state.items()}
    shapes = [f"{k} has shape {list(saved[k])} in the file but {list(v)} in the model built from the config"
              for k, v in expected.items() if k in saved and saved[k] != v]
    unexpected = [f"{k} is in the file but not in the model" for k in saved if k not in expected]
    stored = {state[k].untyped_storage().data_ptr() for k in saved if k in state}  # save_model keeps one
    missing = [f"{k} is in the model but not in the file" for k in expected  # name of shared tensors
               if k not in saved and state[k].untyped_storage().data_ptr() not in stored]
    problems = shapes + unexpected + missing
    if not problems:
        return "the tensors do not load into the model"
    more = f" ({len(problems) - 1} more difference(s))" if len(problems) > 1 else ""
    return (f"e.g. {problems[0]}{more}; was the config, the dataset's feature matrices or the prismrec version "
            f"changed after training?")


PACKAGE_DIR = Path(__file__).resolve().parents[1]


def hardware(device: torch.device | str = "cpu") -> dict[str, str]:
    """What a run ran on, for its ``summary.json``: ``cpu`` (the processor's model name) and, on a CUDA
    device, ``gpu`` (the device's name)."""
    out = {"cpu": platform.processor() or platform.machine()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                out["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:  # not Linux
        pass
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


@functools.lru_cache(maxsize=None)
def source_revision(package_dir: str | Path = PACKAGE_DIR) -> str | None:
    """The git commit the library's source was run from, for a run's ``summary.json``: HEAD's short
    hash, with ``+dirty`` when files under ``package_dir`` differ from it (the run then used
    uncommitted code). ``None`` where the package is not in a git checkout (an installed wheel) or
    git is not available; ``prismrec_version`` then identifies the code."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(package_dir), *args], capture_output=True, text=True,
                                 timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return None
    dirty = git("status", "--porcelain", "--", ".")
    return f"{head}+dirty" if dirty else head


def write_json(obj: dict, path: str | Path) -> None:
    """Atomically (``prismrec runs`` and the suite read summaries while trainings write them)."""
    atomic_write_text(Path(path), json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_jsonl(obj: dict, path: str | Path) -> None:
    with Path(path).open("a") as fh:
        fh.write(json.dumps(obj) + "\n")
