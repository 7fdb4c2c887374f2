"""Vectorised negative sampling for BCE/BPR losses."""
from __future__ import annotations

import torch

from ..data.sequences import PAD_ID


def sample_negatives(history: torch.Tensor, shape: tuple[int, int], num_items: int,
                     generator: torch.Generator | None = None, max_rounds: int = 50) -> torch.Tensor:
    """One negative item per position, uniform over ``1..num_items`` minus the user's history.

    history: (B, H) item ids of each user's training sequence (0 = padding). Returns (B, L).
    Collisions are redrawn (vectorised) until none remain; a user whose history covers every
    item (never the case in practice) keeps a redraw after ``max_rounds``. Never returns
    ``PAD_ID`` or an id outside ``1..num_items``.
    """
    B, L = shape
    neg = torch.randint(1, num_items + 1, (B, L), generator=generator, device=history.device)
    for _ in range(max_rounds):
        clash = (neg.unsqueeze(-1) == history.unsqueeze(1)).any(-1)  # (B, L)
        if not clash.any():
            break
        redraw = torch.randint(1, num_items + 1, (int(clash.sum()),), generator=generator, device=history.device)
        neg[clash] = redraw
    assert int(neg.min()) != PAD_ID
    return neg
