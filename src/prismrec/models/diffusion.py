"""Conditional DDPM over D-dimensional representations with classifier-free guidance.

Used by InDiRec (Qu & Nobuhara, SIGIR 2025, §3.3) to generate intent-aware views. The parts:

* forward process q(x_t | x_0) = N(sqrt(ᾱ_t) x_0, (1 - ᾱ_t) I) with an exponential (geometric)
  β schedule (Ho et al., 2020, Eq. 4);
* an x̂0-prediction network f(x_t, s, t), an MLP over [x_t, s, sinusoidal embedding of t], trained
  with MSE to x_0; the guidance s is replaced by a learned null embedding with probability p
  (classifier-free guidance, Ho & Salimans, 2022);
* reverse sampling with guided x̂0 = (1 + w) f(x_t, s, t) - w f(x_t, ∅, t), through the DDPM
  posterior q(x_{t'} | x_t, x̂0). Sampling may skip steps: over a subsequence of timesteps the
  posterior uses the respaced β' = 1 - ᾱ_t / ᾱ_{t'} (Nichol & Dhariwal, 2021, §4), which is the
  plain T-step DDPM when every step is kept.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def exponential_betas(steps: int, start: float, end: float) -> torch.Tensor:
    """β_1..β_T growing geometrically from ``start`` to ``end``. -> (T,) float64"""
    if steps == 1:
        return torch.tensor([start], dtype=torch.float64)
    return torch.exp(torch.linspace(math.log(start), math.log(end), steps, dtype=torch.float64))


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al., 2017). (P,) -> (P, dim)"""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half, 1))
    angles = t.float()[:, None] * freqs[None, :]  # (P, half)
    emb = torch.cat([angles.sin(), angles.cos()], dim=-1)  # (P, 2 * half)
    return F.pad(emb, (0, dim - 2 * half))  # (P, dim)


class Denoiser(nn.Module):
    """x̂0 = f(x_t, s, t): an MLP over the concatenation [x_t, s, emb(t)]."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.dim = dim
        self.net = nn.Sequential(nn.Linear(3 * dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, dim))

    def forward(self, x_t: torch.Tensor, guidance: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x_t, guidance, timestep_embedding(t, self.dim)], dim=-1))  # (P, D)


class GuidedDiffusion(nn.Module):
    def __init__(self, dim: int, steps: int = 200, beta_start: float = 1e-4, beta_end: float = 0.02,
                 hidden: int = 0, null_prob: float = 0.1) -> None:
        super().__init__()
        self.steps, self.null_prob = steps, null_prob
        betas = exponential_betas(steps, beta_start, beta_end)  # (T,)
        # derived from config, so not saved in checkpoints
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer("alphas_cumprod", torch.cumprod(1.0 - betas, 0).float(), persistent=False)
        self.denoiser = Denoiser(dim, hidden or 2 * dim)
        self.null_guidance = nn.Parameter(torch.randn(dim) * 0.02)  # the "∅" condition

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t ~ q(x_t | x_0). x0, noise (P, D); t (P,) -> (P, D)"""
        ab = self.alphas_cumprod[t].unsqueeze(-1)  # (P, 1)
        return ab.sqrt() * x0 + (1.0 - ab).sqrt() * noise

    def loss(self, x0: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """MSE of the x̂0 prediction at a random step, with the guidance dropped to ∅ w.p. ``null_prob``."""
        P = x0.shape[0]
        t = torch.randint(0, self.steps, (P,), device=x0.device)  # (P,)
        x_t = self.q_sample(x0, t, torch.randn_like(x0))  # (P, D)
        drop = torch.rand(P, device=x0.device) < self.null_prob  # (P,)
        guidance = torch.where(drop[:, None], self.null_guidance.expand_as(guidance), guidance)  # (P, D)
        return F.mse_loss(self.denoiser(x_t, guidance, t), x0)

    def guided_x0(self, x_t: torch.Tensor, guidance: torch.Tensor, t: torch.Tensor, weight: float) -> torch.Tensor:
        """(1 + w) f(x_t, s, t) - w f(x_t, ∅, t), both in one batched call. -> (P, D)"""
        if weight == 0:
            return self.denoiser(x_t, guidance, t)
        both = self.denoiser(torch.cat([x_t, x_t]), torch.cat([guidance, self.null_guidance.expand_as(guidance)]),
                             torch.cat([t, t]))  # (2P, D)
        cond, uncond = both.chunk(2)
        return (1.0 + weight) * cond - weight * uncond

    def timesteps(self, sample_steps: int) -> list[int]:
        """Evenly spaced timesteps from T - 1 down to 0 (all T when ``sample_steps`` = T)."""
        ts = torch.linspace(self.steps - 1, 0, max(1, min(sample_steps, self.steps))).round().long()
        return list(dict.fromkeys(ts.tolist()))  # distinct, descending

    @torch.no_grad()
    def sample(self, guidance: torch.Tensor, sample_steps: int, weight: float,
               x_T: torch.Tensor | None = None) -> torch.Tensor:
        """Generate x̂0 from pure noise (or from ``x_T``, (P, D): a diagnostic start such as a draw of
        q(x_T | x_0)), guided by ``guidance`` (P, D). Not differentiable. -> (P, D)"""
        x = torch.randn_like(guidance) if x_T is None else x_T  # (P, D) x_T
        ts = self.timesteps(sample_steps)
        ab = self.alphas_cumprod
        x0 = x
        for i, t in enumerate(ts):  # loop over diffusion steps (few), vectorised over samples
            t_vec = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
            x0 = self.guided_x0(x, guidance, t_vec, weight)  # (P, D)
            if i == len(ts) - 1:
                break
            ab_t, ab_prev = ab[t], ab[ts[i + 1]]
            beta = 1.0 - ab_t / ab_prev  # respaced β for the jump t -> t'
            coef_x0 = ab_prev.sqrt() * beta / (1.0 - ab_t)
            coef_xt = (1.0 - beta).sqrt() * (1.0 - ab_prev) / (1.0 - ab_t)
            var = beta * (1.0 - ab_prev) / (1.0 - ab_t)
            x = coef_x0 * x0 + coef_xt * x + var.sqrt() * torch.randn_like(x)  # x_{t'} ~ q(x_{t'} | x_t, x̂0)
        return x0
