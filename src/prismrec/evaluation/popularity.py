"""A popularity prior at ranking time (not in the paper): ``score(u, i) + beta * log(1 + c_i)``.

``c_i`` is how often item i occurs among the interactions observed before the ranked split's targets
(:func:`prismrec.data.split.observed_item_counts`): every user's ``s[:-2]`` when ranking the
validation split, ``s[:-1]`` when ranking the test split (each user's validation item is part of the
test input); a split's own targets are never counted. ``beta`` is one scalar per trained model, chosen
on the **validation** split from a grid (:func:`choose_beta`) and then applied unchanged to the test
split, so the test targets never influence it. ``beta = 0`` is the model as trained.

Why: under BCE with sampled negatives the content-aware arms (PRISM, concat) rank the most popular
items lower than ID-only SASRec does and lose a third of the NDCG@10 of the most popular targets,
while SASRec itself is best left as it is (its validation picks ``beta = 0`` or close to it);
docs/benchmarks.md §3 has the measurements. Applying the same procedure to every arm keeps the
comparison fair: each arm gets the ``beta`` its own validation split prefers.

Scores are only shifted per item, so every backbone works unchanged (for STOSA, whose scores are
negative Wasserstein distances, the prior is added to those). The grid is evaluated from one
scoring pass per user batch (:func:`ranks_for_betas`): the model runs once, only the ranking is
repeated per ``beta``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..data.split import SplitTensors
from .compare import parse_metric, per_user_metric
from .evaluator import ScoreFn, in_user_order, user_batches
from .metrics import target_ranks

# the default grid of betas (0 = no prior); log(1 + c) spans about 0-7 on the benchmark datasets
DEFAULT_BETAS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


def popularity_prior(item_counts: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N + 1,) float32 ``log(1 + c_i)`` from each item's count (row 0, padding, is 0)."""
    counts = torch.as_tensor(np.asarray(item_counts), dtype=torch.float64)
    if counts.ndim != 1 or bool((counts < 0).any()):
        raise ValueError(f"item_counts must be a 1-d array of counts >= 0, got shape {tuple(counts.shape)}")
    return torch.log1p(counts).float()


def check_betas(betas: Sequence[float]) -> tuple[float, ...]:
    """The grid as floats; a ``ValueError`` for an empty grid or a value that is not a finite number >= 0."""
    out = tuple(float(b) for b in betas)
    if not out:
        raise ValueError("the grid of betas is empty")
    bad = [b for b in out if not math.isfinite(b) or b < 0]
    if bad:
        raise ValueError(f"every beta must be a finite number >= 0, got {bad}")
    return out


def with_prior(score_fn: ScoreFn, prior: torch.Tensor, beta: float) -> ScoreFn:
    """``score_fn`` with ``beta * prior`` added to every row (``beta = 0``: ``score_fn`` itself)."""
    if beta == 0:
        return score_fn
    return lambda item_seq: score_fn(item_seq).float() + beta * prior.to(item_seq.device)


@torch.no_grad()
def ranks_for_betas(score_fn: ScoreFn, split: SplitTensors, prior: torch.Tensor, betas: Sequence[float], *,
                    batch_size: int = 512, exclude_history: bool = True,
                    device: torch.device | str = "cpu") -> dict[float, torch.Tensor]:
    """Each user's 1-based target rank (as :func:`.evaluator.evaluate`) under every ``beta`` of the
    grid, from one call of ``score_fn`` per user batch: ``{beta: (U,) ranks}``."""
    betas = check_betas(betas)
    prior = prior.to(device)
    parts: dict[float, list[torch.Tensor]] = {b: [] for b in betas}
    rows = []
    for idx, seq, hist in user_batches(split, batch_size, exclude_history):
        scores = score_fn(seq.to(device)).float()  # (B, N + 1)
        hist = None if hist is None else hist.to(device)
        targets = split.targets[idx].to(device)
        for b in betas:
            parts[b].append(target_ranks(scores + b * prior if b else scores, targets, hist).cpu())
        rows.append(idx)
    return {b: in_user_order(parts[b], rows) for b in betas}


@dataclass(frozen=True)
class PriorChoice:
    """The ``beta`` chosen on the validation split, and the validation ``metric`` of every ``beta`` tried."""

    beta: float
    metric: str
    valid: dict[float, float]

    def to_dict(self) -> dict:
        return {"beta": self.beta, "metric": self.metric,
                "valid": {str(b): v for b, v in self.valid.items()}}


def choose_beta(valid_ranks: dict[float, torch.Tensor | np.ndarray], metric: str = "NDCG@10") -> PriorChoice:
    """The ``beta`` whose validation ranks give the highest mean ``metric``; on a tie the smallest
    ``beta`` (the least change to the model)."""
    if not valid_ranks:
        raise ValueError("no ranks to choose a beta from")
    parse_metric(metric)  # a ValueError naming the accepted forms
    values = {float(b): float(per_user_metric(np.asarray(r), metric).mean()) for b, r in sorted(valid_ranks.items())}
    best = max(values.values())
    beta = min(b for b, v in values.items() if v == best)
    return PriorChoice(beta=beta, metric=metric, valid=values)
