"""Checkpoints: weights as safetensors (no pickle), config as YAML, run summaries as JSON."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

WEIGHTS = "model.safetensors"


def save_weights(model: torch.nn.Module, run_dir: str | Path, metadata: dict[str, str] | None = None) -> Path:
    path = Path(run_dir) / WEIGHTS
    save_model(model, str(path), metadata=metadata)
    return path


def load_weights(model: torch.nn.Module, run_dir: str | Path, device: str | torch.device = "cpu") -> None:
    """Load weights into an already-built model. Plain tensors only: nothing is unpickled."""
    path = Path(run_dir) / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no {WEIGHTS} (is this a prismrec run directory?)")
    missing, unexpected = load_model(model, str(path), strict=True, device=str(device))
    if missing or unexpected:  # pragma: no cover - strict=True raises first
        raise RuntimeError(f"checkpoint mismatch: missing {missing}, unexpected {unexpected}")


def write_json(obj: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_jsonl(obj: dict, path: str | Path) -> None:
    with Path(path).open("a") as fh:
        fh.write(json.dumps(obj) + "\n")
