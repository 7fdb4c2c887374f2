"""Causal self-attention blocks shared by every transformer backbone (SASRec, InDiRec, ...)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import Dropout


def attention_mask(padding_mask: torch.Tensor) -> torch.Tensor:
    """Boolean mask ``(B, 1, L, L)``: True where query ``i`` may attend key ``j``.

    Causal (``j <= i``) and never a padding key, except that every position may attend
    itself so fully padded rows do not produce NaNs (their outputs are ignored).
    ``padding_mask``: (B, L) True at real items.
    """
    L = padding_mask.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool, device=padding_mask.device).tril()  # (L, L)
    eye = torch.eye(L, dtype=torch.bool, device=padding_mask.device)
    mask = causal[None] & padding_mask[:, None, :]  # (B, L, L)
    return (mask | eye[None])[:, None]  # (B, 1, L, L)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, dropout_p: float,
           out: nn.Module) -> torch.Tensor:
    """Multi-head attention from per-head queries (B, H, Lq, Dh) and keys/values (B, H, L, Dh) under a
    boolean ``mask`` (B, 1, Lq, L), heads merged and projected by ``out``: (B, Lq, H * Dh)."""
    B, H, Lq, Dh = q.shape
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)  # (B, H, Lq, Dh)
    return out(y.transpose(1, 2).reshape(B, Lq, H * Dh))  # (B, Lq, D)


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_dim, 3 * hidden_dim)
        self.out = nn.Linear(hidden_dim, hidden_dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """(B, L, D) -> (B, L, D), or (B, 1, D) for the last query only (keys and values: every position)."""
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)  # 3x (B, H, L, Dh)
        if last_only:
            q, mask = q[:, :, -1:], mask[:, :, -1:]  # (B, H, 1, Dh), (B, 1, 1, L)
        return attend(q, k, v, mask, self.dropout if self.training else 0.0, self.out)  # (B, Lq, D)


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + Attn(LN(x))`` then ``x + FFN(LN(x))``."""

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float, ffn_mult: int = 1) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden_dim)
        self.attn = CausalSelfAttention(hidden_dim, num_heads, dropout)
        self.ln2 = nn.LayerNorm(hidden_dim)
        self.ffn = nn.Sequential(nn.Linear(hidden_dim, ffn_mult * hidden_dim), nn.GELU(), Dropout(dropout),
                                 nn.Linear(ffn_mult * hidden_dim, hidden_dim))
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """(B, L, D) -> (B, L, D); ``last_only``: only the last position's output, (B, 1, D)."""
        x = (x[:, -1:] if last_only else x) + self.drop(self.attn(self.ln1(x), mask, last_only))  # (B, Lq, D)
        return x + self.drop(self.ffn(self.ln2(x)))  # (B, Lq, D)


class SASRecBlock(nn.Module):
    """The block layout of SASRec's original code (Kang & McAuley's TensorFlow release and its
    PyTorch port): only the queries are layer-normed, the attention residual starts from the normed
    queries, the attention output has no dropout of its own (its probabilities do), and the
    feed-forward part is ``LN`` then ``x + Drop(W2 Drop(ReLU(W1 x)))``::

        q = LN1(x);  x = q + Attn(q, keys=x, values=x);  x = LN2(x);  x = x + FFN(x)
    """

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float, ffn_mult: int = 1) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ln1 = nn.LayerNorm(hidden_dim)
        self.q = nn.Linear(hidden_dim, hidden_dim)
        self.kv = nn.Linear(hidden_dim, 2 * hidden_dim)
        self.out = nn.Linear(hidden_dim, hidden_dim)
        self.attn_dropout = dropout
        self.ln2 = nn.LayerNorm(hidden_dim)
        self.ffn = nn.Sequential(nn.Linear(hidden_dim, ffn_mult * hidden_dim), Dropout(dropout), nn.ReLU(),
                                 nn.Linear(ffn_mult * hidden_dim, hidden_dim), Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """(B, L, D) -> (B, L, D); ``last_only``: only the last position's output, (B, 1, D)."""
        B, L, D = x.shape
        Dh = D // self.num_heads
        q_in = self.ln1(x[:, -1:] if last_only else x)  # (B, Lq, D)
        Lq = q_in.shape[1]
        q = self.q(q_in).view(B, Lq, self.num_heads, Dh).transpose(1, 2)  # (B, H, Lq, Dh)
        k, v = self.kv(x).view(B, L, 2, self.num_heads, Dh).permute(2, 0, 3, 1, 4)  # 2x (B, H, L, Dh)
        y = attend(q, k, v, mask[:, :, -1:] if last_only else mask, self.attn_dropout if self.training else 0.0,
                   self.out)  # (B, Lq, D)
        x = self.ln2(q_in + y)  # (B, Lq, D)
        return x + self.ffn(x)  # (B, Lq, D)


BLOCKS = {"pre_norm": TransformerBlock, "sasrec": SASRecBlock}
"""``model.block`` names -> block classes."""


class TransformerEncoder(nn.Module):
    """A stack of blocks (:data:`BLOCKS`) with a final layer norm."""

    def __init__(self, hidden_dim: int, num_layers: int, num_heads: int, dropout: float, ffn_mult: int = 1,
                 block: str = "pre_norm") -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; expected one of {', '.join(BLOCKS)}")
        self.blocks = nn.ModuleList(BLOCKS[block](hidden_dim, num_heads, dropout, ffn_mult)
                                    for _ in range(num_layers))
        self.ln = nn.LayerNorm(hidden_dim)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """(B, L, D) -> (B, L, D); ``last_only``: the last position only, (B, 1, D), whose last block
        then computes one query per sequence (what full-ranking evaluation needs)."""
        mask = attention_mask(padding_mask)  # (B, 1, L, L)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, last_only and i == len(self.blocks) - 1)  # (B, L, D); (B, 1, D) at the end
        return self.ln(x)


def relative_positions(padding_mask: torch.Tensor) -> torch.Tensor:
    """Position of each real item counted from the first real item of the window.

    Counting from the start (not from the left edge of the padded window) makes outputs
    independent of the amount of left padding, and position ``t`` depends only on items
    ``<= t`` (counting from the end would reveal how many items follow). (B, L) -> (B, L)
    """
    return (padding_mask.long().cumsum(dim=1) - 1).clamp(min=0)


def position_ids(padding_mask: torch.Tensor, scheme: str) -> torch.Tensor:
    """Positional-embedding index of each position, (B, L) -> (B, L).

    ``from_start``: :func:`relative_positions`. ``from_end``: how many real items follow (the most
    recent item is 0), which is what SASRec's original code gets from its right-aligned fixed window
    (the most recent item always sits in the last slot). Both ignore the amount of left padding;
    ``from_end`` makes position t see how many items follow it (their count, never their identity).
    """
    if scheme == "from_start":
        return relative_positions(padding_mask)
    if scheme == "from_end":
        return (padding_mask.long().flip(1).cumsum(dim=1).flip(1) - 1).clamp(min=0)
    raise ValueError(f"unknown position scheme {scheme!r}; expected 'from_start' or 'from_end'")
