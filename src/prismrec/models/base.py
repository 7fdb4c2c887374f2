"""The model contract every backbone implements, and the shared recommendation losses.

Evaluation only needs :meth:`SequentialRecommender.full_sort_scores`; the trainer only needs
:meth:`SequentialRecommender.training_loss`. Backbones implement :meth:`encode_inputs`
(and may override :meth:`score` / :meth:`recommendation_loss`, e.g. distance-based STOSA).
"""
from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..data.sequences import PAD_ID
from .item_input import AuxContext, ItemInput


@dataclass
class TrainBatch:
    item_seq: torch.Tensor  # (B, L) left-padded inputs
    targets: torch.Tensor  # (B, L) next item per position, PAD_ID where none
    negatives: torch.Tensor | None = None  # (B, L) one sampled negative per position (BCE/BPR)
    user_index: torch.Tensor | None = None  # (B,) row of each user in the dataset

    def to(self, device: torch.device) -> "TrainBatch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return TrainBatch(move(self.item_seq), move(self.targets), move(self.negatives), move(self.user_index))


@dataclass
class LossOutput:
    total: torch.Tensor
    """Everything the step minimises: ``rec`` plus the auxiliary terms (already weighted)."""
    parts: dict[str, torch.Tensor] = field(default_factory=dict)
    """Detached values to report per epoch."""
    rec: torch.Tensor | None = None
    """The recommendation loss alone (a mean over the batch's target positions), part of ``total``."""

    def weighted(self, rec_weight: float = 1.0, aux_weight: float = 1.0) -> torch.Tensor:
        """``rec_weight * rec + aux_weight * (total - rec)``: how the trainer weighs a (micro-)batch."""
        if rec_weight == 1.0 and aux_weight == 1.0:
            return self.total
        if self.rec is None:
            raise ValueError("this LossOutput has no separate rec term to weigh")
        return rec_weight * self.rec + aux_weight * (self.total - self.rec)


class SequentialRecommender(nn.Module):
    """Base class. ``item_input`` is the swappable item-input path (ID embedding or PRISM)."""

    #: whether :meth:`training_loss` needs ``batch.negatives`` for the configured loss
    needs_negatives: bool = False
    #: whether the scores of this backbone take a learned per-item offset (``model.item_bias``)
    supports_item_bias: bool = True

    def __init__(self, item_input: ItemInput, num_items: int, max_seq_len: int, loss: str = "ce") -> None:
        super().__init__()
        if loss not in ("ce", "bce"):
            raise ValueError(f"unknown loss {loss!r}; expected 'ce' or 'bce'")
        self.item_input = item_input
        self.num_items = num_items
        self.max_seq_len = max_seq_len
        self.loss_name = loss
        self.needs_negatives = loss == "bce"
        self.item_bias: nn.Parameter | None = None

    def enable_item_bias(self, initial: torch.Tensor | None = None) -> None:
        """Add a learned score offset per item (``model.item_bias``), starting at ``initial`` ((N + 1,);
        default zero): every scoring method below adds ``b_i`` to item i's score."""
        if not self.supports_item_bias:
            raise ValueError(f"{type(self).__name__} does not take model.item_bias (its scores are not dot products)")
        start = torch.zeros(self.num_items + 1) if initial is None else initial.detach().float().clone()
        if start.shape != (self.num_items + 1,):
            raise ValueError(f"initial item offsets must have shape ({self.num_items + 1},), got {tuple(start.shape)}")
        self.item_bias = nn.Parameter(start)

    def _plus_bias(self, scores: torch.Tensor, items: torch.Tensor | slice) -> torch.Tensor:
        """``scores`` (..., C) plus the offsets of ``items`` (the C scored items; a slice of rows, or
        indices of any shape matching the trailing dims) when the model has them."""
        if self.item_bias is None:
            return scores
        return scores + self.item_bias[items]

    # --- to implement -----------------------------------------------------------------
    def encode_inputs(self, inputs: torch.Tensor, item_seq: torch.Tensor) -> torch.Tensor:
        """Sequence encoder over given input embeddings: (B, L, D), (B, L) -> (B, L, D)."""
        raise NotImplementedError

    def on_epoch_start(self, epoch: int, data, device: torch.device, progress: bool = True) -> None:
        """Hook for per-epoch work (e.g. InDiRec's intent clustering; an override calls this first).
        ``epoch`` is 1-based; ``data``: LeaveOneOut; ``progress=False`` (``train --quiet``): no progress bars
        or per-epoch log lines. Passes the epoch on to the item input."""
        self.item_input.on_epoch_start(epoch)

    # --- shared -----------------------------------------------------------------------
    def forward(self, item_seq: torch.Tensor) -> torch.Tensor:
        """Hidden state at every position. (B, L) -> (B, L, D)"""
        return self.encode_inputs(self.item_input(item_seq), item_seq)

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of all items (higher = better). (..., D) -> (..., N + 1)"""
        return self._plus_bias(self.item_input.output_query(hidden) @ self.item_input.output_keys().T, slice(None))

    def real_item_scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of real items only, column ``i`` = item ``i + 1``. (..., D) -> (..., N)

        Used by the CE loss: avoids materialising and then slicing off the padding column.
        """
        return self._plus_bias(self.item_input.output_query(hidden) @ self.item_input.output_keys()[1:].T, slice(1, None))

    def candidate_scores(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of a candidate set shared by all rows. hidden (..., H), items (C,) -> (..., C)"""
        return self._plus_bias(self.item_input.output_query(hidden) @ self.item_input.output_keys(items).T, items)

    def score_items(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of given items only. hidden (..., D), items (...) -> (...)"""
        return self._plus_bias((self.item_input.output_query(hidden) * self.item_input.output_keys(items)).sum(-1), items)

    def last_hidden(self, item_seq: torch.Tensor) -> torch.Tensor:
        """Hidden state at the last position only. (B, L) -> (B, D). Backbones may compute less than
        :meth:`forward` for it (SASRec: one query per sequence in the last attention block)."""
        return self.forward(item_seq)[:, -1]

    def full_sort_scores(self, item_seq: torch.Tensor) -> torch.Tensor:
        """Scores of every item for the next position after each sequence. (B, L) -> (B, N + 1)"""
        return self.score(self.last_hidden(item_seq))

    @contextmanager
    def cached_item_tables(self) -> Iterator[None]:
        """Scoring in evaluation while the weights stay fixed (e.g. all user batches of one full-ranking
        evaluation): every item input (STOSA has two) may compute its full item table once for the block
        (:meth:`ItemInput.cached_item_tables`) instead of once per user batch."""
        with ExitStack() as stack:
            for module in self.modules():
                if isinstance(module, ItemInput):
                    stack.enter_context(module.cached_item_tables())
            yield

    def recommendation_loss(self, hidden: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
        mask = batch.targets != PAD_ID  # (B, L)
        h = hidden[mask]  # (P, D) only positions with a target: no work on padding
        targets = batch.targets[mask]  # (P,)
        if self.loss_name == "ce":
            return F.cross_entropy(self.real_item_scores(h), targets - 1)  # padding is never a class
        q = self.item_input.output_query(h)  # (P, K)
        items = torch.stack([targets, batch.negatives[mask]])  # (2, P)
        keys = self.item_input.output_keys(items)  # (2, P, K) one call
        pos, neg = self._plus_bias((q * keys).sum(-1), items)  # (P,) each
        return F.binary_cross_entropy_with_logits(torch.cat([pos, neg]),
                                                  torch.cat([torch.ones_like(pos), torch.zeros_like(neg)]),
                                                  reduction="sum") / pos.numel()

    def training_loss(self, batch: TrainBatch) -> LossOutput:
        padding_mask = batch.item_seq != PAD_ID
        hidden = self.forward(batch.item_seq)  # (B, L, D)
        rec = self.recommendation_loss(hidden, batch)
        aux = self.item_input.auxiliary_losses(self._aux_context(batch, padding_mask))
        total = rec + sum(aux.values()) if aux else rec
        return LossOutput(total=total, parts={"rec": rec.detach(), **{k: v.detach() for k, v in aux.items()}},
                          rec=rec)

    # --- a training step in micro-batches (see ItemInput.begin_batch) -------------------
    def begin_batch(self, item_seq: torch.Tensor | None) -> None:
        """Before a step's micro-batches, with all of its rows (B, L); None drops an unfinished step."""
        self.item_input.begin_batch(item_seq)

    def finish_batch(self) -> LossOutput | None:
        """After every part's backward: what is left to back-propagate for the step (the item-level
        work done once in :meth:`begin_batch`, and the step's item-level auxiliary losses), or None."""
        return closing_loss(*self.item_input.finish_batch())

    def _aux_context(self, batch: TrainBatch, padding_mask: torch.Tensor) -> AuxContext:
        def encode(inputs: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
            seq = batch.item_seq if rows is None else batch.item_seq[rows]
            return self.encode_inputs(inputs, seq.repeat(inputs.shape[0] // seq.shape[0], 1))

        return AuxContext(item_seq=batch.item_seq, padding_mask=padding_mask, targets=batch.targets, encode=encode,
                          predict_items=self.candidate_scores)


def closing_loss(carry: list[torch.Tensor], aux: dict[str, torch.Tensor]) -> LossOutput | None:
    """A step's closing backward: the ``carry`` terms (gradient carriers, no value of their own) plus
    the auxiliary losses, whose values alone are reported; None when there is nothing."""
    terms = carry + list(aux.values())
    if not terms:
        return None
    return LossOutput(total=sum(terms[1:], terms[0]), parts={k: v.detach() for k, v in aux.items()})
