"""InDiRec — Qu & Nobuhara, "Intent-aware Diffusion with Contrastive Learning for Sequential
Recommendation", SIGIR 2025.

A SASRec encoder (subclassed, not copied) plus three training-only additions. Scoring is SASRec's:
the sequence representation at the last position times the item table; clustering, diffusion and
the contrastive loss change only how the encoder is trained (the paper scores with the sequence
representation), so ``full_sort_scores`` is exactly SASRec's.

**Prefix augmentation = all-position training.** The paper trains on every prefix of every training
sequence with CE at the prefix's last position. Our encoder is causal and counts positions from the
first real item, so the hidden state at position t of a training window *is* the last-position
state of the prefix ending at t (the conformance suite checks causality and left-padding
invariance). The standard all-position CE over the train tensors is therefore the prefix-augmented
loss, each prefix weighted equally, at the cost of one encoder pass per user instead of one per
prefix. Difference: only the last ``max_seq_len + 1`` training items of a user form the window, so for
users with longer training histories (0.6% of Beauty users at max_seq_len 50) earlier prefixes are not
trained and prefixes inside the window see no items before it.

**Intent clustering** (``on_epoch_start``). Once per epoch all training prefixes are encoded (no grad,
eval mode, batched) and K-means (K = ``num_intents``, k-means++ init; ``kmeans.py``) runs on their
representations; each prefix gets an intent.

**Intent-guided conditional diffusion** (``diffusion.py``). For each training prefix, x_0 is the
embedding of its target item (stop-gradient: the diffusion models the item space, it does not move it),
L2-normalised and scaled to norm sqrt(D): the fixed β schedule assumes data of unit scale per
dimension, while item embeddings start at std 0.02 (noise would swamp them at every step); the
InfoNCE compares directions only, so the scale of the generated view does not matter;
the guidance s is the epoch-start representation of *another* prefix of the same intent, drawn anew at
every step for every prefix (its own intent, never the batch's first). L_diff is the x̂0-prediction MSE
(with s -> learned null w.p. ``null_guidance_prob``).

**Contrastive learning.** For up to ``cl_max_samples`` prefixes of the batch, an intent-aware view
x̂0 is generated from noise guided by s (guidance weight w, ``sample_steps`` respaced DDPM steps, no
gradient through the sampling chain) and an InfoNCE pairs each prefix's representation with its own
view; other prefixes with the same target item are masked out as false negatives.

Total: L_rec + L_diff + cl_weight * L_cl (+ the item input's auxiliary losses, e.g. PRISM's).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..backbone_config import InDiRecConfig
from ..config import ConfigError, ModelConfig
from ..data.sequences import PAD_ID
from ..data.split import trim_left_padding
from .base import LossOutput, TrainBatch
from .diffusion import GuidedDiffusion
from .item_input import ItemInput
from .kmeans import kmeans
from .registry import register_backbone
from .sasrec import SASRec

log = logging.getLogger(__name__)


@dataclass
class IntentState:
    """One epoch's intent assignment of every training prefix (all tensors on the training device)."""

    prefix_index: torch.Tensor  # (U, L) row of the prefix ending at each train position, -1 where none
    bank: torch.Tensor  # (Np, D) representation of each prefix at the start of the epoch
    labels: torch.Tensor  # (Np,) intent of each prefix
    order: torch.Tensor  # (Np,) prefixes sorted by intent
    starts: torch.Tensor  # (K,) first slot of each intent in ``order``
    counts: torch.Tensor  # (K,) prefixes per intent
    rank: torch.Tensor  # (Np,) slot of each prefix within its intent's run of ``order``

    @classmethod
    def from_labels(cls, prefix_index: torch.Tensor, bank: torch.Tensor, labels: torch.Tensor, k: int
                    ) -> "IntentState":
        order = torch.argsort(labels, stable=True)  # (Np,)
        counts = torch.bincount(labels, minlength=k)  # (K,)
        starts = torch.cumsum(counts, 0) - counts  # (K,)
        rank = torch.empty_like(labels)
        rank[order] = torch.arange(len(labels), device=labels.device) - starts[labels[order]]
        return cls(prefix_index, bank, labels, order, starts, counts, rank)

    def partners(self, prefixes: torch.Tensor) -> torch.Tensor:
        """A uniformly drawn *other* prefix of the same intent for each prefix (itself only if it is
        alone in its intent). (P,) -> (P,)"""
        intent = self.labels[prefixes]  # (P,)
        count, own = self.counts[intent], self.rank[prefixes]  # (P,), (P,)
        r = (torch.rand(prefixes.shape, device=prefixes.device) * (count - 1)).long()  # 0..count-2
        r = torch.where(count > 1, r + (r >= own).long(), own)  # skip own slot
        return self.order[self.starts[intent] + r]


def info_nce(anchors: torch.Tensor, views: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE over cosine similarities; pair i is (anchors[i], views[i]); pairs j != i with
    the same target item are not used as negatives (false negatives). (M, D), (M, D), (M,) -> ()"""
    a, v = F.normalize(anchors, dim=-1), F.normalize(views, dim=-1)  # (M, D) x2
    logits = a @ v.T / temperature  # (M, M)
    eye = torch.eye(len(targets), dtype=torch.bool, device=targets.device)
    false_neg = (targets[:, None] == targets[None, :]) & ~eye  # (M, M)
    logits = logits.masked_fill(false_neg, float("-inf"))
    labels = torch.arange(len(targets), device=targets.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


class InDiRec(SASRec):
    def __init__(self, cfg: ModelConfig, item_input: ItemInput, num_items: int, max_seq_len: int, loss: str = "ce",
                 indirec: InDiRecConfig | None = None) -> None:
        super().__init__(cfg, item_input, num_items, max_seq_len, loss)
        self.indirec = indirec = indirec or InDiRecConfig()
        self.diffusion = GuidedDiffusion(cfg.hidden_dim, indirec.diffusion_steps, indirec.beta_start,
                                         indirec.beta_end, indirec.denoiser_hidden, indirec.null_guidance_prob)
        self.intents: IntentState | None = None  # per-epoch state, rebuilt each epoch, never saved

    # ------------------------------------------------------------------ per-epoch intent clustering
    @torch.no_grad()
    def encode_prefixes(self, train_inputs: torch.Tensor, train_targets: torch.Tensor, device: torch.device,
                        progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Representation of every training prefix (the hidden state at each position with a target).

        Returns prefix_index (U, L) (-1 where no prefix ends) and bank (Np, D), both on ``device``.
        """
        has = train_targets != PAD_ID  # (U, L)
        prefix_index = torch.full(has.shape, -1, dtype=torch.long)
        prefix_index[has] = torch.arange(int(has.sum()))
        bank = torch.empty(int(has.sum()), self.item_input.hidden_dim, device=device)
        order = torch.argsort(has.sum(1), stable=True)  # similar lengths together: less padding per batch
        bs = self.indirec.cluster_batch_size
        for lo in tqdm(range(0, len(order), bs), desc="intent clustering: encode", leave=False,
                       disable=None if progress else True):
            rows = order[lo:lo + bs]
            seq, tgt, idx = trim_left_padding(train_inputs[rows], train_targets[rows], prefix_index[rows])
            hidden = self.forward(seq.to(device))  # (b, L', D)
            m = (tgt != PAD_ID).to(device)  # (b, L')
            bank[idx.to(device)[m]] = hidden[m]
        return prefix_index.to(device), bank

    def on_epoch_start(self, epoch: int, data, device: torch.device, progress: bool = True) -> None:
        """Encode every training prefix and cluster the representations into intents (K-means)."""
        super().on_epoch_start(epoch, data, device, progress)
        start = time.perf_counter()
        was_training = self.training
        self.eval()  # representations without dropout
        try:
            prefix_index, bank = self.encode_prefixes(data.train_inputs, data.train_targets, device, progress)
        finally:
            self.train(was_training)
        if bank.shape[0] == 0:
            self.intents = None
            return
        k = min(self.indirec.num_intents, bank.shape[0])
        result = kmeans(bank, k, self.indirec.kmeans_iters, self.indirec.kmeans_tol,
                        max_points_per_centroid=self.indirec.kmeans_max_points_per_centroid, desc="intent k-means",
                        progress=None if progress else False)
        self.intents = IntentState.from_labels(prefix_index, bank, result.labels, k)
        log.log(logging.INFO if progress else logging.DEBUG,
                "epoch %d: %d prefixes -> %d intents (%d k-means iterations, inertia %.4g) in %.1fs", epoch,
                bank.shape[0], k, result.iterations, result.inertia, time.perf_counter() - start)

    # ------------------------------------------------------------------ training
    def intent_guidance(self, batch: TrainBatch, mask: torch.Tensor) -> torch.Tensor:
        """Guidance s for every training position of the batch: the epoch-start representation of
        another prefix with the same intent; the null embedding where no intent is known. -> (P, D)"""
        P = int(mask.sum())
        null = self.diffusion.null_guidance.expand(P, -1)  # (P, D)
        state = self.intents
        if state is None or batch.user_index is None or batch.item_seq.shape[1] > state.prefix_index.shape[1]:
            return null
        width = batch.item_seq.shape[1]  # the batch may be trimmed of leading all-padding columns
        prefixes = state.prefix_index[batch.user_index][:, -width:][mask]  # (P,)
        known = prefixes >= 0
        guidance = state.bank[state.partners(prefixes.clamp_min(0))]  # (P, D)
        return torch.where(known[:, None], guidance, null)

    def training_loss(self, batch: TrainBatch) -> LossOutput:
        cfg = self.indirec
        padding_mask = batch.item_seq != PAD_ID
        hidden = self.forward(batch.item_seq)  # (B, L, D)
        rec = self.recommendation_loss(hidden, batch)  # CE at every prefix's last position
        aux = self.item_input.auxiliary_losses(self._aux_context(batch, padding_mask))

        mask = batch.targets != PAD_ID  # (B, L)
        h = hidden[mask]  # (P, D) representation of each prefix
        targets = batch.targets[mask]  # (P,)
        with torch.no_grad():  # a fixed target: only the targets' rows, no graph (content is computed per row)
            x0 = self.item_input.output_embeddings(targets)  # (P, D) target-item representations
        x0 = F.normalize(x0, dim=-1) * x0.shape[-1] ** 0.5  # unit RMS per dimension: the scale DDPM assumes
        guidance = self.intent_guidance(batch, mask)  # (P, D)
        diff = self.diffusion.loss(x0, guidance)

        pick = torch.randperm(len(targets), device=targets.device)[:cfg.cl_max_samples]  # (M,)
        views = self.diffusion.sample(guidance[pick].detach(), cfg.sample_steps, cfg.guidance_weight)  # (M, D)
        cl = info_nce(h[pick], views, targets[pick], cfg.cl_temperature) if len(pick) > 1 else h.sum() * 0

        total = rec + diff + cfg.cl_weight * cl
        if aux:
            total = total + sum(aux.values())
        parts = {"rec": rec, "diff": diff, "cl": cl, **aux}
        return LossOutput(total=total, parts={k: v.detach() for k, v in parts.items()}, rec=rec)


@register_backbone("indirec")
def build_indirec(cfg: ModelConfig, item_input: ItemInput, num_items: int, max_seq_len: int, loss: str) -> InDiRec:
    if cfg.positions != "from_start":
        # position t would see how many items follow it, so its state would not be the prefix's
        raise ConfigError("model.backbone=indirec needs model.positions=from_start: its prefix augmentation "
                          "is all-position training, exact only when position t's state is the prefix "
                          "ending at t's")
    return InDiRec(cfg, item_input, num_items, max_seq_len, loss, cfg.indirec)
