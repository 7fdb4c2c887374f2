"""Ranking metrics from the target's rank, and ranks from full score matrices.

Tie rule (pessimistic): the target's rank is the number of items whose score is greater than
*or equal to* its own, the target included (items scored NaN count too). A model that gives every
item the same score therefore ranks the target last, never first. A NaN target score also ranks last.
"""
from __future__ import annotations

import math

import torch


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
    """1-based pessimistic rank of each target among all items; ``scores`` is not modified.

    scores: (B, N + 1), column 0 is padding and is never ranked.
    targets: (B,) item ids in 1..N. history: (B, H) item ids to exclude (0 = padding) or None.
    The target itself is never excluded, even if it occurs in the history. An item counts against
    the target unless its score is strictly lower: ties and NaN scores count against it (a NaN
    target ranks last, N), and a target scored -inf ranks behind every item that is not excluded.
    """
    n_items = scores.shape[1] - 1
    target_scores = scores.gather(1, targets[:, None])  # (B, 1)
    below = scores < target_scores  # (B, N + 1); False for NaN scores: they count against the target
    # items not strictly below, the target included; summed as bytes into int32 (2x faster than a bool sum)
    ranks = n_items + 1 - below.view(torch.uint8).sum(dim=1, dtype=torch.int32).long()
    ranks -= (~below[:, 0]).long()  # the padding column is never ranked
    if history is not None:  # history items cannot be recommended: remove each distinct one that counted
        hist = history.sort(dim=1).values  # (B, H)
        first = torch.ones_like(hist, dtype=torch.bool)
        first[:, 1:] = hist[:, 1:] != hist[:, :-1]
        counted = ~below.gather(1, hist) & first & (hist != 0) & (hist != targets[:, None])
        ranks -= counted.sum(dim=1)
    return torch.where(torch.isnan(target_scores[:, 0]), n_items, ranks)


def metrics_from_ranks(ranks: torch.Tensor, ks: tuple[int, ...] | list[int]) -> dict[str, float]:
    """HR@K (= Recall@K with one target), NDCG@K and MRR@K averaged over users."""
    r = ranks.double()
    out: dict[str, float] = {}
    for k in ks:
        hit = r <= k
        out[f"HR@{k}"] = hit.double().mean().item()
        out[f"NDCG@{k}"] = torch.where(hit, 1.0 / torch.log2(r + 1.0), 0.0).mean().item()
        out[f"MRR@{k}"] = torch.where(hit, 1.0 / r, 0.0).mean().item()
    return out


def ndcg_single(rank: int, k: int) -> float:
    """Reference NDCG@K for one user (used in tests)."""
    return 1.0 / math.log2(rank + 1) if rank <= k else 0.0
