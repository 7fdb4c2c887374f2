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
    top_items: torch.Tensor | None = None  # (U, K) each user's top-K item ids (best first), with ``top_k``


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
             device: torch.device | str = "cpu", top_k: int = 0) -> EvalResult:
    """Rank every split target among all items; with ``top_k`` > 0 also keep each user's top-``top_k``
    list from the same scores, on the same terms as the ranks: padding never listed, with
    ``exclude_history`` no history item except the target itself (:func:`top_items`)."""
    start = time.perf_counter()
    ranks, rows, tops = [], [], []
    for idx, seq, hist in user_batches(split, batch_size, exclude_history):
        scores = score_fn(seq.to(device)).float()  # (B, N + 1)
        hist = None if hist is None else hist.to(device)
        ranks.append(target_ranks(scores, split.targets[idx].to(device), hist).cpu())
        if top_k:
            tops.append(top_items(scores, top_k, hist, keep=split.targets[idx].to(device)).cpu())
        rows.append(idx)
    all_ranks = in_user_order(ranks, rows)
    lists = in_user_order(tops, rows) if top_k else None
    return EvalResult(metrics=metrics_from_ranks(all_ranks, ks), ranks=all_ranks,
                      seconds=time.perf_counter() - start, top_items=lists)


@torch.no_grad()
def recommend_top(score_fn: ScoreFn, split: SplitTensors, k: int, *, batch_size: int = 512,
                  exclude_history: bool = True, device: torch.device | str = "cpu"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each user's top-``k`` items after the split's inputs (its targets are not read): ``(items (U, k),
    scores (U, k))`` in the split's user order, best first, on CPU; padding and, with ``exclude_history``,
    the history are never listed (:func:`top_items`; a row ends in item 0, score -inf, where fewer remain)."""
    items, scores, rows = [], [], []
    for idx, seq, hist in user_batches(split, batch_size, exclude_history):
        s = score_fn(seq.to(device)).float()  # (B, N + 1)
        top = top_items(s, k, None if hist is None else hist.to(device))
        items.append(top.cpu())
        scores.append(s.gather(1, top).masked_fill(top == 0, float("-inf")).cpu())
        rows.append(idx)
    return in_user_order(items, rows), in_user_order(scores, rows)


def in_user_order(parts: list[torch.Tensor], rows: list[torch.Tensor]) -> torch.Tensor:
    """The per-batch results ``parts`` (each (b, ...)) of the user batches ``rows`` (each (b,) user
    rows, as :func:`user_batches` yields them) put back in the split's user order: (U, ...)."""
    values, order = torch.cat(parts), torch.cat(rows)
    out = torch.empty_like(values)
    out[order] = values
    return out


def top_items(scores: torch.Tensor, k: int, history: torch.Tensor | None = None,
              keep: torch.Tensor | None = None) -> torch.Tensor:
    """(B, k) ids of the k best-scored items per row, best first; column 0 (padding), the ``history``
    ids (B, H; 0 = padding) and items scored NaN or -inf are never listed: where fewer than k items
    remain, the row ends in zeros. ``keep`` (B,): one id per row listed even if it is in the history
    (the evaluator passes the targets, which :func:`.metrics.target_ranks` never excludes, so a user's
    list holds the target exactly when its rank is <= k, ties aside). ``scores`` (B, N + 1) is not
    modified. The order among equal scores is ``torch.topk``'s."""
    n_items = scores.shape[1] - 1
    if not 1 <= k <= n_items:
        raise ValueError(f"top_k must be in 1..{n_items} (the number of items), got {k}")
    s = torch.nan_to_num(scores, nan=float("-inf"))  # a copy: the caller's scores stay as they are
    s[:, 0] = float("-inf")
    if history is not None:
        kept = None if keep is None else s.gather(1, keep[:, None])
        s.scatter_(1, history, float("-inf"))  # history ids; the padding id 0 is -inf already
        if kept is not None:
            s.scatter_(1, keep[:, None], kept)
    top = torch.topk(s, k, dim=1, sorted=True)
    return top.indices.masked_fill(top.values == float("-inf"), 0)
