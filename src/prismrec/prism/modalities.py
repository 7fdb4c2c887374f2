"""Frozen per-item modality features -> projected per-position embeddings.

Features arrive as tensors (row ``i`` = item ``i``, row 0 = padding) and are kept as
non-persistent buffers: they come from the dataset, not from the checkpoint. Each modality
gets its own linear projection to the hidden size (paper's code: one Linear per modality).
An item whose modality is missing gets a learned "missing" embedding for that modality,
never its (zero) feature row and never random noise. The ``representation`` interaction losses
leave out the masked views that keep a missing modality (they would compare an expert's output
with what that placeholder alone gives); ``loss_on=prediction``'s views are per position and keep them.
"""
from __future__ import annotations

import torch
from torch import nn


def normalise_features(values: torch.Tensor, present: torch.Tensor, how: str) -> torch.Tensor:
    """Normalise once, with statistics over present real items only. (N + 1, d) -> (N + 1, d)"""
    values = values.float().clone()
    rows = present.clone()
    rows[0] = False
    if how == "standardize" and rows.any():
        mu = values[rows].mean(0)
        sd = values[rows].std(0, unbiased=False).clamp_min(1e-6)
        values = (values - mu) / sd
    elif how == "l2":
        values = values / values.norm(dim=1, keepdim=True).clamp_min(1e-12)
    values[~rows] = 0.0  # padding and missing rows carry no content
    return values


class ModalityEncoder(nn.Module):
    def __init__(self, features: dict[str, tuple[torch.Tensor, torch.Tensor]], hidden_dim: int,
                 norm: str = "standardize") -> None:
        super().__init__()
        if len(features) < 2:
            raise ValueError(f"the multimodal item input needs at least 2 modalities, got {list(features)}")
        self.names = list(features)
        self.projections = nn.ModuleList()
        for i, (name, (values, present)) in enumerate(features.items()):
            normalised = normalise_features(values, present, norm)
            self.register_buffer(f"values_{i}", normalised, persistent=False)
            rows = present.bool().clone()
            rows[0] = False
            self.register_buffer(f"mean_{i}", normalised[rows].mean(dim=0) if rows.any() else normalised[0],
                                 persistent=False)  # mean feature row over present items (fixed)
            self.register_buffer(f"present_{i}", present.bool().clone(), persistent=False)
            self.projections.append(nn.Linear(values.shape[1], hidden_dim))
        self.missing = nn.Parameter(torch.randn(len(self.names), hidden_dim) * 0.02)  # (M, D)
        #: whether some real item lacks some modality (fixed by the data)
        self.any_missing = any(not bool(present.bool()[1:].all()) for _, present in features.values())

    @property
    def num_modalities(self) -> int:
        return len(self.names)

    def reference(self) -> torch.Tensor:
        """(M, D): each modality's projection of its mean feature row over present items (the
        reference point of ``synergy_contrast``; 0 before projection for standardised features)."""
        return torch.stack([proj(getattr(self, f"mean_{i}")) for i, proj in enumerate(self.projections)])  # (M, D)

    def presence(self, items: torch.Tensor) -> torch.Tensor | None:
        """(P,) item ids -> (M, P) bool, whether each item has each modality; None when every real
        item has every modality (the common case, which then needs no masking)."""
        if not self.any_missing:
            return None
        return torch.stack([getattr(self, f"present_{i}")[items] for i in range(len(self.names))])  # (M, P)

    def forward(self, item_seq: torch.Tensor) -> torch.Tensor:
        """(B, L) item ids -> (B, L, M, D) projected modality embeddings."""
        out = []
        for i, proj in enumerate(self.projections):
            x = proj(getattr(self, f"values_{i}")[item_seq])  # (B, L, D)
            has = getattr(self, f"present_{i}")[item_seq].unsqueeze(-1)  # (B, L, 1)
            out.append(torch.where(has, x, self.missing[i]))
        return torch.stack(out, dim=-2)  # (B, L, M, D)
