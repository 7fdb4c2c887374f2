"""Ranking metrics from the target's rank, and ranks from full score matrices.

Tie rule (pessimistic): the target's rank is the number of items whose score is greater than
*or equal to* its own, the target included. A model that gives every item the same score
therefore ranks the target last, never first. A NaN target score also ranks last.
"""
from __future__ import annotations

import math

import torch


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
    """1-based pessimistic rank of each target among all items.

    scores: (B, N + 1), column 0 is padding and is never ranked; modified in place.
    targets: (B,) item ids in 1..N. history: (B, H) item ids to exclude (0 = padding) or None.
    The target itself is never excluded, even if it occurs in the history.
    """
    target_scores = scores.gather(1, targets[:, None])  # (B, 1)
    if history is not None:
        scores.scatter_(1, history, float("-inf"))  # history items cannot be recommended
    scores[:, 0] = float("-inf")  # padding is never ranked
    scores.scatter_(1, targets[:, None], target_scores)  # restore the target
    # (B,) ties count against the target; counted as bytes into int32 (2x faster on CPU than a bool sum)
    ranks = (scores >= target_scores).view(torch.uint8).sum(dim=1, dtype=torch.int32).long()
    return torch.where(torch.isnan(target_scores[:, 0]), scores.shape[1] - 1, ranks)


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
