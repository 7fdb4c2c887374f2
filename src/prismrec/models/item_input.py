"""The item-input seam: what a backbone sees for each item of a sequence.

A backbone never builds its own item embedding; it receives an :class:`ItemInput` by
composition. Plain ID embeddings are one implementation; PRISM wraps an ID input and adds
fused multimodal embeddings (``prismrec.prism``) without touching the backbone's code.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from ..data.sequences import PAD_ID
from .ops import gather_rows


@dataclass
class AuxContext:
    """What an item input may use to compute its auxiliary (training-only) losses."""

    item_seq: torch.Tensor  # (B, L)
    padding_mask: torch.Tensor  # (B, L) True at real items
    targets: torch.Tensor  # (B, L) the next item at each position (PAD_ID where there is none)
    encode: Callable[..., torch.Tensor]
    """``encode(inputs, rows=None)`` runs the backbone's sequence encoder on given input embeddings of
    the batch's rows ``rows`` ((b,) indices; None = all B rows): (k*b, L, D) -> (k*b, L, D), the rows'
    ``item_seq`` (and any other per-row state of the backbone) repeated k times."""
    predict_items: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    """The backbone's prediction layer on candidate items: hidden (..., H), items (C,) -> scores (..., C)."""

    @property
    def target_mask(self) -> torch.Tensor:
        """(B, L) True where a training target exists."""
        return self.targets != PAD_ID

    def subset(self, rows: torch.Tensor) -> "AuxContext":
        """The same context restricted to the batch rows ``rows`` (b,)."""
        parent = self.encode

        def encode(inputs: torch.Tensor, sub: torch.Tensor | None = None) -> torch.Tensor:
            return parent(inputs, rows if sub is None else rows[sub])

        return AuxContext(item_seq=self.item_seq[rows], padding_mask=self.padding_mask[rows],
                          targets=self.targets[rows], encode=encode, predict_items=self.predict_items)


class ItemInput(nn.Module):
    """Base class: per-position input embeddings plus the item table used for scoring."""

    hidden_dim: int
    num_items: int
    #: True when ``output_query``/``output_keys`` are wider than ``output_embeddings`` (a backbone
    #: that scores with its own geometry, e.g. STOSA's distances, cannot use such an input)
    widens_output: bool = False

    def forward(self, item_seq: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L, D)
        raise NotImplementedError

    def output_embeddings(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """The user-independent item table shared with the input (scoring, and e.g. InDiRec's
        diffusion targets): every row (N + 1, D) when ``items`` is None, else the rows of ``items``
        (any shape -> (..., D)). An input whose table is computed (content) computes only those rows."""
        raise NotImplementedError

    # Dot-product scoring is ``output_query(h) @ output_keys().T``. By default the query is the
    # hidden state and the keys are the item table; an input may widen both (K > D) to score
    # with user-dependent item representations (PRISM's ``output_fusion=user``).
    def output_query(self, hidden: torch.Tensor) -> torch.Tensor:  # (..., D) -> (..., K)
        return hidden

    def output_keys(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """Keys of ``items`` (any shape -> (..., K)), or of every row (N + 1, K) when None. An input
        whose keys are computed (content) computes only the rows asked for."""
        return self.output_embeddings(items)

    def auxiliary_losses(self, ctx: AuxContext) -> dict[str, torch.Tensor]:
        """Extra training losses (e.g. PRISM's interaction losses). Plain inputs have none."""
        return {}

    # A training step may run in several micro-batches (``train.micro_batches``). An input whose
    # per-item work is costly can do it once per step instead of once per part: ``begin_batch``
    # gets every row of the step before the parts run, the parts' forwards read the result, and
    # ``finish_batch`` (after every part's backward) returns what carries their gradients back
    # through that work, plus the step's item-level auxiliary losses computed once.
    def begin_batch(self, item_seq: torch.Tensor | None) -> None:
        """Before a step's micro-batches, with all its rows (B, L); None drops any unfinished step."""

    def finish_batch(self, losses: bool = True) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """After every part's backward: (scalars whose gradients are the parts' gradients carried through
        the work of ``begin_batch``; the step's auxiliary losses if ``losses``). Plain inputs: ([], {})."""
        return [], {}

    @contextmanager
    def cached_item_tables(self) -> Iterator[None]:
        """A block of scoring in evaluation (eval mode, no gradient) during which the parameters do not
        change, e.g. one full-ranking evaluation over all user batches: an input whose full item table
        is computed (content) may compute it once for the block. Plain inputs: nothing to cache."""
        yield

    def on_epoch_start(self, epoch: int) -> None:
        """Before each training epoch (1-based), e.g. to move a schedule. Plain inputs: nothing."""

    def sibling(self, id_input: "ItemInput") -> "ItemInput":
        """An item input for a second embedding stream of the same backbone (e.g. STOSA's
        covariance stream): uses ``id_input`` for IDs and shares every other component
        (PRISM experts and fusion) with ``self``. A plain ID input has nothing to share."""
        return id_input


class IDEmbedding(ItemInput):
    """One learned vector per item id; row 0 (padding) is fixed at zero."""

    def __init__(self, num_items: int, hidden_dim: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.num_items, self.hidden_dim = num_items, hidden_dim
        self.embedding = nn.Embedding(num_items + 1, hidden_dim, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=init_std)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def forward(self, item_seq: torch.Tensor) -> torch.Tensor:
        return self.embedding(item_seq)  # (B, L, D)

    def output_embeddings(self, items: torch.Tensor | None = None) -> torch.Tensor:
        table = self.embedding.weight  # (N + 1, D)
        return table if items is None else gather_rows(table, items)
