"""Per-backbone configuration sections ``model.stosa`` and ``model.indirec``.

Torch-free so that ``prismrec.config`` can import it (``prismrec.models`` imports torch in its
package ``__init__``, so these dataclasses live outside it). Fields shared by every backbone
(``hidden_dim``, ``num_layers``, ``num_heads``, ``dropout``, ``ffn_mult``) stay in ``ModelConfig``;
a backbone section is read only by its own backbone and ignored by the others.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


def _check(cond: bool, message: str) -> None:
    if not cond:
        from .config import ConfigError  # lazy: prismrec.config imports this module

        raise ConfigError(message)


@dataclass(frozen=True)
class STOSAConfig:
    """STOSA (Fan et al., WWW 2022): stochastic self-attention over Gaussian item embeddings.

    STOSA trains with its own loss, whatever ``train.loss`` says (``train.loss`` is ignored).
    """

    loss: Literal["bpr_pvn", "ce"] = "bpr_pvn"
    """``bpr_pvn``: the paper's BPR on Wasserstein distances with one sampled negative per position,
    ``-log sigmoid(d(u, neg) - d(u, pos))``, plus the positive-vs-negative regulariser (§3.4).
    ``ce``: full-softmax cross-entropy over negative distances to all items (not in the paper)."""
    pvn_weight: float = 0.005
    """Weight of the positive-vs-negative term ``max(0, d(u, pos) - d(pos, neg))`` (paper default)."""
    aux_streams: Literal["average", "mean"] = "average"
    """Item-input auxiliary losses (e.g. PRISM's interaction losses): ``average`` of the mean and
    covariance streams' losses (as the PRISM authors' code), or the ``mean`` stream's only (half the cost)."""
    content_streams: Literal["both", "mean"] = "both"
    """Which of STOSA's streams receive the item input's content (e.g. PRISM's fused multimodal
    embedding): ``both`` (default; issue 5 and the PRISM authors' code: the mean and the covariance
    inputs) or ``mean`` only, where the covariance stream keeps plain ID embeddings (not in the paper;
    the fusion runs once per step instead of twice, and only the mean stream's auxiliary losses
    exist). With a plain ID input both settings are the same model. Measured with PRISM on Beauty, 3
    seeds: ``mean`` +3.3% NDCG@10 over vanilla STOSA (paired t p = 0.007) at 2.0x its seconds per
    epoch, ``both`` +0.7% (p = 0.55) at 2.7x; on Sports (seed 1) both are below vanilla, ``mean``
    -8.7% and ``both`` -9.2% (docs/benchmarks.md §5)."""

    def __post_init__(self) -> None:
        _check(self.pvn_weight >= 0, "model.stosa.pvn_weight must be >= 0")


@dataclass(frozen=True)
class InDiRecConfig:
    """InDiRec (Qu & Nobuhara, SIGIR 2025): SASRec encoder + intent clustering + intent-guided
    conditional diffusion + contrastive learning. Training-only additions; scoring is SASRec's."""

    num_intents: int = 256
    """K of the per-epoch K-means over training-prefix representations (paper: 256)."""
    kmeans_iters: int = 20
    """Maximum Lloyd iterations of each per-epoch K-means (after k-means++ initialisation)."""
    kmeans_tol: float = 1e-4
    """K-means stops early when the relative decrease of the inertia falls below this."""
    kmeans_max_points_per_centroid: int = 256
    """Fit the centroids on a random subset of at most K x this many prefixes, then assign every prefix
    (faiss's default; InDiRec's released code clusters with faiss. 0 = fit on all prefixes)."""
    cluster_batch_size: int = 1024
    """Users encoded per batch when computing the representations to cluster."""
    diffusion_steps: int = 200
    """T of the DDPM forward process (paper: 200)."""
    beta_start: float = 1e-4
    """First beta of the exponential (geometric) noise schedule."""
    beta_end: float = 0.02
    """Last beta of the exponential (geometric) noise schedule. With the paper's 200 steps from 1e-4 to
    0.02 the chain keeps most of x_0 at its last step (alpha-bar_T = 0.467: x_T = 0.68 x_0 + 0.73 noise)
    while sampling starts from pure noise, an input the denoiser never saw in training; 0.1 brings
    alpha-bar_T to 0.049 (not measured: the default stays the paper's)."""
    sample_steps: int = 20
    """Reverse steps used to generate the intent-aware view each training batch: a respaced DDPM
    over this many evenly spaced timesteps of the T-step chain (``diffusion_steps`` = full chain)."""
    guidance_weight: float = 2.0
    """Classifier-free guidance weight w: x0 = (1 + w) f(x_t, s, t) - w f(x_t, null, t) (paper: 2)."""
    null_guidance_prob: float = 0.1
    """Probability of replacing the guidance by the learned null embedding in training (paper: 0.1)."""
    denoiser_hidden: int = 0
    """Hidden width of the x0-prediction MLP over [x_t, s, t-embedding] (0 = 2 x model.hidden_dim)."""
    cl_weight: float = 0.3
    """lambda_cl of the total loss L_rec + L_diff + lambda_cl L_cl (paper: 0.2-0.4)."""
    cl_temperature: float = 0.2
    """Temperature of the InfoNCE over cosine similarities."""
    cl_max_samples: int = 256
    """Training prefixes per batch that get a generated view and enter the InfoNCE (a random subset
    when a batch has more): bounds the P x P similarity matrix and the sampling cost."""

    def __post_init__(self) -> None:
        _check(self.num_intents >= 1, "model.indirec.num_intents must be >= 1")
        _check(self.kmeans_iters >= 1, "model.indirec.kmeans_iters must be >= 1")
        _check(self.kmeans_tol >= 0, "model.indirec.kmeans_tol must be >= 0")
        _check(self.kmeans_max_points_per_centroid >= 0, "model.indirec.kmeans_max_points_per_centroid must be >= 0")
        _check(self.cluster_batch_size >= 1, "model.indirec.cluster_batch_size must be >= 1")
        _check(self.diffusion_steps >= 1, "model.indirec.diffusion_steps must be >= 1")
        _check(0 < self.beta_start <= self.beta_end < 1, "need 0 < model.indirec.beta_start <= beta_end < 1")
        _check(1 <= self.sample_steps <= self.diffusion_steps,
               "model.indirec.sample_steps must be in 1..model.indirec.diffusion_steps")
        _check(self.guidance_weight >= 0, "model.indirec.guidance_weight must be >= 0")
        _check(0 <= self.null_guidance_prob <= 1, "model.indirec.null_guidance_prob must be in [0, 1]")
        _check(self.denoiser_hidden >= 0, "model.indirec.denoiser_hidden must be >= 0")
        _check(self.cl_weight >= 0, "model.indirec.cl_weight must be >= 0")
        _check(self.cl_temperature > 0, "model.indirec.cl_temperature must be > 0")
        _check(self.cl_max_samples >= 2, "model.indirec.cl_max_samples must be >= 2")
