"""The multimodal item input: ID embedding + fused multimodal embedding, on the item-input seam.

    x_t = combine(e_id(i_t), fuser(modalities(i_t)))        (PAPER.md §2, "into the backbone")

(with ``content_gate``, not in the paper: combine(e_id(i_t), g_t * fuser(...)), g_t from the history)

The backbone's ``forward`` is untouched: it receives this module where it would receive a plain
:class:`~prismrec.models.item_input.IDEmbedding`. Scoring uses the ID table (the paper's
prediction layer), so switching PRISM off gives exactly the plain backbone. With
``output_content`` the item table also carries content, either one shared fused embedding per
item (``output_fusion=items``) or, for PRISM, every expert's embedding weighted per user
(``output_fusion=user``: the query and keys of the dot product are widened to (E + 1) x D).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, NamedTuple

import torch
from torch import nn

from ..data.sequences import PAD_ID
from ..models.item_input import AuxContext, ItemInput
from ..models.ops import gather_rows
from .config import PRISMConfig
from .fusers import Fuser, PRISMFuser, build_fuser, uniform_mix
from .fusion import ContentGate, QueryFusion, UniformMix
from .modalities import ModalityEncoder


class AddCombine(nn.Module):
    def forward(self, id_emb: torch.Tensor, mm: torch.Tensor) -> torch.Tensor:
        return id_emb + mm


class ConcatCombine(nn.Module):
    def __init__(self, hidden_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * hidden_dim, hidden_dim)

    def forward(self, id_emb: torch.Tensor, mm: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.cat([id_emb.expand_as(mm), mm], dim=-1))


class ContentNorm(nn.Module):
    """LayerNorm without affine, times one learned scalar: puts content on the ID embeddings' scale."""

    def __init__(self, hidden_dim: int, init_scale: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_dim, elementwise_affine=False)
        self.scale = nn.Parameter(torch.tensor(float(init_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.norm(x)


def popularity_buckets(counts: torch.Tensor, num_buckets: int) -> torch.Tensor:
    """Bucket of each count: 0 for 0, then 1 + floor(log2(count)) (1 -> 1, 2-3 -> 2, 4-7 -> 3, ...),
    capped at ``num_buckets - 1``."""
    counts = counts.long()
    log2 = torch.floor(torch.log2(counts.clamp(min=1).double())).long()
    return torch.where(counts > 0, 1 + log2, 0).clamp(max=num_buckets - 1)


class PopularityScale(nn.Module):
    """Two learned scalars per popularity bucket, (a_id, a_content), both starting at 1
    (``output_popularity_buckets``); the buckets come from the items' training counts."""

    def __init__(self, item_counts: torch.Tensor, num_buckets: int) -> None:
        super().__init__()
        # recomputed from the dataset at every build, like the modality features (not saved)
        self.register_buffer("bucket", popularity_buckets(item_counts, num_buckets), persistent=False)
        self.scale = nn.Parameter(torch.ones(num_buckets, 2))

    def forward(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_id, a_content), each (U, 1), for the items (U,)."""
        a = self.scale[self.bucket[items]]  # (U, 2)
        return a[:, :1], a[:, 1:]

    def bucket_ranges(self) -> list[str]:
        """Human-readable training-count range of each bucket."""
        last = self.scale.shape[0] - 1
        names = ["0"]
        for b in range(1, last + 1):
            lo, hi = 2 ** (b - 1), 2 ** b - 1
            names.append(f"{lo}+" if b == last else (str(lo) if lo == hi else f"{lo}-{hi}"))
        return names


class MultimodalItemInput(ItemInput):
    def __init__(self, id_input: ItemInput, modalities: ModalityEncoder, fuser: Fuser, combine: nn.Module,
                 output_content: bool = False, content_norm: nn.Module | None = None,
                 query_fusion: QueryFusion | None = None, content_gate: ContentGate | None = None,
                 id_dropout: float = 0.0, popularity: PopularityScale | None = None) -> None:
        super().__init__()
        self.id_input, self.modalities, self.fuser, self.combine = id_input, modalities, fuser, combine
        self.content_norm = content_norm if content_norm is not None else nn.Identity()
        self.num_items, self.hidden_dim = id_input.num_items, id_input.hidden_dim
        self.output_content = output_content
        if query_fusion is not None and not (output_content and isinstance(fuser, PRISMFuser)):
            raise ValueError("per-user output fusion needs output_content and PRISM experts")
        self.query_fusion = query_fusion
        self.content_gate = content_gate  # None: content enters every user's inputs in full
        self.id_dropout = id_dropout  # training only: probability that a position sees no ID embedding
        if popularity is not None and not output_content:
            raise ValueError("popularity scales of the prediction layer need output_content")
        self.popularity = popularity  # None: the prediction layer's ID and content parts are added as they are
        # the last training forward's per-item work, reused by auxiliary_losses on the same batch
        self._batch_items: tuple[torch.Tensor, tuple[torch.Tensor, ...]] | None = None
        self._step: _StepTable | None = None  # a step in micro-batches: its item-level work, done once
        # inside such a step, the content item table(s) of the prediction layer, computed once for the step:
        # per_expert -> (table in the graph, the detached leaf the parts score with)
        self._step_keys: dict[bool, tuple[torch.Tensor, torch.Tensor]] = {}
        # inside cached_item_tables(): per_expert -> the full content item table, computed once (no gradient)
        self._table_cache: dict[bool, torch.Tensor] | None = None
        # the last training forward's (item_seq, fusion weights, padding mask) (``lambda_fusion_balance``)
        self._fusion_weights: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def widens_output(self) -> bool:
        return self.query_fusion is not None

    def _item_level(self, item_seq: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The item-level part (ID rows, modalities, experts) once per distinct item of ``item_seq``:
        items (U,), where (B, L) each position's row, id_items (U, D), modal (U, M, D), per_item (U, ...).
        Inside a step begun with :meth:`begin_batch` the rows come from the step's table (modal None)."""
        items, where = torch.unique(item_seq, return_inverse=True)
        step = self._step if self.training and torch.is_grad_enabled() else None
        if step is not None:
            rows = step.rows[items]  # (U,) each item's row in the step's table, -1 if absent
            if bool((rows >= 0).all()):
                id_rows, part_rows = (gather_rows(leaf, rows) for leaf in step.leaves)
                return items, where, id_rows, None, part_rows
        modal = self.modalities(items)
        return items, where, self.id_input(items), modal, self.fuser.item_part(modal)

    def forward(self, item_seq: torch.Tensor) -> torch.Tensor:
        # only what depends on the history runs per position (PRISM: the pooled fusion weights)
        items, where, id_items, modal, per_item = self._item_level(item_seq)
        padding_mask = item_seq != PAD_ID
        content = self._content(where, id_items, per_item, padding_mask)  # (B, L, D)
        weights = getattr(self.fuser, "last_weights", None)  # set by this very call (training only)
        self._fusion_weights = (item_seq, weights, padding_mask) if weights is not None else None
        if self.training and torch.is_grad_enabled() and modal is not None:
            self._batch_items = (item_seq, (items, modal, per_item, id_items))
        id_emb = gather_rows(id_items, where)  # (B, L, D)
        if self.training and self.id_dropout > 0:  # these positions must be told apart by content alone
            keep = torch.rand(item_seq.shape + (1,), device=id_emb.device) >= self.id_dropout  # (B, L, 1)
            id_emb = id_emb * keep
        return self.combine(id_emb, content)  # (B, L, D)

    def _content(self, where: torch.Tensor, id_items: torch.Tensor, per_item: torch.Tensor,
                 padding_mask: torch.Tensor) -> torch.Tensor:
        """The content that joins the ID embedding at each position: fused, normalised, gated. (B, L, D)"""
        content = self.content_norm(self.fuser.fuse(per_item, id_items, where, padding_mask))
        if self.content_gate is not None:
            content = self.content_gate(per_item, id_items, where, padding_mask) * content
        return content

    @torch.no_grad()
    def input_parts(self, item_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two parts that :meth:`forward` combines at each position: (ID embedding, content), (B, L, D)
        each (evaluation mode: no ID dropout)."""
        _, where, id_items, _, per_item = self._item_level(item_seq)
        return gather_rows(id_items, where), self._content(where, id_items, per_item, item_seq != PAD_ID)

    # ------------------------------------------------------------------ a step in micro-batches
    def begin_batch(self, item_seq: torch.Tensor | None) -> None:
        """Run the item-level work (modalities, experts, ID rows) once for every distinct item of the
        step. Each part reads detached leaf copies of it, so the parts' backward passes stop at the
        leaves and add up there; :meth:`finish_batch` carries the sums through the experts once."""
        self._step = self._batch_items = None
        self._step_keys = {}
        if item_seq is None:
            return
        items = torch.unique(item_seq)  # (U,)
        modal = self.modalities(items)  # (U, M, D)
        outputs = (self.id_input(items), self.fuser.item_part(modal))  # (U, D), (U, ...)
        rows = torch.full((self.num_items + 1,), -1, dtype=torch.long, device=items.device)
        rows[items] = torch.arange(len(items), device=items.device)
        self._step = _StepTable(items, rows, modal, outputs,
                                tuple(t.detach().requires_grad_() for t in outputs), item_seq)

    def finish_batch(self, losses: bool = True) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """sum(output * its leaf's accumulated gradient) per output: their backward is exactly the parts'
        gradient through the item-level work. Plus, with ``losses``, the interaction losses of every distinct
        item of the step, once (``representation``; ``prediction`` losses ran in each part)."""
        step, self._step = self._step, None
        tables, self._step_keys = list(self._step_keys.values()), {}
        if step is None:
            return [], {}
        carry = [(out * leaf.grad).sum() for out, leaf in list(zip(step.outputs, step.leaves)) + tables
                 if leaf.grad is not None]
        aux = (self.fuser.item_losses(step.items, step.modal, step.outputs[1], step.outputs[0], step.item_seq)
               if losses and self.fuser.item_level_losses else {})
        return carry, aux

    def output_embeddings(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """The shared item table: ID embeddings, plus one fused content embedding per item with
        ``output_content`` (also under ``output_fusion=user``, for uses that need one vector per item)."""
        if not self.output_content:
            return self.id_input.output_embeddings(items)
        return self._content_keys(items, per_expert=False)

    def output_query(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.query_fusion is None:
            return hidden
        w = self.query_fusion(hidden)  # (..., E)
        return torch.cat([hidden, (w.unsqueeze(-1) * hidden.unsqueeze(-2)).flatten(-2)], dim=-1)  # (..., (E+1) D)

    def output_keys(self, items: torch.Tensor | None = None) -> torch.Tensor:
        if not self.output_content:
            return self.id_input.output_keys(items)
        return self._content_keys(items, per_expert=self.query_fusion is not None)

    def _content_keys(self, items: torch.Tensor | None, per_expert: bool) -> torch.Tensor:
        """ID embedding plus content, the content computed once per distinct requested item.
        ``items=None``: every row (N + 1, K); else (..., K). K = D, or (E + 1) D with ``per_expert``
        (the ID embedding, then every expert's normalised embedding).

        The full table (``items=None``, e.g. every CE step and every evaluation batch) is computed once
        per training step in micro-batches (the parts score with a detached copy and :meth:`finish_batch`
        carries their summed gradient through it: the same gradient as one part) and once per
        :meth:`cached_item_tables` block in evaluation, instead of once per part or per user batch."""
        if items is None:
            if self._table_cache is not None and not (self.training or torch.is_grad_enabled()):
                if per_expert not in self._table_cache:
                    self._table_cache[per_expert] = self._compute_keys(None, per_expert)
                return self._table_cache[per_expert]
            if self._step is not None and self.training and torch.is_grad_enabled():
                if per_expert not in self._step_keys:
                    table = self._compute_keys(None, per_expert)  # (N + 1, K) in the graph
                    self._step_keys[per_expert] = (table, table.detach().requires_grad_())
                return self._step_keys[per_expert][1]
        return self._compute_keys(items, per_expert)

    @contextmanager
    def cached_item_tables(self) -> Iterator[None]:
        """See :meth:`ItemInput.cached_item_tables`: the full content table(s), once per block."""
        self._table_cache = {}
        try:
            yield
        finally:
            self._table_cache = None

    def _compute_keys(self, items: torch.Tensor | None, per_expert: bool) -> torch.Tensor:
        table = self.id_input.output_embeddings()  # (N + 1, D)
        if items is None:
            uniq, where = torch.arange(self.num_items + 1, device=table.device), None
        else:
            uniq, where = torch.unique(items, return_inverse=True)  # (U,), items.shape
        modal = self.modalities(uniq)  # (U, M, D)
        real = (uniq != PAD_ID).unsqueeze(-1)  # (U, 1): the padding row carries no content
        id_rows = table[uniq]  # (U, D)
        if self.popularity is not None:  # per popularity bucket: how much the ID and the content count
            a_id, a_content = self.popularity(uniq)  # (U, 1) each
            id_rows, real = a_id * id_rows, a_content * real
        if per_expert:
            experts = self.content_norm(self.fuser.expert_outputs(modal)) * real.unsqueeze(-1)  # (U, E, D)
            keys = torch.cat([id_rows, experts.flatten(-2)], dim=-1)  # (U, (E + 1) D)
        else:
            keys = id_rows + self.content_norm(self.fuser.item_content(modal)) * real  # (U, D)
        return keys if where is None else gather_rows(keys, where)

    def auxiliary_losses(self, ctx: AuxContext) -> dict[str, torch.Tensor]:
        fusion, self._fusion_weights = self._fusion_weights, None
        balance = (self.fuser.balance_loss(*fusion[1:]) if fusion is not None and fusion[0] is ctx.item_seq
                   else {})  # position-level: from this batch's (or part's) own forward
        if self._step is not None and self.fuser.item_level_losses:
            return balance  # the item-level losses are computed once for the whole step by finish_batch
        cached, self._batch_items = self._batch_items, None
        reuse = cached[1] if cached is not None and cached[0] is ctx.item_seq else None
        return self.fuser.interaction_losses(self.modalities, ctx, self.id_input(ctx.item_seq),
                                             lambda id_emb, mm: self.combine(id_emb, self.content_norm(mm)),
                                             batch_items=reuse) | balance

    def _uniform_mixes(self) -> list[UniformMix]:
        """The fusion layers' mixes with equal weights (``fusion_warmup_epochs`` / ``fusion_floor``)."""
        return [m for m in self.modules() if isinstance(m, UniformMix)]

    def on_epoch_start(self, epoch: int) -> None:
        """Moves every fusion-weight schedule (``fusion_warmup_epochs``) to ``epoch``."""
        for mix in self._uniform_mixes():
            mix.set_epoch(epoch)

    def sibling(self, id_input: ItemInput) -> "MultimodalItemInput":
        return MultimodalItemInput(id_input, self.modalities, self.fuser, self.combine, self.output_content,
                                   self.content_norm, self.query_fusion, self.content_gate, self.id_dropout,
                                   self.popularity)

    # ------------------------------------------------------------------ introspection
    @property
    def expert_names(self) -> list[str]:
        return list(self.fuser.expert_names)

    @property
    def fusion_equal_share(self) -> float | None:
        """The share alpha of the fusion weights split equally among the experts (``fusion_floor`` /
        ``fusion_warmup_epochs``; the same for every fusion layer), or None when they are not mixed."""
        mixes = self._uniform_mixes()
        return float(mixes[0].alpha) if mixes else None

    @torch.no_grad()
    def fusion_weights(self, item_seq: torch.Tensor) -> torch.Tensor | None:
        """Per-position expert weights (B, L, E) (PRISM only; None for naive fusion)."""
        if not isinstance(self.fuser, PRISMFuser):
            return None
        _, where, id_items, _, per_item = self._item_level(item_seq)
        return self.fuser.fusion(per_item, id_items, where, item_seq != PAD_ID)

    @property
    def has_fusion_mlp(self) -> bool:
        """Whether the fusion weights come from an MLP (PRISM with ``fusion=adaptive``)."""
        return hasattr(getattr(self.fuser, "fusion", None), "pre_activations")

    @torch.no_grad()
    def fusion_pre_activations(self, item_seq: torch.Tensor) -> torch.Tensor | None:
        """The adaptive fusion MLP's hidden pre-activations per position (B, L, width) (PRISM with
        ``fusion=adaptive`` only; None otherwise)."""
        if not self.has_fusion_mlp:
            return None
        _, where, id_items, _, per_item = self._item_level(item_seq)
        return self.fuser.fusion.pre_activations(per_item, id_items, where, item_seq != PAD_ID)

    @torch.no_grad()
    def content_gates(self, item_seq: torch.Tensor) -> torch.Tensor | None:
        """Per-position content gate (B, L) (``content_gate`` only; None otherwise)."""
        if self.content_gate is None:
            return None
        _, where, id_items, _, per_item = self._item_level(item_seq)
        return self.content_gate(per_item, id_items, where, item_seq != PAD_ID).squeeze(-1)

    @torch.no_grad()
    def output_fusion_weights(self, hidden: torch.Tensor) -> torch.Tensor | None:
        """Per-user expert weights of the prediction layer (..., E) (``output_fusion=user`` only)."""
        return None if self.query_fusion is None else self.query_fusion(hidden)

    @torch.no_grad()
    def expert_embeddings(self, items: torch.Tensor) -> torch.Tensor | None:
        """Per-item expert embeddings (n, E, D) (PRISM only)."""
        if not isinstance(self.fuser, PRISMFuser):
            return None
        return self.fuser.expert_outputs(self.modalities(items))


class _StepTable(NamedTuple):
    items: torch.Tensor  # (U,) the step's distinct items, sorted
    rows: torch.Tensor  # (N + 1,) each item's row in ``items``, -1 if absent
    modal: torch.Tensor  # (U, M, D) projected modalities (in the graph)
    outputs: tuple[torch.Tensor, torch.Tensor]  # ID rows (U, D), fuser item parts (U, ...) (in the graph)
    leaves: tuple[torch.Tensor, torch.Tensor]  # their detached copies that the parts' forwards use
    item_seq: torch.Tensor  # (B, L) the step's histories


def build_multimodal_input(cfg: PRISMConfig, id_input: ItemInput,
                           features: dict[str, tuple[torch.Tensor, torch.Tensor]], hidden_dim: int,
                           item_counts: torch.Tensor | None = None) -> MultimodalItemInput:
    """``item_counts`` (N + 1,): each item's training count (needed by ``output_popularity_buckets``)."""
    modalities = ModalityEncoder(features, hidden_dim, cfg.feature_norm)
    fuser = build_fuser(cfg, modalities.names, hidden_dim)
    if cfg.synergy_contrast:
        fuser.reference = modalities.reference
    if isinstance(fuser, PRISMFuser):
        fuser.presence = modalities.presence
    combine = AddCombine() if cfg.combine == "add" else ConcatCombine(hidden_dim)
    norm = ContentNorm(hidden_dim, cfg.content_scale) if cfg.content_norm else None
    query = (QueryFusion(len(fuser.expert_names), hidden_dim, cfg.fusion_hidden, cfg.fusion_dropout, cfg.temperature,
                         uniform_mix(cfg)) if cfg.output_fusion == "user" else None)
    gate = None
    if cfg.content_gate:
        part_width = hidden_dim * (len(fuser.expert_names) if isinstance(fuser, PRISMFuser) else 1)
        gate = ContentGate(part_width, hidden_dim, cfg.fusion_hidden, cfg.fusion_dropout, cfg.fusion_scope)
    popularity = None
    if cfg.output_popularity_buckets:
        if item_counts is None or item_counts.shape != (id_input.num_items + 1,):
            raise ValueError("model.prism.output_popularity_buckets needs every item's training count "
                             f"({id_input.num_items + 1} rows with padding); the model was built without them")
        popularity = PopularityScale(item_counts, cfg.output_popularity_buckets)
    return MultimodalItemInput(id_input, modalities, fuser, combine, cfg.output_content, norm, query, gate,
                               cfg.id_dropout, popularity)
