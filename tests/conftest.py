from __future__ import annotations

from pathlib import Path

import pytest

from prismrec.config import ExperimentConfig, build_config

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()

TINY = [
    "data.synthetic.num_users=80", "data.synthetic.num_items=96", "data.synthetic.min_len=4",
    "data.synthetic.max_len=12", "data.synthetic.feature_dim=8", "data.max_seq_len=10",
    "model.hidden_dim=16", "model.num_layers=1", "model.num_heads=2", "model.dropout=0.1",
    "train.epochs=2", "train.batch_size=32", "train.device=cpu",
]


def sets(items: list[str]) -> list[str]:
    """``--set`` flags for the CLI: ["a=1", "b=2"] -> ["--set", "a=1", "--set", "b=2"]."""
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture
def tiny_cfg() -> ExperimentConfig:
    """A synthetic world and model small enough for a full train/eval cycle in about a second."""
    return build_config(overrides=TINY)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA
