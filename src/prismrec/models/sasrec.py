"""SASRec — Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.

Item input (+ learned positional embedding) -> dropout -> causal self-attention blocks ->
the hidden state at each position scores the next item by dot product with the item table
shared with the input (``ItemInput.output_embeddings``).
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..data.sequences import PAD_ID
from .base import SequentialRecommender
from .dropout import Dropout
from .item_input import ItemInput
from .registry import register_backbone
from .transformer import TransformerEncoder, position_ids


class SASRec(SequentialRecommender):
    def __init__(self, cfg: ModelConfig, item_input: ItemInput, num_items: int, max_seq_len: int,
                 loss: str = "ce") -> None:
        super().__init__(item_input, num_items, max_seq_len, loss)
        self.position = nn.Embedding(max_seq_len, cfg.hidden_dim)
        nn.init.normal_(self.position.weight, std=0.02)
        self.emb_dropout = Dropout(cfg.dropout)
        scale = cfg.input_scale if cfg.input_scale != "auto" else ("sqrt_dim" if loss == "bce" else "none")
        self.input_scale = cfg.hidden_dim ** 0.5 if scale == "sqrt_dim" else 1.0
        self.positions = cfg.positions
        self.encoder = TransformerEncoder(cfg.hidden_dim, cfg.num_layers, cfg.num_heads, cfg.dropout, cfg.ffn_mult,
                                          cfg.block)

    def encode_inputs(self, inputs: torch.Tensor, item_seq: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """(B, L, D), (B, L) -> (B, L, D), or (B, 1, D) with ``last_only``."""
        padding_mask = item_seq != PAD_ID  # (B, L)
        x = inputs * self.input_scale + self.position(position_ids(padding_mask, self.positions))  # (B, L, D)
        x = self.emb_dropout(x) * padding_mask.unsqueeze(-1)  # padding stays zero
        return self.encoder(x, padding_mask, last_only)  # (B, L, D) or (B, 1, D)

    def last_hidden(self, item_seq: torch.Tensor) -> torch.Tensor:
        return self.encode_inputs(self.item_input(item_seq), item_seq, last_only=True)[:, -1]  # (B, D)


@register_backbone("sasrec")
def build_sasrec(cfg: ModelConfig, item_input: ItemInput, num_items: int, max_seq_len: int, loss: str) -> SASRec:
    return SASRec(cfg, item_input, num_items, max_seq_len, loss)
