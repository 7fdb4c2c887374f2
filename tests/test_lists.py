"""Top-K recommendation lists (evaluate(top_k=...)) and what is read from them (evaluation.lists)."""
import json
import math

import numpy as np
import pytest
import torch

from prismrec.cli import main
from prismrec.data.split import SplitTensors
from prismrec.evaluation import evaluate
from prismrec.evaluation.evaluator import top_items
from prismrec.evaluation.lists import gini, list_stats

from conftest import TINY, sets


def test_top_items_skips_padding_history_and_nan_and_leaves_scores_alone():
    scores = torch.tensor([[9.0, 0.1, 0.8, float("nan"), 0.9, 0.2, 0.7]])
    before = scores.clone()
    hist = torch.tensor([[4, 0, 0]])  # item 4 (the best real item) was seen
    assert top_items(scores, 3, hist).tolist() == [[2, 6, 5]]
    assert top_items(scores, 3).tolist() == [[4, 2, 6]]
    assert torch.equal(scores.isnan(), before.isnan()) and torch.equal(scores.nan_to_num(), before.nan_to_num())
    # fewer recommendable items than k: the list ends in zeros (never padding, history or a NaN item)
    assert top_items(scores, 6, torch.tensor([[4, 2, 6]])).tolist() == [[5, 1, 0, 0, 0, 0]]
    # keep: an id listed although it is in the history (the evaluator keeps each user's target)
    assert top_items(scores, 3, hist, keep=torch.tensor([4])).tolist() == [[4, 2, 6]]
    with pytest.raises(ValueError, match="1..6"):
        top_items(scores, 7)


def test_evaluate_lists_agree_with_the_ranks():
    torch.manual_seed(0)
    n_users, n_items, L, k = 41, 30, 6, 10
    table = torch.randn(n_items + 1, 4)
    inputs = torch.randint(1, n_items + 1, (n_users, L))
    inputs[:10, :3] = 0
    history = torch.stack([torch.cat([r[r != 0], r[r == 0]]) for r in inputs])
    targets = torch.randint(1, n_items + 1, (n_users,))
    split = SplitTensors(inputs=inputs, targets=targets, history=history)

    def score_fn(seq):
        return table[seq[:, -1]] @ table.T

    res = evaluate(score_fn, split, (k,), batch_size=7, top_k=k)  # users come back in their own order
    assert evaluate(score_fn, split, (k,)).top_items is None
    assert res.top_items.shape == (n_users, k)
    for u in range(n_users):
        listed = res.top_items[u].tolist()
        seen = set(inputs[u].tolist()) - {0, int(targets[u])}  # the target is ranked even if seen
        assert not seen & set(listed) and 0 not in listed
        rank = int(res.ranks[u])
        if rank <= k:  # continuous random scores: no ties, so the target sits exactly at its rank
            assert listed[rank - 1] == int(targets[u])
        else:
            assert int(targets[u]) not in listed
    hits = (res.top_items == targets[:, None]).any(dim=1).double().mean().item()
    assert hits == res.metrics[f"HR@{k}"]


def test_gini_bounds():
    assert gini(np.array([3, 3, 3, 3])) == 0.0
    assert gini(np.array([0, 0, 0, 5])) == pytest.approx(3 / 4)
    assert gini(np.array([1, 3])) == pytest.approx(0.25)  # mean absolute difference over all pairs (1) / (2 * mean 2)
    assert gini(np.zeros(3)) == 0.0


def test_list_stats_by_hand():
    # 6 items with training counts; groups [0, 5), [5, 10), [10, ...)
    counts = np.array([0, 0, 3, 7, 12, 40, 1])
    top = np.array([[5, 4], [5, 3], [4, 0]])  # the last user has one recommendable item only
    targets = np.array([4, 2, 6])
    s = list_stats(top, targets, counts, edges=(0, 5, 10))
    assert s.k == 2 and s.users == 3
    assert s.coverage == pytest.approx(3 / 6)  # items 3, 4, 5 listed
    # listing frequencies over items 1..6: [0, 0, 1, 2, 2, 0]
    assert s.gini == pytest.approx(gini(np.array([0, 0, 1, 2, 2, 0])))
    assert s.mean_log2_count_listed == pytest.approx(np.mean(np.log2(1 + np.array([40, 12, 40, 7, 12]))))
    assert s.mean_log2_count_targets == pytest.approx(np.mean(np.log2(1 + np.array([12, 3, 1]))))
    g = {x["group"]: x for x in s.groups}
    assert list(g) == ["0-4", "5-9", "10+"]
    assert g["0-4"]["listed"] == 0 and g["5-9"]["listed"] == pytest.approx(1 / 5)
    assert g["10+"]["listed"] == pytest.approx(4 / 5)
    assert g["0-4"]["targets"] == pytest.approx(2 / 3) and g["10+"]["targets"] == pytest.approx(1 / 3)
    # one hit (user 0, target 4, count 12)
    assert g["10+"]["hits"] == 1.0 and g["0-4"]["hits"] == 0.0
    assert g["10+"]["hit_rate"] == 1.0 and g["0-4"]["hit_rate"] == 0.0 and g["5-9"]["hit_rate"] is None
    assert math.isclose(sum(x["listed"] for x in s.groups), 1.0)
    with pytest.raises(ValueError, match="one row per target"):
        list_stats(top, targets[:2], counts)


def test_cli_evaluate_lists(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--quiet", "--json", "--output-dir", str(run), *sets(TINY)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--run", str(run), "--lists", "5", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["NDCG@10"] == summary["test"]["NDCG@10"]  # the lists change nothing in the metrics
    lists = ev["lists"]
    assert lists["k"] == 5 and lists["users"] == 80 and 0 < lists["coverage"] <= 1
    assert sum(g["targets"] for g in lists["groups"]) == pytest.approx(1.0)
    hit_rate = sum(g["hit_rate"] * g["targets"] for g in lists["groups"] if g["hit_rate"] is not None)
    assert hit_rate == pytest.approx(ev["HR@5"])  # per-group hit rates add up to HR@5
    assert main(["evaluate", "--run", str(run), "--lists", "5"]) == 0
    out = capsys.readouterr().out
    assert "catalogue coverage" in out and "train count" in out
    assert main(["evaluate", "--run", str(run), "--lists", "97"]) != 0
    assert "top_k (--lists) must be an integer in 1..96" in capsys.readouterr().err
