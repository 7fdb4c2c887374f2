"""What a trained PRISM model learned: per-user fusion weights and per-item expert embeddings."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .api import Run


@dataclass
class FusionWeights:
    experts: list[str]
    user_ids: np.ndarray  # (U,)
    last: np.ndarray  # (U, E) weights at each user's most recent position (the next recommendation)
    per_position: np.ndarray | None = None  # (U, L, E) causal weights at every position (0 on padding)
    padding_mask: np.ndarray | None = None  # (U, L)

    def summary(self) -> list[dict]:
        """Mean, std and quartiles of each expert's weight across users."""
        rows = []
        for e, name in enumerate(self.experts):
            w = self.last[:, e]
            q = np.percentile(w, [25, 50, 75])
            rows.append({"expert": name, "mean": float(w.mean()), "std": float(w.std()), "p25": float(q[0]),
                         "median": float(q[1]), "p75": float(q[2]),
                         "top_expert_share": float((self.last.argmax(1) == e).mean())})
        return rows


def _multimodal_input(run: Run):
    mm = run.model.item_input
    if not hasattr(mm, "fusion_weights"):
        raise ValueError("this run has no multimodal item input (train with --set model.prism.enabled=true)")
    return mm


@torch.no_grad()
def fusion_weights(run: Run, split: str = "test", per_position: bool = False, batch_size: int = 1024
                   ) -> FusionWeights:
    """Fusion weights of every user for the given split's input sequences."""
    mm = _multimodal_input(run)
    run.model.eval()
    inputs = run.data.split(split).inputs
    last, full = [], []
    for lo in range(0, len(inputs), batch_size):
        w = mm.fusion_weights(inputs[lo:lo + batch_size].to(run.device))  # (B, L, E) or None
        if w is None:
            raise ValueError(f"method {run.config.model.prism.method!r} has no fusion weights (PRISM only)")
        last.append(w[:, -1].cpu())
        if per_position:
            full.append((w * (inputs[lo:lo + batch_size, :, None].to(w.device) != 0)).cpu())
    return FusionWeights(experts=mm.expert_names, user_ids=run.dataset.sequences.user_ids,
                         last=torch.cat(last).numpy(),
                         per_position=torch.cat(full).numpy() if per_position else None,
                         padding_mask=(inputs != 0).numpy() if per_position else None)


@torch.no_grad()
def expert_embeddings(run: Run, items: np.ndarray | None = None, batch_size: int = 4096) -> tuple[list[str], np.ndarray]:
    """Per-item expert embeddings (n, E, D) for ``items`` (default: every item 1..N)."""
    mm = _multimodal_input(run)
    run.model.eval()
    items = np.arange(1, run.dataset.num_items + 1) if items is None else np.asarray(items)
    out = []
    for lo in range(0, len(items), batch_size):
        e = mm.expert_embeddings(torch.as_tensor(items[lo:lo + batch_size], device=run.device))
        if e is None:
            raise ValueError(f"method {run.config.model.prism.method!r} has no experts (PRISM only)")
        out.append(e.cpu())
    return mm.expert_names, torch.cat(out).numpy()
