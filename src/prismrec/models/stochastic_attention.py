"""Wasserstein self-attention over Gaussian embeddings (STOSA, Fan et al., WWW 2022, §3.2–3.3).

Every position carries a diagonal Gaussian N(mean, diag(cov)). The 2-Wasserstein distance between
two diagonal Gaussians has the closed form (STOSA Eq. 5)

    W2²(a, b) = ||mean_a - mean_b||² + ||sqrt(cov_a) - sqrt(cov_b)||²

i.e. the squared Euclidean distance between the vectors [mean, sqrt(cov)]. We use this squared
distance everywhere (attention and scoring), as the closed form gives it; it is smooth where two
Gaussians coincide, unlike its square root.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import Dropout


def elu_plus_one(x: torch.Tensor) -> torch.Tensor:
    """Positive map used for every covariance (STOSA §3.1): ELU(x) + 1 > 0."""
    return F.elu(x) + 1.0


def _gaussian_coords(mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """[mean, sqrt(cov)]: W2² between Gaussians is the squared distance of these. (..., d) -> (..., 2d)"""
    return torch.cat([mean, cov.clamp_min(1e-12).sqrt()], dim=-1)


def wasserstein_distance(mean_a: torch.Tensor, cov_a: torch.Tensor,
                         mean_b: torch.Tensor, cov_b: torch.Tensor) -> torch.Tensor:
    """Elementwise W2² of paired Gaussians: (..., d) x4 -> (...)"""
    a, b = _gaussian_coords(mean_a, cov_a), _gaussian_coords(mean_b, cov_b)  # (..., 2d)
    return (a - b).square().sum(-1)


def pairwise_wasserstein_distance(mean_a: torch.Tensor, cov_a: torch.Tensor,
                                  mean_b: torch.Tensor, cov_b: torch.Tensor) -> torch.Tensor:
    """W2² of every ``a`` against every ``b``, by ||a||² + ||b||² - 2 a·b (one matmul, no loops).

    mean_a, cov_a: (..., M, d); mean_b, cov_b: (..., N, d) or (N, d) -> (..., M, N)
    """
    a, b = _gaussian_coords(mean_a, cov_a), _gaussian_coords(mean_b, cov_b)  # (..., M, 2d), (..., N, 2d)
    sq_a = a.square().sum(-1, keepdim=True)  # (..., M, 1)
    sq_b = b.square().sum(-1).unsqueeze(-2)  # (..., 1, N)
    return (sq_a + sq_b - 2.0 * (a @ b.transpose(-1, -2))).clamp_min(0.0)  # (..., M, N)


class WassersteinSelfAttention(nn.Module):
    """Multi-head stochastic self-attention (STOSA Eqs. 6–8).

    Scores are -W2²(query_i, key_j) / sqrt(d_head) between the query and key Gaussians; mean values
    are mixed with the attention probabilities and covariance values with their squares (the
    covariance of a weighted sum of independent Gaussians). Both streams go through attention.
    """

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.mean_qkv = nn.Linear(hidden_dim, 3 * hidden_dim)
        self.cov_qkv = nn.Linear(hidden_dim, 3 * hidden_dim)
        self.mean_out = nn.Linear(hidden_dim, hidden_dim)
        self.cov_out = nn.Linear(hidden_dim, hidden_dim)
        self.attn_dropout = Dropout(dropout)

    def forward(self, mean: torch.Tensor, cov: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mean, cov: (B, L, D); mask: (B, 1, L, L) True where query i may attend key j."""
        B, L, D = mean.shape
        H = self.num_heads

        def heads(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return x.view(B, L, 3, H, D // H).permute(2, 0, 3, 1, 4).unbind(0)  # 3x (B, H, L, Dh)

        q_mean, k_mean, v_mean = heads(self.mean_qkv(mean))
        q_cov, k_cov, v_cov = heads(elu_plus_one(self.cov_qkv(cov)))  # positive covariances
        dist = pairwise_wasserstein_distance(q_mean, q_cov, k_mean, k_cov)  # (B, H, L, L)
        scores = (-dist / math.sqrt(D // H)).masked_fill(~mask, float("-inf"))  # (B, H, L, L)
        probs = scores.softmax(dim=-1)  # (B, H, L, L)
        keep = self.attn_dropout(torch.ones_like(probs))  # one dropout mask (0 or 1/(1-p)) for both streams
        mean_ctx = (probs * keep) @ v_mean  # (B, H, L, Dh)
        cov_ctx = (probs.square() * keep) @ v_cov  # (B, H, L, Dh)
        merge = lambda x: x.transpose(1, 2).reshape(B, L, D)  # noqa: E731  (B, H, L, Dh) -> (B, L, D)
        return self.mean_out(merge(mean_ctx)), self.cov_out(merge(cov_ctx))  # (B, L, D) x2


class GaussianFeedForward(nn.Module):
    """Point-wise feed-forward with residual and post-layer-norm, one per stream (STOSA §3.3)."""

    def __init__(self, hidden_dim: int, ffn_mult: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden_dim, ffn_mult * hidden_dim), nn.GELU(),
                                 nn.Linear(ffn_mult * hidden_dim, hidden_dim), Dropout(dropout))
        self.ln = nn.LayerNorm(hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x + self.net(x))  # (B, L, D)


class StochasticBlock(nn.Module):
    """Wasserstein attention + residual/post-LN per stream, then a feed-forward per stream."""

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float, ffn_mult: int) -> None:
        super().__init__()
        self.attn = WassersteinSelfAttention(hidden_dim, num_heads, dropout)
        self.drop = Dropout(dropout)
        self.mean_ln = nn.LayerNorm(hidden_dim)
        self.cov_ln = nn.LayerNorm(hidden_dim)
        self.mean_ffn = GaussianFeedForward(hidden_dim, ffn_mult, dropout)
        self.cov_ffn = GaussianFeedForward(hidden_dim, ffn_mult, dropout)

    def forward(self, mean: torch.Tensor, cov: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attn_mean, attn_cov = self.attn(mean, cov, mask)  # (B, L, D) x2
        mean = self.mean_ln(mean + self.drop(attn_mean))  # (B, L, D)
        cov = self.cov_ln(cov + self.drop(attn_cov))  # (B, L, D)
        return self.mean_ffn(mean), self.cov_ffn(cov)  # (B, L, D) x2
