"""Assemble a model from config: item-input path (ID, or PRISM around it) + backbone."""
from __future__ import annotations

import torch

from ..config import ConfigError, ModelConfig
from .base import SequentialRecommender
from .item_input import IDEmbedding, ItemInput
from .registry import get_backbone


def build_item_input(cfg: ModelConfig, num_items: int, features: dict[str, tuple[torch.Tensor, torch.Tensor]],
                     item_counts: torch.Tensor | None = None) -> ItemInput:
    """ID embedding, wrapped by the multimodal item input (PRISM or a naive fusion) when enabled."""
    id_input = IDEmbedding(num_items, cfg.hidden_dim)
    if not cfg.prism.enabled:
        return id_input
    if len(features) < 2:
        raise ConfigError(f"model.prism.enabled needs at least 2 modalities; the dataset provides "
                          f"{sorted(features) or 'none'} (see data.modalities and `prismrec features`)")
    from ..prism.item_input import build_multimodal_input  # PRISM depends on models, not the reverse

    try:
        return build_multimodal_input(cfg.prism, id_input, features, cfg.hidden_dim, item_counts)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def build_model(cfg: ModelConfig, num_items: int, max_seq_len: int, loss: str = "ce",
                features: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                item_counts: torch.Tensor | None = None) -> SequentialRecommender:
    """``features``: modality name -> (values (N + 1, d) float, present (N + 1,) bool); ``item_counts``:
    (N + 1,) each item's count in the training sequences (used by ``model.prism.output_popularity_buckets`` and
    ``model.item_bias_init=log_count``)."""
    try:
        builder = get_backbone(cfg.backbone)
    except KeyError as exc:
        raise ConfigError(f"model.backbone: {exc.args[0]}") from None
    item_input = build_item_input(cfg, num_items, features or {}, item_counts)
    model = builder(cfg, item_input, num_items, max_seq_len, loss)
    if cfg.item_bias:
        initial = None
        if cfg.item_bias_init == "log_count":
            if item_counts is None:
                raise ConfigError("model.item_bias_init=log_count needs the items' training counts (build the model "
                                  "with prismrec.api.build, which passes them)")
            initial = torch.log1p(torch.as_tensor(item_counts, dtype=torch.float64))
            initial[0] = 0.0  # padding
        try:
            model.enable_item_bias(initial)
        except ValueError as exc:  # a backbone whose scores are not dot products (STOSA)
            raise ConfigError(f"model.item_bias: {exc}; leave it false") from None
    return model
