import math

import torch

from prismrec.evaluation import evaluate, metrics_from_ranks, target_ranks
from prismrec.data.split import SplitTensors


def test_rank_by_hand_and_pessimistic_ties():
    # items 0..5, column 0 is padding
    scores = torch.tensor([[9.0, 0.1, 0.5, 0.5, 0.9, 0.2]])
    # target 2 ties with item 3; item 4 is higher -> pessimistic rank = 3 (4, 3, then 2)
    assert target_ranks(scores.clone(), torch.tensor([2])).tolist() == [3]
    # padding column (score 9) is never ranked
    assert target_ranks(scores.clone(), torch.tensor([4])).tolist() == [1]


def test_all_equal_scores_rank_last():
    scores = torch.zeros(1, 11)
    assert target_ranks(scores, torch.tensor([5])).tolist() == [10]


def test_history_excluded_but_target_never():
    scores = torch.tensor([[0.0, 0.9, 0.8, 0.7, 0.1]])
    history = torch.tensor([[1, 3, 0]])  # item 3 is the target *and* in the history
    ranks = target_ranks(scores.clone(), torch.tensor([3]), history)
    assert ranks.tolist() == [2]  # item 1 excluded, item 2 above, target kept
    # without exclusion item 1 and 2 are above
    assert target_ranks(scores.clone(), torch.tensor([3])).tolist() == [3]


def test_nan_target_ranks_last():
    scores = torch.tensor([[0.0, float("nan"), 0.5, 0.2]])
    assert target_ranks(scores, torch.tensor([1])).tolist() == [3]


def test_metrics_by_hand():
    ranks = torch.tensor([1, 2, 5, 11])
    m = metrics_from_ranks(ranks, (1, 5, 10))
    assert m["HR@1"] == 0.25
    assert m["HR@5"] == 0.75
    assert math.isclose(m["NDCG@5"], (1 + 1 / math.log2(3) + 1 / math.log2(6)) / 4)
    assert math.isclose(m["MRR@10"], (1 + 0.5 + 0.2) / 4)
    assert m["HR@10"] == 0.75


def test_evaluate_batches_and_order_do_not_matter():
    torch.manual_seed(0)
    n_users, n_items, L = 37, 20, 6
    table = torch.randn(n_items + 1, 4)
    inputs = torch.randint(1, n_items + 1, (n_users, L))
    inputs[:10, :3] = 0  # some users have shorter (left-padded) histories
    history = torch.stack([torch.cat([r[r != 0], r[r == 0]]) for r in inputs])  # right-padded, as built by the split
    split = SplitTensors(inputs=inputs, targets=torch.randint(1, n_items + 1, (n_users,)), history=history)

    def score_fn(seq):  # depends only on the last item: invariant to left padding
        return table[seq[:, -1]] @ table.T

    a = evaluate(score_fn, split, (5, 10), batch_size=7)
    b = evaluate(score_fn, split, (5, 10), batch_size=1000)
    assert torch.equal(a.ranks, b.ranks)
    # reference: per-user rank computed naively
    for u in range(n_users):
        s = (table[inputs[u, -1]] @ table.T).clone()
        s[0] = -math.inf
        t = int(split.targets[u])
        ts = s[t].item()
        for h in inputs[u].tolist():
            if h != 0 and h != t:
                s[h] = -math.inf
        assert a.ranks[u].item() == int((s >= ts).sum())


def test_scores_are_not_modified():
    scores = torch.tensor([[9.0, 0.1, 0.5, 0.5, 0.9, 0.2]])
    before = scores.clone()
    target_ranks(scores, torch.tensor([2]), torch.tensor([[4, 0]]))
    assert torch.equal(scores, before)


def test_nan_competitors_count_against_the_target():
    nan = float("nan")
    scores = torch.tensor([[0.0, nan, nan, 1.0, nan, nan]])
    assert target_ranks(scores, torch.tensor([3])).tolist() == [5]
    # ... unless they are excluded history items
    assert target_ranks(scores, torch.tensor([3]), torch.tensor([[1, 2, 0]])).tolist() == [3]


def test_minus_inf_target_ranks_behind_the_rankable_items_only():
    inf = float("inf")
    scores = torch.tensor([[0.0, 1.0, 2.0, -inf, 4.0, 5.0]])
    # items 4 and 5 are history: the target ties with nothing excluded and is behind items 1, 2
    assert target_ranks(scores, torch.tensor([3]), torch.tensor([[4, 5]])).tolist() == [3]
    assert target_ranks(scores, torch.tensor([3])).tolist() == [5]


def test_repeated_history_items_are_removed_once():
    scores = torch.tensor([[0.0, 0.9, 0.8, 0.7, 0.1]])
    history = torch.tensor([[1, 1, 2, 1, 0, 0]])
    assert target_ranks(scores, torch.tensor([3]), history).tolist() == [1]


def test_evaluate_leaves_a_cached_score_tensor_alone():
    inputs = torch.tensor([[1, 2, 3], [2, 3, 4]])
    split = SplitTensors(inputs=inputs, targets=torch.tensor([4, 5]), history=inputs.clone())
    pop = torch.tensor([0.0, 6, 5, 4, 3, 2, 1])
    cache = pop.repeat(2, 1)
    first = evaluate(lambda s: cache, split, (5,)).ranks
    assert torch.equal(cache, pop.repeat(2, 1))
    assert torch.equal(evaluate(lambda s: cache, split, (5,)).ranks, first)
    assert torch.equal(evaluate(lambda s: pop.expand(len(s), -1), split, (5,)).ranks, first)  # a view works too
    assert first.tolist() == [1, 2]  # user 2: item 1 is above target 5 and not in its history
