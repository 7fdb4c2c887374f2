"""Assemble a model from config: item-input path (ID, or PRISM around it) + backbone."""
from __future__ import annotations

import torch

from ..config import ConfigError, ModelConfig
from .base import SequentialRecommender
from .item_input import IDEmbedding, ItemInput
from .registry import get_backbone


def build_item_input(cfg: ModelConfig, num_items: int, features: dict[str, tuple[torch.Tensor, torch.Tensor]]
                     ) -> ItemInput:
    """ID embedding; later components (PRISM, fusion baselines) wrap it here from config."""
    return IDEmbedding(num_items, cfg.hidden_dim)


def build_model(cfg: ModelConfig, num_items: int, max_seq_len: int, loss: str = "ce",
                features: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> SequentialRecommender:
    """``features``: modality name -> (values (N + 1, d) float, present (N + 1,) bool)."""
    try:
        builder = get_backbone(cfg.backbone)
    except KeyError as exc:
        raise ConfigError(f"model.backbone: {exc.args[0]}") from None
    item_input = build_item_input(cfg, num_items, features or {})
    return builder(cfg, item_input, num_items, max_seq_len, loss)
