"""Interaction losses (PAPER.md Eqs. 5-9), generalised to M >= 2 modalities.

``full``: an expert's output on the full input; ``views[m]``: its output on the view that keeps
only modality ``m``. d = 1 - cos (cosine distance).

* unique expert of modality m (Eqs. 5-6): Triplet(full, views[m], views[o]) averaged over o != m:
  the expert should stay close to what modality m alone gives and away from the others.
* synergy (Eq. 7): mean_m cos(full, views[m]), minimised: the output should need all modalities.
* redundancy (Eq. 8): 1 - mean_m cos(full, views[m]): any single modality should suffice.

Not in the paper: ``transition_loss``, an InfoNCE that asks every expert's item embedding to pick out
the next item of the training histories (``model.prism.lambda_transition``), ``id_alignment_loss``,
one that asks it to pick out the item's own ID embedding (``model.prism.lambda_id_align``), and
``fusion_balance_loss``, a load-balancing term on the fusion weights (``model.prism.lambda_fusion_balance``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.sequences import PAD_ID


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 1.0 - F.cosine_similarity(a, b, dim=-1, eps=1e-8)


def triplet_terms(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float) -> torch.Tensor:
    """max(0, m + d(a, p) - d(a, n)) with cosine distance, per row. (P, D) each -> (P,)"""
    return F.relu(margin + cosine_distance(anchor, positive) - cosine_distance(anchor, negative))


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float) -> torch.Tensor:
    """:func:`triplet_terms` averaged. (P, D) each -> ()"""
    return triplet_terms(anchor, positive, negative, margin).mean()


def masked_mean(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``keep`` (same shape; None = all); 0 when none is kept."""
    if keep is None:
        return x.mean()
    keep = keep.to(x.dtype)
    return (x * keep).sum() / keep.sum().clamp_min(1.0)


def unique_loss(full: torch.Tensor, views: torch.Tensor, m: int, margin: float,
                present: torch.Tensor | None = None) -> torch.Tensor:
    """full (P, D), views (M, P, D) -> () for the unique expert of modality m. ``present`` (M, P)
    bool: a triplet whose positive or negative view keeps a missing modality is left out."""
    others = [o for o in range(views.shape[0]) if o != m]
    if present is None:
        return torch.stack([triplet_loss(full, views[m], views[o], margin) for o in others]).mean()
    terms = torch.stack([triplet_terms(full, views[m], views[o], margin) for o in others])  # (M - 1, P)
    return masked_mean(terms, present[m] & present[others])  # (M - 1, P) kept


def synergy_loss(full: torch.Tensor, views: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
    """mean over views and items of cos(full, view); ``present`` (M, P) leaves out the views of missing modalities."""
    return masked_mean(F.cosine_similarity(full.unsqueeze(0), views, dim=-1, eps=1e-8), present)


def redundancy_loss(full: torch.Tensor, views: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
    return 1.0 - synergy_loss(full, views, present)


def centered(full: torch.Tensor, views: torch.Tensor, present: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """``full`` (P, X) and ``views`` (M, P, X) minus their means over the P rows (a view's over the rows
    whose kept modality is ``present`` (M, P), where given): what is specific to each row."""
    full = full - full.mean(dim=0, keepdim=True)
    if present is None:
        return full, views - views.mean(dim=1, keepdim=True)
    w = present.to(views.dtype).unsqueeze(-1)  # (M, P, 1)
    return full, views - (views * w).sum(dim=1, keepdim=True) / w.sum(dim=1, keepdim=True).clamp_min(1.0)


def interaction_losses(full: torch.Tensor, views: torch.Tensor, experts: list[str], modalities: list[str],
                       weights: dict[str, float], margin: float,
                       present: torch.Tensor | None = None, center: bool = False) -> dict[str, torch.Tensor]:
    """Weighted loss per expert (Eq. 9 sums them). full (P, E, X), views (M, P, E, X). ``present``
    (M, P) bool, whether item p has modality m (None = every item has every modality): the view that
    keeps a missing modality holds only its learned "missing" embedding, so it enters no loss (the
    paper leaves missing modalities open; PAPER.md §6). ``center`` (``loss_centering``, not in the
    paper): the synergy and redundancy cosines compare the outputs minus their means over the P rows."""
    out: dict[str, torch.Tensor] = {}
    for e, name in enumerate(experts):
        lam = weights.get(name, 0.0)
        if lam == 0.0:
            continue
        f, v = full[:, e], views[:, :, e]  # (P, X), (M, P, X)
        if center and not name.startswith("unique_"):
            f, v = centered(f, v, present)
        if name.startswith("unique_"):
            loss = unique_loss(f, v, modalities.index(name[len("unique_"):]), margin, present)
        elif name == "synergy":
            loss = synergy_loss(f, v, present)
        else:
            loss = redundancy_loss(f, v, present)
        out[f"L_{name}"] = lam * loss
    return out


def consecutive_pairs(item_seq: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows in ``items`` (sorted distinct ids, (U,)) of every pair of consecutive real items of the
    left-padded histories ``item_seq`` (B, L): (first (P,), second (P,))."""
    a, b = item_seq[:, :-1], item_seq[:, 1:]
    real = (a != PAD_ID) & (b != PAD_ID)
    return torch.searchsorted(items, a[real]), torch.searchsorted(items, b[real])


def transition_loss(outputs: torch.Tensor, first: torch.Tensor, second: torch.Tensor,
                    temperature: float, candidates: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE per expert: the embedding of each pair's first item should pick out its second among
    the candidate rows. outputs (U, E, D) per distinct item; first, second (P,) rows; ``candidates``
    (U,) bool, the rows that may be picked (None = all; pass ``items != PAD_ID`` so that the padding
    row is never a negative). Mean over pairs and experts. A pair's own first item is not a
    candidate (unless it is also the second: a repeat)."""
    z = F.normalize(outputs, dim=-1)  # (U, E, D)
    logits = torch.einsum("ped,ued->epu", z[first], z) / temperature  # (E, P, U)
    excluded = F.one_hot(first, z.shape[0]).bool() & (first != second).unsqueeze(-1)  # (P, U)
    if candidates is not None:
        excluded = excluded | ~candidates  # (P, U)
    logits = logits.masked_fill(excluded, float("-inf"))
    E = logits.shape[0]
    return F.cross_entropy(logits.flatten(0, 1), second.repeat(E))


def id_alignment_loss(outputs: torch.Tensor, id_rows: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE per expert: each item's expert embedding should pick out its own ID embedding among the
    ID embeddings of all rows. outputs (P, E, D), id_rows (P, D) (detached by the caller) -> () mean
    over items and experts."""
    z = F.normalize(outputs, dim=-1)  # (P, E, D)
    t = F.normalize(id_rows, dim=-1)  # (P, D)
    logits = torch.einsum("ped,qd->epq", z, t) / temperature  # (E, P, P)
    E, P = logits.shape[0], logits.shape[1]
    return F.cross_entropy(logits.flatten(0, 1), torch.arange(P, device=logits.device).repeat(E))


def fusion_balance_loss(weights: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation of the experts' importance (the mixture-of-experts load-balancing
    term of Shazeer et al. 2017): with w_bar_e the mean weight of expert e over the real positions,
    E * sum_e w_bar_e^2 - 1, which is 0 when every expert gets 1/E on average and E - 1 when one expert
    takes everything. It constrains only the average: each user may still put its weight on one expert.
    weights (B, L, E), padding_mask (B, L) -> ()"""
    w = weights[padding_mask]  # (P, E)
    if w.shape[0] == 0:
        return weights.sum() * 0.0
    importance = w.mean(dim=0)  # (E,)
    return importance.shape[0] * (importance ** 2).sum() - 1.0
