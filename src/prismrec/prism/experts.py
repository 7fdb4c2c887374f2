"""Interaction Expert Layer (PAPER.md Eq. 1): E experts with identical architecture and
separate parameters, each an MLP over the concatenated projected modalities.

All experts run in one batched einsum per layer instead of E separate small matmuls.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..models.dropout import Dropout

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh}


def expert_names(modalities: list[str], drop: tuple[str, ...] = ()) -> list[str]:
    """``unique_<m>`` for every modality, then ``synergy`` and ``redundancy``, minus ``drop``."""
    names = [f"unique_{m}" for m in modalities] + ["synergy", "redundancy"]
    unknown = [d for d in drop if d not in names]
    if unknown:
        raise ValueError(f"model.prism.drop_experts: no expert {unknown}; experts are {names}")
    kept = [n for n in names if n not in drop]
    if not kept:
        raise ValueError("model.prism.drop_experts removes every expert")
    return kept


class InteractionExperts(nn.Module):
    """E parallel MLPs: (..., in_dim) -> (..., E, out_dim)."""

    def __init__(self, names: list[str], in_dim: int, hidden: int, out_dim: int, layers: int = 2,
                 activation: str = "gelu", dropout: float = 0.0) -> None:
        super().__init__()
        self.names = list(names)
        dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        E = len(names)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            bound = 1.0 / math.sqrt(d_in)  # same init range as nn.Linear
            self.weights.append(nn.Parameter(torch.empty(E, d_in, d_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(E, d_out).uniform_(-bound, bound)))
        self.act = ACTIVATIONS[activation]()
        self.dropout = Dropout(dropout)

    @property
    def num_experts(self) -> int:
        return len(self.names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.einsum("...i,eio->...eo", x, self.weights[0]) + self.biases[0]  # (..., E, H)
        for w, b in zip(self.weights[1:], self.biases[1:]):
            h = self.dropout(self.act(h))  # dropout on the hidden activations (actually applied)
            h = torch.einsum("...ei,eio->...eo", h, w) + b  # (..., E, H or D)
        return h  # (..., E, D)

    def single(self, x: torch.Tensor, e: int) -> torch.Tensor:
        """Expert ``e`` alone: (..., in_dim) -> (..., D). Same computation as ``forward(x)[..., e, :]``."""
        h = x @ self.weights[0][e] + self.biases[0][e]
        for w, b in zip(self.weights[1:], self.biases[1:]):
            h = self.dropout(self.act(h)) @ w[e] + b[e]
        return h
