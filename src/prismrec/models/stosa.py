"""STOSA — Fan et al., "Sequential Recommendation via Stochastic Self-Attention", WWW 2022.

Every item is a diagonal Gaussian: a mean embedding (``self.item_input``, the swappable item-input
path) and a covariance embedding (``self.cov_input``, kept positive by ELU + 1). Positions have mean
and covariance embeddings too. Wasserstein self-attention blocks (``stochastic_attention.py``)
turn the sequence into a Gaussian user state at every position; an item's score is the negative
2-Wasserstein distance between the user Gaussian and the item Gaussian (lower distance = better).

Hidden-state layout: ``forward`` returns ``concat([mean, cov], -1)`` of shape (B, L, 2D), the cov
half already positive. Every scoring method of the base contract (``score``, ``real_item_scores``,
``candidate_scores``, ``score_items``) takes this layout and returns ``-W2²``, so the shared
evaluator ranks by distance through ``full_sort_scores`` (B, N + 1) unchanged.

Loss (§3.4): BPR on distances with one sampled negative per position plus the positive-vs-negative
regulariser, ``-log σ(d(u, neg) - d(u, pos)) + pvn_weight · max(0, d(u, pos) - d(pos, neg))``.
STOSA always uses its own loss (``model.stosa.loss``); ``train.loss`` is ignored.

With PRISM: the covariance stream's item input is ``item_input.sibling(IDEmbedding(...))``, so the
fused multimodal embedding reaches both streams through shared experts and fusion, and the two
streams' auxiliary (interaction) losses are averaged (``model.stosa.aux_streams``), as in the PRISM
authors' code. ``model.stosa.content_streams=mean`` (not in the paper) gives the covariance stream
plain ID embeddings instead: content shapes the Gaussians' means only. The public STOSA code's
variable-name typo that makes the mean stream skip attention is not reproduced: both streams go
through Wasserstein attention.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone_config import STOSAConfig
from ..config import ConfigError, ModelConfig
from ..data.sequences import PAD_ID
from .base import LossOutput, SequentialRecommender, TrainBatch, closing_loss
from .dropout import Dropout
from .item_input import AuxContext, IDEmbedding, ItemInput
from .ops import gather_rows
from .registry import register_backbone
from .stochastic_attention import (StochasticBlock, elu_plus_one, pairwise_wasserstein_distance,
                                   wasserstein_distance)
from .transformer import attention_mask, position_ids

log = logging.getLogger(__name__)


def split_gaussian(hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 2D) -> mean (..., D), cov (..., D)"""
    return hidden.chunk(2, dim=-1)


class STOSA(SequentialRecommender):
    supports_item_bias = False  # scores are -W2 distances (model.item_bias is refused)

    def __init__(self, cfg: ModelConfig, item_input: ItemInput, num_items: int, max_seq_len: int,
                 stosa: STOSAConfig | None = None) -> None:
        stosa = stosa or STOSAConfig()
        if item_input.widens_output:
            raise ConfigError("STOSA scores by Wasserstein distance to each item's Gaussian, so it cannot use "
                              "model.prism.output_fusion=user (a widened dot-product query); use output_fusion=items")
        super().__init__(item_input, num_items, max_seq_len, "ce")
        self.stosa = stosa
        self.loss_name = stosa.loss  # STOSA's own loss, whatever train.loss says
        self.needs_negatives = stosa.loss == "bpr_pvn"
        D = cfg.hidden_dim
        cov_ids = IDEmbedding(num_items, D)
        # covariance stream: shares PRISM's parts (content on both streams), or IDs only
        self.cov_input = item_input.sibling(cov_ids) if stosa.content_streams == "both" else cov_ids
        self.positions = cfg.positions
        self.mean_position = nn.Embedding(max_seq_len, D)
        self.cov_position = nn.Embedding(max_seq_len, D)
        for table in (self.mean_position, self.cov_position):
            nn.init.normal_(table.weight, std=0.02)
        self.mean_ln = nn.LayerNorm(D)
        self.cov_ln = nn.LayerNorm(D)
        self.emb_dropout = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(StochasticBlock(D, cfg.num_heads, cfg.dropout, cfg.ffn_mult)
                                    for _ in range(cfg.num_layers))

    # ------------------------------------------------------------------ encoder
    def encode_inputs(self, inputs: torch.Tensor, item_seq: torch.Tensor,
                      cov_inputs: torch.Tensor | None = None) -> torch.Tensor:
        """Mean-stream inputs (B, L, D) [+ covariance-stream inputs] -> Gaussian states (B, L, 2D)."""
        if cov_inputs is None:
            cov_inputs = self.cov_input(item_seq)  # (B, L, D)
        padding_mask = item_seq != PAD_ID  # (B, L)
        positions = position_ids(padding_mask, self.positions)  # (B, L)
        keep = padding_mask.unsqueeze(-1)  # (B, L, 1) padding stays zero
        mean = self.emb_dropout(self.mean_ln(inputs + self.mean_position(positions))) * keep  # (B, L, D)
        cov = self.emb_dropout(self.cov_ln(cov_inputs + self.cov_position(positions))) * keep  # (B, L, D)
        mask = attention_mask(padding_mask)  # (B, 1, L, L)
        for block in self.blocks:
            mean, cov = block(mean, cov, mask)  # (B, L, D) x2
        return torch.cat([mean, elu_plus_one(cov)], dim=-1)  # (B, L, 2D)

    # ------------------------------------------------------------------ item Gaussians and scores
    def item_gaussians(self, items: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and positive covariance of ``items`` (any shape), or of every row when None: (..., D) x2"""
        mean, cov = self.item_input.output_embeddings(), self.cov_input.output_embeddings()  # (N + 1, D) x2
        if items is not None:
            mean, cov = gather_rows(mean, items), gather_rows(cov, items)
        return mean, elu_plus_one(cov)

    def _distance_to_table(self, hidden: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        u_mean, u_cov = split_gaussian(hidden)  # (..., D) x2
        lead = u_mean.shape[:-1]
        d = pairwise_wasserstein_distance(u_mean.reshape(-1, u_mean.shape[-1]), u_cov.reshape(-1, u_cov.shape[-1]),
                                          mean, cov)  # (R, C)
        return d.view(*lead, mean.shape[0])  # (..., C)

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        """-W2² to every item (higher = better). (..., 2D) -> (..., N + 1)"""
        return -self._distance_to_table(hidden, *self.item_gaussians())

    def real_item_scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., 2D) -> (..., N); column i = item i + 1"""
        mean, cov = self.item_gaussians()
        return -self._distance_to_table(hidden, mean[1:], cov[1:])

    def candidate_scores(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """hidden (..., 2D), items (C,) -> (..., C)"""
        return -self._distance_to_table(hidden, *self.item_gaussians(items))

    def aux_candidate_scores(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """:meth:`candidate_scores` less their mean over the candidates: the prediction layer that the
        item input's auxiliary losses compare (PRISM's ``loss_on=prediction`` cosines). -W2^2 holds
        -(|mu_h|^2 + |sigma_h|^2), a per-row offset that ranks nothing and that dot-product scores do
        not have; it dominates the score vectors, so every cosine between two predictions was ~1 and
        those losses gave STOSA almost no signal. Centring removes it (and only it, up to a constant
        per row). hidden (..., 2D), items (C,) -> (..., C)"""
        scores = self.candidate_scores(hidden, items)
        return scores - scores.mean(dim=-1, keepdim=True)

    def score_items(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """hidden (..., 2D), items (...) -> (...)"""
        return -wasserstein_distance(*split_gaussian(hidden), *self.item_gaussians(items))

    # ------------------------------------------------------------------ training
    def recommendation_loss(self, hidden: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
        """BPR + positive-vs-negative on W2² (STOSA §3.4), or CE over -W2² (``model.stosa.loss=ce``)."""
        mask = batch.targets != PAD_ID  # (B, L)
        h = hidden[mask]  # (P, 2D)
        targets = batch.targets[mask]  # (P,)
        if self.stosa.loss == "ce":
            return F.cross_entropy(self.real_item_scores(h), targets - 1)
        u_mean, u_cov = split_gaussian(h)  # (P, D) x2
        pos_mean, pos_cov = self.item_gaussians(targets)  # (P, D) x2
        neg_mean, neg_cov = self.item_gaussians(batch.negatives[mask])  # (P, D) x2
        d_pos = wasserstein_distance(u_mean, u_cov, pos_mean, pos_cov)  # (P,)
        d_neg = wasserstein_distance(u_mean, u_cov, neg_mean, neg_cov)  # (P,)
        d_pos_neg = wasserstein_distance(pos_mean, pos_cov, neg_mean, neg_cov)  # (P,)
        bpr = -F.logsigmoid(d_neg - d_pos).mean()
        pvn = (d_pos - d_pos_neg).clamp_min(0.0).mean()
        return bpr + self.stosa.pvn_weight * pvn

    def training_loss(self, batch: TrainBatch) -> LossOutput:
        seq = batch.item_seq  # (B, L)
        mean_in, cov_in = self.item_input(seq), self.cov_input(seq)  # (B, L, D) x2
        hidden = self.encode_inputs(mean_in, seq, cov_in)  # (B, L, 2D)
        rec = self.recommendation_loss(hidden, batch)
        aux = self._stream_aux_losses(batch, mean_in, cov_in)
        total = rec + sum(aux.values()) if aux else rec
        return LossOutput(total=total, parts={"rec": rec.detach(), **{k: v.detach() for k, v in aux.items()}},
                          rec=rec)

    def begin_batch(self, item_seq: torch.Tensor | None) -> None:
        self.item_input.begin_batch(item_seq)
        self.cov_input.begin_batch(item_seq)

    def finish_batch(self) -> LossOutput | None:
        """Both streams' item-level work; the step's item-level auxiliary losses once, from the mean
        stream: they are a function of the shared experts alone, the same for either stream."""
        carry_mean, aux = self.item_input.finish_batch()
        carry_cov, _ = self.cov_input.finish_batch(losses=False)
        return closing_loss(carry_mean + carry_cov, aux)

    def _stream_aux_losses(self, batch: TrainBatch, mean_in: torch.Tensor, cov_in: torch.Tensor
                           ) -> dict[str, torch.Tensor]:
        """Item-input auxiliary losses of each stream; the other stream's inputs are held at their values."""
        seq = batch.item_seq
        padding_mask = seq != PAD_ID

        def context(encode) -> AuxContext:
            return AuxContext(item_seq=seq, padding_mask=padding_mask, targets=batch.targets,
                              encode=encode, predict_items=self.aux_candidate_scores)

        def held(x: torch.Tensor, rows: torch.Tensor | None, *tensors: torch.Tensor) -> list[torch.Tensor]:
            """The rows' per-row tensors, repeated to x's batch (k copies of the rows)."""
            picked = [t if rows is None else t[rows] for t in tensors]
            k = x.shape[0] // picked[0].shape[0]
            return [t.repeat(k, *([1] * (t.dim() - 1))) for t in picked]

        def encode_mean(x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
            s, c = held(x, rows, seq, cov_in)
            return self.encode_inputs(x, s, c)

        def encode_cov(x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
            s, m = held(x, rows, seq, mean_in)
            return self.encode_inputs(m, s, x)

        mean_aux = self.item_input.auxiliary_losses(context(encode_mean))
        if self.stosa.aux_streams == "mean" or self.stosa.content_streams == "mean" or not mean_aux:
            return mean_aux
        cov_aux = self.cov_input.auxiliary_losses(context(encode_cov))
        return {k: 0.5 * (mean_aux[k] + cov_aux[k]) for k in mean_aux}


@register_backbone("stosa")
def build_stosa(cfg: ModelConfig, item_input: ItemInput, num_items: int, max_seq_len: int, loss: str) -> STOSA:
    log.info("STOSA trains with its own loss (model.stosa.loss=%s); train.loss=%s is not used", cfg.stosa.loss, loss)
    return STOSA(cfg, item_input, num_items, max_seq_len, cfg.stosa)
