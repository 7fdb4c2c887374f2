"""Fusers: turn per-position modality embeddings (B, L, M, D) into one multimodal embedding
(B, L, D). :class:`PRISMFuser` is PRISM (experts + fusion + interaction losses); the others
are the naive-fusion baselines of the paper's first claim. Which one runs is decided when the
module graph is built, never by a branch inside ``forward``.

Every fuser splits into an item-level part (a function of the item's features alone: PRISM's
experts, a naive fusion's output) and a position-level part (PRISM's user-dependent weights).
The multimodal item input runs the item-level part once per distinct item of a batch and
gathers it to the positions, instead of once per position.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..config import ConfigError
from ..data.sequences import PAD_ID
from ..models.dropout import Dropout
from ..models.item_input import AuxContext
from ..models.ops import gather_rows
from .config import PRISMConfig
from .experts import ACTIVATIONS, InteractionExperts, expert_names
from .fusion import AdaptiveFusion, UniformFusion, UniformMix
from .losses import consecutive_pairs, fusion_balance_loss, id_alignment_loss, interaction_losses, transition_loss
from .masking import keep_one_modality, replacement, unimodal_views


class Fuser(nn.Module):
    """Base: ``fuse(item_part(modal(items)), id_emb(items), where, padding_mask) -> (B, L, D)``, with
    ``items`` the distinct items of a batch and ``where`` (B, L) each position's row in them."""

    expert_names: list[str] = []

    def item_part(self, modal: torch.Tensor) -> torch.Tensor:
        """What depends on the item alone. (..., M, D) -> (..., D) here, (..., E, D) for PRISM."""
        raise NotImplementedError

    def fuse(self, item_part: torch.Tensor, id_items: torch.Tensor, where: torch.Tensor,
             padding_mask: torch.Tensor) -> torch.Tensor:
        """Per-position multimodal embedding (B, L, D) from per-distinct-item parts (U, ...) and ID
        embeddings (U, D); ``where`` (B, L) indexes the rows, ``padding_mask`` (B, L) marks real items."""
        return gather_rows(item_part, where)

    def item_content(self, modal: torch.Tensor) -> torch.Tensor:
        """User-independent content embedding per item. (..., M, D) -> (..., D)"""
        return self.item_part(modal)

    def interaction_losses(self, encode_items: Callable[[torch.Tensor], torch.Tensor], ctx: AuxContext,
                           id_emb: torch.Tensor, combine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                           batch_items: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
                           ) -> dict[str, torch.Tensor]:
        """``encode_items``: item ids (...) -> projected modalities (..., M, D). ``batch_items``: the
        training forward's (distinct items (U,), their modalities (U, M, D), item parts (U, ...), ID
        embeddings (U, D)) for this batch, reusable instead of recomputing them."""
        return {}

    #: True when the interaction losses are a function of the batch's distinct items alone (then a
    #: step in micro-batches computes them once, with :meth:`item_losses`, not once per part)
    item_level_losses: bool = False

    def item_losses(self, items: torch.Tensor, modal: torch.Tensor, item_part: torch.Tensor,
                    id_items: torch.Tensor, item_seq: torch.Tensor) -> dict[str, torch.Tensor]:
        """Item-level losses from distinct items (U,), their modalities (U, M, D), item parts and ID
        embeddings (U, D); ``item_seq`` (B, L): the histories they come from (for losses on
        consecutive items)."""
        return {}


class PRISMFuser(Fuser):
    def __init__(self, cfg: PRISMConfig, modalities: list[str], hidden_dim: int) -> None:
        super().__init__()
        self.cfg, self.modalities = cfg, list(modalities)
        unknown = sorted(set(cfg.lambda_unique_per_modality) - set(self.modalities))
        if unknown:
            raise ConfigError(f"model.prism.lambda_unique_per_modality: no modality {', '.join(map(repr, unknown))}; "
                              f"this dataset's modalities are {', '.join(self.modalities)}")
        self.expert_names = expert_names(self.modalities, cfg.drop_experts)
        self.experts = InteractionExperts(self.expert_names, len(modalities) * hidden_dim, cfg.expert_hidden,
                                          hidden_dim, cfg.expert_layers, cfg.expert_activation, cfg.expert_dropout)
        E = len(self.expert_names)
        self.fusion = (AdaptiveFusion(E, hidden_dim, cfg.fusion_hidden, cfg.fusion_dropout, cfg.temperature,
                                      cfg.fusion_scope, uniform_mix(cfg), cfg.fusion_input_norm)
                       if cfg.fusion == "adaptive"
                       else UniformFusion())
        self.loss_weights = {n: (cfg.lambda_unique_per_modality.get(n[len("unique_"):], cfg.lambda_unique)
                                 if n.startswith("unique_") else
                                 cfg.lambda_synergy if n == "synergy" else cfg.lambda_redundancy)
                             for n in self.expert_names}

    #: with ``synergy_contrast``: () -> (M, D) reference embeddings, set by the item input at build time
    reference: Callable[[], torch.Tensor] | None = None
    #: (P,) items -> (M, P) bool which modalities they have, or None when none is missing anywhere;
    #: set by the item input at build time (the ``representation`` losses leave out missing views)
    presence: Callable[[torch.Tensor], torch.Tensor | None] | None = None

    def expert_outputs(self, modal: torch.Tensor) -> torch.Tensor:
        """(..., M, D) -> (..., E, D): every expert on the concatenated modalities (Eq. 1)."""
        out = self.experts(modal.flatten(-2))
        if not self.cfg.synergy_contrast:
            return out
        s = self.expert_names.index("synergy")
        return torch.cat([out[..., :s, :], self._synergy_contrast(modal, out[..., s, :]).unsqueeze(-2),
                          out[..., s + 1:, :]], dim=-2)

    def _synergy_contrast(self, modal: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
        """f(x) - sum_m f(x_m, mu_-m) + (M - 1) f(mu) for the synergy expert f. modal (..., M, D)."""
        s = self.expert_names.index("synergy")
        mu = self.reference()  # (M, D)
        M = modal.shape[-2]
        one_kept = keep_one_modality(modal.reshape(-1, M, modal.shape[-1]), mu)  # (M, P, M, D)
        parts = self.experts.single(one_kept.flatten(-2), s).sum(dim=0)  # (P, D)
        base = self.experts.single(mu.flatten(), s)  # (D,)
        return full - parts.reshape(full.shape) + (M - 1) * base

    item_part = expert_outputs

    def item_content(self, modal: torch.Tensor) -> torch.Tensor:
        return self.expert_outputs(modal).mean(dim=-2)  # (..., D) uniform over experts

    #: the last training forward's fusion weights (B, L, E), read at once by the item input that called
    #: :meth:`fuse` (for ``lambda_fusion_balance``); None in evaluation and when that loss is off
    last_weights: torch.Tensor | None = None

    def fuse(self, item_part, id_items, where, padding_mask):
        w = self.fusion(item_part, id_items, where, padding_mask)  # (B, L, E)  Eq. 10
        keep = self.cfg.lambda_fusion_balance > 0 and self.training and torch.is_grad_enabled()
        self.last_weights = w if keep else None
        return torch.einsum("ble,bled->bld", w, gather_rows(item_part, where))  # (B, L, D)  Eq. 11

    def balance_loss(self, weights: torch.Tensor, padding_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """``lambda_fusion_balance``'s loss on one forward's fusion weights (B, L, E) ({} when off)."""
        lam = self.cfg.lambda_fusion_balance
        return {"L_fusion_balance": lam * fusion_balance_loss(weights, padding_mask)} if lam > 0 else {}

    @property
    def losses_on(self) -> bool:
        """False for "w/o interaction losses" (every λ zero): then no masked pass runs at all."""
        return any(self.loss_weights.values())

    @property
    def item_level_losses(self) -> bool:
        return self.cfg.loss_on == "representation" and (self.losses_on or self.cfg.lambda_transition > 0
                                                         or self.cfg.lambda_id_align > 0)

    def interaction_losses(self, encode_items, ctx, id_emb, combine, batch_items=None):
        if self.item_level_losses:
            if batch_items is None:
                items, where = torch.unique(ctx.item_seq[ctx.padding_mask], return_inverse=True)
                modal = encode_items(items)
                id_items = id_emb.new_zeros(len(items), id_emb.shape[-1]).index_copy(0, where, id_emb[ctx.padding_mask])
                batch_items = (items, modal, self.expert_outputs(modal), id_items)
            return self.item_losses(*batch_items, item_seq=ctx.item_seq)
        if not self.losses_on:
            return {}
        cand = torch.unique(ctx.targets[ctx.target_mask])  # candidate items: the batch's targets (C,)
        B = ctx.item_seq.shape[0]
        n = max(1, round(self.cfg.loss_user_fraction * B))
        if n < B:  # an estimate of the same per-position means on n of the batch's users
            rows = torch.randperm(B, device=ctx.item_seq.device)[:n]
            ctx, id_emb = ctx.subset(rows), id_emb[rows]
        full_out, view_out = self._prediction_outputs(encode_items(ctx.item_seq), ctx, id_emb, combine, cand)
        return interaction_losses(full_out, view_out, self.expert_names, self.modalities, self.loss_weights,
                                  self.cfg.margin, center=self.cfg.loss_centering)

    def item_losses(self, items, modal, item_part, id_items, item_seq):
        """``representation`` losses: each distinct real item of the batch once (expert outputs depend
        on the item alone); ``item_part`` (the experts' outputs on the full input) is the full term.
        Plus ``lambda_transition``'s loss over the consecutive items of ``item_seq`` and
        ``lambda_id_align``'s against the items' (detached) ID embeddings ``id_items``.
        Only called when :attr:`item_level_losses`."""
        out: dict[str, torch.Tensor] = {}
        if self.losses_on:
            real_rows = items != PAD_ID
            real, full_out = modal[real_rows], item_part[real_rows]  # (P, M, D), (P, E, D)
            present = self.presence(items[real_rows]) if self.presence is not None else None  # (M, P) or None
            # statistics over all the step's items (that have the modality, where some lack it)
            fill = replacement(real, self.cfg.masking, None if present is None else present.T)
            n = self.cfg.loss_items
            if 0 < n < len(real):  # unbiased estimate of the per-item mean on n of them
                pick = torch.randperm(len(real), device=real.device)[:n]
                real, full_out, fill = real[pick], full_out[pick], fill[pick]
                present = None if present is None else present[:, pick]
            views = keep_one_modality(real, fill)  # (M, P, M, D)
            view_out = self.expert_outputs(views)  # (M, P, E, D)
            out = interaction_losses(full_out, view_out, self.expert_names, self.modalities, self.loss_weights,
                                     self.cfg.margin, present, self.cfg.loss_centering)
        if self.cfg.lambda_transition > 0:
            first, second = consecutive_pairs(item_seq, items)
            if len(first):
                out["L_transition"] = self.cfg.lambda_transition * transition_loss(
                    item_part, first, second, self.cfg.transition_temperature, candidates=items != PAD_ID)
        if self.cfg.lambda_id_align > 0:
            real = items != PAD_ID
            out["L_id_align"] = self.cfg.lambda_id_align * id_alignment_loss(
                item_part[real], id_items[real].detach(), self.cfg.transition_temperature)
        return out

    def _prediction_outputs(self, modal, ctx, id_emb, combine, cand):
        """Eqs. 2-4: y = Pred(SeqEnc(e_id, E_j(view))) for every expert j and view, in ONE encoder call.

        Predictions are scored against the candidate items ``cand`` (C,), the batch's targets (in-batch
        candidates), which keeps the comparison on the prediction layer without materialising scores
        over all items. The masking statistics come from the real positions only (never from padding).
        """
        B, L, M, D = modal.shape
        views = unimodal_views(modal.reshape(B * L, M, D), self.cfg.masking,
                               real=ctx.padding_mask.reshape(B * L)).reshape(M, B, L, M, D)
        all_views = torch.cat([modal.unsqueeze(0), views])  # (V = M + 1, B, L, M, D)
        outs = self.expert_outputs(all_views)  # (V, B, L, E, D)
        V, E = outs.shape[0], outs.shape[3]
        per_expert = outs.permute(3, 0, 1, 2, 4)  # (E, V, B, L, D)
        inputs = combine(id_emb.expand(E, V, B, L, D), per_expert).reshape(E * V * B, L, D)
        hidden = ctx.encode(inputs).reshape(E, V, B, L, -1)  # (E, V, B, L, H)
        h = hidden[:, :, ctx.target_mask]  # (E, V, P, H)
        scores = ctx.predict_items(h, cand)  # (E, V, P, C)
        scores = scores.permute(1, 2, 0, 3)  # (V, P, E, C)
        return scores[0], scores[1:]


class ConcatFuser(Fuser):
    """MLP over the concatenated modalities (the usual early-fusion baseline)."""

    def __init__(self, num_modalities: int, hidden_dim: int, width: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(num_modalities * hidden_dim, width), ACTIVATIONS[activation](),
                                 Dropout(dropout), nn.Linear(width, hidden_dim))

    def item_part(self, modal):
        return self.mlp(modal.flatten(-2))  # (..., D)


class SumFuser(Fuser):
    def item_part(self, modal):
        return modal.sum(dim=-2)  # (..., D)


class MeanFuser(Fuser):
    def item_part(self, modal):
        return modal.mean(dim=-2)  # (..., D)


class GatedFuser(Fuser):
    """Per-item attention over modalities: a_m = softmax_m(v^T tanh(W e_m)), output sum_m a_m e_m."""

    def __init__(self, hidden_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_dim, hidden_dim)
        self.score = nn.Linear(hidden_dim, 1, bias=False)

    def item_part(self, modal):
        a = torch.softmax(self.score(torch.tanh(self.proj(modal))), dim=-2)  # (..., M, 1)
        return (a * modal).sum(dim=-2)  # (..., D)


def uniform_mix(cfg: PRISMConfig) -> UniformMix | None:
    """The equal-weights mix of learned fusion weights (``fusion_warmup_epochs``/``fusion_floor``), if on."""
    return UniformMix(cfg.fusion_floor, cfg.fusion_warmup_epochs) if cfg.fusion_warmup_epochs or cfg.fusion_floor else None


def build_fuser(cfg: PRISMConfig, modalities: list[str], hidden_dim: int) -> Fuser:
    if cfg.method == "prism":
        return PRISMFuser(cfg, modalities, hidden_dim)
    if cfg.method == "concat":
        return ConcatFuser(len(modalities), hidden_dim, cfg.expert_hidden, cfg.expert_activation, cfg.expert_dropout)
    if cfg.method == "gated":
        return GatedFuser(hidden_dim)
    return {"sum": SumFuser, "mean": MeanFuser}[cfg.method]()
