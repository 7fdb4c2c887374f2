"""Modality masking (PAPER.md §2): unimodal views of the projected modalities.

View ``m`` keeps modality ``m`` and replaces every other modality by ``random`` vectors
(Gaussian with the replaced modality's per-dimension batch mean and std, drawn fresh each
call), ``zero`` vectors, or the replaced modality's batch ``mean``. Statistics are detached:
masking is an input perturbation, not something to learn through.
"""
from __future__ import annotations

import torch


def replacement(modal: torch.Tensor, strategy: str, real: torch.Tensor | None = None) -> torch.Tensor:
    """Replacement values for every modality. (P, M, D) -> (P, M, D). ``real``: the rows the statistics
    are taken over, (P,) bool for every modality alike (e.g. not padding), or (P, M) bool per modality
    (e.g. the items that have it: a missing modality's placeholder embedding is no sample of it);
    None = all rows."""
    if strategy == "zero":
        return torch.zeros_like(modal)
    if strategy not in ("mean", "random"):
        raise ValueError(f"unknown masking strategy {strategy!r}")
    if real is not None and real.dim() == 2:
        mean, std = _masked_stats(modal.detach(), real)
    else:
        stats = modal.detach() if real is None else modal.detach()[real]
        mean = stats.mean(dim=0, keepdim=True)  # (1, M, D)
        std = (stats.std(dim=0, unbiased=False, keepdim=True) if stats.shape[0] > 1 and strategy == "random"
               else torch.ones_like(mean))
    if strategy == "mean":
        return mean.expand_as(modal)
    return mean + std * torch.randn_like(modal)


def _masked_stats(modal: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-modality mean and (biased) std over the rows where ``rows`` (P, M) is True; std 1 for a
    modality with fewer than 2 such rows, mean 0 for one with none. -> (1, M, D) each"""
    w = rows.to(modal.dtype).unsqueeze(-1)  # (P, M, 1)
    n = w.sum(dim=0, keepdim=True)  # (1, M, 1)
    mean = (modal * w).sum(dim=0, keepdim=True) / n.clamp_min(1.0)
    var = (((modal - mean) ** 2) * w).sum(dim=0, keepdim=True) / n.clamp_min(1.0)
    std = torch.where(n > 1, var.sqrt(), torch.ones_like(var))
    return mean, std


def keep_one_modality(modal: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """View m keeps modality m and takes every other modality from ``fill`` (broadcastable to
    (P, M, D)). (P, M, D) -> (M, P, M, D)"""
    M = modal.shape[1]
    keep = torch.eye(M, dtype=torch.bool, device=modal.device)[:, None, :, None]  # (M, 1, M, 1)
    return torch.where(keep, modal.unsqueeze(0), fill.unsqueeze(0))


def unimodal_views(modal: torch.Tensor, strategy: str, real: torch.Tensor | None = None) -> torch.Tensor:
    """All M unimodal views at once. (P, M, D) -> (M, P, M, D); view m keeps only modality m.
    ``real`` (P,) bool: rows the masking statistics come from (padding must not count)."""
    return keep_one_modality(modal, replacement(modal, strategy, real))
