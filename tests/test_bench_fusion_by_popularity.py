"""benchmarks/fusion_by_popularity.py: the popularity measures by hand, and a run on a tiny PRISM model."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from prismrec.api import train
from prismrec.config import build_config
from prismrec.data import Sequences

from conftest import TINY

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from fusion_by_popularity import by_groups, history_popularity, main  # noqa: E402


def test_history_popularity_by_hand():
    seqs = Sequences.from_lists([np.array([1, 2, 3, 4]), np.array([2, 1, 2, 5, 3])], num_items=5)
    # training sequences s[:-2]: [1, 2] and [2, 1, 2] -> counts 1: 2, 2: 3, others 0
    c = np.log1p(np.array([0, 2, 3, 0, 0, 0], dtype=float))
    test = history_popularity(seqs, "test")  # histories s[:-1]: [1, 2, 3] and [2, 1, 2, 5]
    np.testing.assert_allclose(test["history_mean"], [(c[1] + c[2] + c[3]) / 3, (2 * c[2] + c[1] + c[5]) / 4])
    np.testing.assert_allclose(test["last_item"], [c[3], c[5]])
    valid = history_popularity(seqs, "valid")  # histories s[:-2]: [1, 2] and [2, 1, 2]
    np.testing.assert_allclose(valid["history_mean"], [(c[1] + c[2]) / 2, (2 * c[2] + c[1]) / 3])
    np.testing.assert_allclose(valid["last_item"], [c[2], c[2]])


def test_groups_are_equal_sized_and_ordered():
    w = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9]])
    rows = by_groups(w, ["a", "b"], np.array([4.0, 3.0, 2.0, 1.0]), 2)
    assert [r["users"] for r in rows] == [2, 2] and rows[0]["measure_max"] <= rows[1]["measure_min"]
    assert rows[0]["mean_weight"] == pytest.approx({"a": 0.15, "b": 0.85})  # the two least popular users


def test_script_on_a_tiny_prism_run(tmp_path, capsys):
    cfg = build_config(overrides=TINY + ["train.epochs=1", "model.prism.enabled=true"])
    train(cfg, tmp_path / "run", progress=False)
    main(["--run", str(tmp_path / "run"), "--groups", "4", "--name", "fbp", "--out-dir", str(tmp_path)])
    res = json.loads((tmp_path / "fbp.json").read_text())
    assert res["experts"] == ["unique_image", "unique_text", "synergy", "redundancy"]
    for m in ("history_mean", "last_item"):
        groups = res["by_measure"][m]["groups"]
        assert sum(g["users"] for g in groups) == 80 and len(groups) == 4
        for g in groups:
            assert sum(g["mean_weight"].values()) == pytest.approx(1.0, abs=1e-5)  # softmax weights
        assert all(-1 <= c <= 1 for c in res["by_measure"][m]["spearman"].values())
    assert "Spearman with each weight" in capsys.readouterr().out
