"""Full-ranking evaluation: every item is scored for every user of a split.

The evaluator only needs a ``score_fn(item_seq (B, L)) -> scores (B, N + 1)`` (higher = better);
it never sees a model class. Batched over users; no Python loop over users or items.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from ..data.split import SplitTensors, trim_left_padding
from .metrics import metrics_from_ranks, target_ranks

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class EvalResult:
    metrics: dict[str, float]
    ranks: torch.Tensor  # (U,) 1-based rank of each user's target, on CPU
    seconds: float


def user_batches(split: SplitTensors, batch_size: int, exclude_history: bool = True
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """The evaluator's batches, on the split's device: (user rows (b,), their inputs with all-padding
    columns dropped (b, L'), their history trimmed to the columns in use (b, H') or None). Users are
    sorted by history length, so each batch drops as much padding as possible."""
    order = torch.argsort((split.inputs != 0).sum(dim=1), stable=True)
    for lo in range(0, split.inputs.shape[0], batch_size):  # loop over user *batches* only
        idx = order[lo:lo + batch_size]
        (seq,) = trim_left_padding(split.inputs[idx])
        hist = None
        if exclude_history:
            hist = split.history[idx]  # (b, H) right-padded: keep only the columns this batch uses
            hist = hist[:, :max(int((hist != 0).sum(dim=1).max()), 1)]
        yield idx, seq, hist


@torch.no_grad()
def evaluate(score_fn: ScoreFn, split: SplitTensors, ks: tuple[int, ...] = (5, 10, 20), *,
             batch_size: int = 512, exclude_history: bool = True,
             device: torch.device | str = "cpu") -> EvalResult:
    start = time.perf_counter()
    ranks, rows = [], []
    for idx, seq, hist in user_batches(split, batch_size, exclude_history):
        scores = score_fn(seq.to(device)).float()  # (B, N + 1)
        hist = None if hist is None else hist.to(device)
        ranks.append(target_ranks(scores, split.targets[idx].to(device), hist).cpu())
        rows.append(idx)
    all_ranks = torch.empty(split.inputs.shape[0], dtype=torch.long)
    all_ranks[torch.cat(rows)] = torch.cat(ranks)
    return EvalResult(metrics=metrics_from_ranks(all_ranks, ks), ranks=all_ranks,
                      seconds=time.perf_counter() - start)
