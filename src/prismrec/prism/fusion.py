"""Adaptive Fusion Layer (PAPER.md Eqs. 10-11) and its "w/o AFL" ablation.

Weights come from an MLP over the expert embeddings and the ID embedding, pooled over the
user's history: ``causal`` scope pools items <= t for position t (prefix mean; no future
items), ``sequence`` scope pools all real items (masked mean; never padding).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.dropout import Dropout
from ..models.ops import gather_rows


def pooled_context(x: torch.Tensor, padding_mask: torch.Tensor, scope: str) -> torch.Tensor:
    """Masked mean over the history. x (B, L, F), padding_mask (B, L) -> (B, L, F)"""
    m = padding_mask.unsqueeze(-1).to(x.dtype)  # (B, L, 1)
    if scope == "causal":
        return (x * m).cumsum(dim=1) / m.cumsum(dim=1).clamp_min(1.0)  # prefix mean over items <= t
    pooled = (x * m).sum(dim=1, keepdim=True) / m.sum(dim=1, keepdim=True).clamp_min(1.0)  # (B, 1, F)
    return pooled.expand_as(x)


def pooled_mlp(mlp: nn.Sequential, per_item: torch.Tensor, where: torch.Tensor, padding_mask: torch.Tensor,
               scope: str) -> torch.Tensor:
    """MLP(pool(x)) per position from per-distinct-item inputs ``per_item`` (U, F), ``where`` (B, L) the
    row of each position. The first Linear commutes with the masked mean (W mean(x) + b = mean(W x) + b;
    an empty prefix gives b in both), so it runs once per distinct item and the pooling runs over its
    narrower output. -> (B, L, out)"""
    return mlp[1:](pooled_first_layer(mlp[0], per_item, where, padding_mask, scope))


def pooled_first_layer(first: nn.Linear, per_item: torch.Tensor, where: torch.Tensor, padding_mask: torch.Tensor,
                       scope: str) -> torch.Tensor:
    """first(pool(x)) per position, computed as pool(first(x)) (see :func:`pooled_mlp`): the
    pre-activations of the MLP's hidden layer. -> (B, L, width)"""
    z = per_item @ first.weight.T  # (U, width), no bias
    return pooled_context(gather_rows(z, where), padding_mask, scope) + first.bias


class UniformMix(nn.Module):
    """Mixes softmax weights with uniform ones: w' = alpha / E + (1 - alpha) w (``fusion_floor``,
    ``fusion_warmup_epochs``; not in the paper). alpha starts at 1 (equal weights) and falls linearly to
    ``floor`` over the first ``warmup_epochs`` epochs (at once with 0), so every expert gets a share of
    the recommendation loss's gradient while it is still learning what it carries, and keeps at least
    ``floor / E`` of the weight afterwards. alpha is a buffer: a saved model keeps the alpha it was
    evaluated with."""

    def __init__(self, floor: float, warmup_epochs: int) -> None:
        super().__init__()
        self.floor, self.warmup_epochs = floor, warmup_epochs
        self.register_buffer("alpha", torch.tensor(self.alpha_at(0)))

    def alpha_at(self, epoch: int) -> float:
        """alpha during (1-based) ``epoch``; epoch 0 = before training."""
        if self.warmup_epochs == 0:
            return self.floor
        left = min(max(self.warmup_epochs - (epoch - 1), 0), self.warmup_epochs) / self.warmup_epochs
        return self.floor + (1.0 - self.floor) * left

    def set_epoch(self, epoch: int) -> None:
        self.alpha.fill_(self.alpha_at(epoch))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.alpha / w.shape[-1] + (1.0 - self.alpha) * w


class AdaptiveFusion(nn.Module):
    """w = softmax(MLP([e_1, ..., e_E, e_id]) / T) per position (Eq. 10), optionally mixed with equal
    weights (:class:`UniformMix`)."""

    def __init__(self, num_experts: int, hidden_dim: int, fusion_hidden: int, dropout: float,
                 temperature: float, scope: str, mix: UniformMix | None = None, input_norm: bool = False) -> None:
        super().__init__()
        width = fusion_hidden or 2 * hidden_dim
        self.mlp = nn.Sequential(nn.Linear((num_experts + 1) * hidden_dim, width), nn.GELU(), Dropout(dropout),
                                 nn.Linear(width, num_experts))
        self.temperature, self.scope = temperature, scope
        self.mix = mix
        self.input_norm = input_norm

    def mlp_inputs(self, experts: torch.Tensor, id_items: torch.Tensor) -> torch.Tensor:
        """[e_1, ..., e_E, e_id] per distinct item: experts (U, E, D), id_items (U, D) -> (U, (E + 1) D);
        with ``input_norm`` every D-slot standardised (``fusion_input_norm``)."""
        x = torch.cat([experts, id_items.unsqueeze(-2)], dim=-2)  # (U, E + 1, D)
        if self.input_norm:
            x = F.layer_norm(x, x.shape[-1:])
        return x.flatten(-2)

    def pre_activations(self, experts: torch.Tensor, id_items: torch.Tensor, where: torch.Tensor,
                        padding_mask: torch.Tensor) -> torch.Tensor:
        """The MLP's hidden pre-activations (before GELU) per position: (B, L, width)."""
        return pooled_first_layer(self.mlp[0], self.mlp_inputs(experts, id_items), where, padding_mask, self.scope)

    def forward(self, experts: torch.Tensor, id_items: torch.Tensor, where: torch.Tensor,
                padding_mask: torch.Tensor) -> torch.Tensor:
        """Weights (B, L, E), summing to 1, from per-distinct-item inputs: experts (U, E, D), ID
        embeddings id_items (U, D), ``where`` (B, L) the row of each position, ``padding_mask`` (B, L).
        Eq. 10 is MLP(pool([e_1, ..., e_E, e_id])) per position (see :func:`pooled_mlp`)."""
        logits = self.mlp[1:](self.pre_activations(experts, id_items, where, padding_mask))
        w = torch.softmax(logits / self.temperature, dim=-1)  # (B, L, E)
        return w if self.mix is None else self.mix(w)


class ContentGate(nn.Module):
    """Per-user content gate (``content_gate``; not in the paper): g = sigmoid(MLP(pool([e_id, c]))) per
    position, from the history's ID embeddings and item contents ``c`` (a fuser's item part, flattened),
    pooled like the fusion weights (causal: items <= t). The item input scales the content by g, so a
    user whose history the content does not explain can close it and keep a clean ID path."""

    def __init__(self, part_width: int, hidden_dim: int, fusion_hidden: int, dropout: float, scope: str,
                 init_open: float = 2.0) -> None:
        super().__init__()
        width = fusion_hidden or 2 * hidden_dim
        self.mlp = nn.Sequential(nn.Linear(part_width + hidden_dim, width), nn.GELU(), Dropout(dropout),
                                 nn.Linear(width, 1))
        nn.init.constant_(self.mlp[-1].bias, init_open)  # starts mostly open: sigmoid(2) = 0.88
        self.scope = scope

    def forward(self, item_part: torch.Tensor, id_items: torch.Tensor, where: torch.Tensor,
                padding_mask: torch.Tensor) -> torch.Tensor:
        """Gate (B, L, 1) in (0, 1) from per-distinct-item parts (U, ...) and ID embeddings (U, D)."""
        x = torch.cat([item_part.flatten(1), id_items], dim=-1)
        return torch.sigmoid(pooled_mlp(self.mlp, x, where, padding_mask, self.scope))  # (B, L, 1)


class UniformFusion(nn.Module):
    """Equal weights for every expert (the paper's "w/o AFL" ablation)."""

    def forward(self, experts: torch.Tensor, id_items: torch.Tensor, where: torch.Tensor,
                padding_mask: torch.Tensor) -> torch.Tensor:
        return experts.new_full((*where.shape, experts.shape[-2]), 1.0 / experts.shape[-2])


class QueryFusion(nn.Module):
    """Per-user expert weights for the prediction layer (``output_fusion=user``; not in the paper):
    w(h) = softmax(MLP(h) / T) from the sequence representation h that scores the items, optionally
    mixed with equal weights (:class:`UniformMix`)."""

    def __init__(self, num_experts: int, hidden_dim: int, fusion_hidden: int, dropout: float,
                 temperature: float, mix: UniformMix | None = None) -> None:
        super().__init__()
        width = fusion_hidden or 2 * hidden_dim
        self.mlp = nn.Sequential(nn.Linear(hidden_dim, width), nn.GELU(), Dropout(dropout),
                                 nn.Linear(width, num_experts))
        self.temperature = temperature
        self.mix = mix

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (..., D) -> weights (..., E), summing to 1."""
        w = torch.softmax(self.mlp(hidden) / self.temperature, dim=-1)
        return w if self.mix is None else self.mix(w)
