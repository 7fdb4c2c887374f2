"""Vectorised K-means in torch: k-means++ initialisation, Lloyd iterations, tolerance stop.

Used by InDiRec's per-epoch intent clustering (K = 256 over ~10^5 representations). Distances are
computed in row chunks by ||x||² - 2 x·c + ||c||² (one matmul per chunk), so memory stays at
``chunk x K`` floats; there is no Python loop over points. k-means++ draws its K seeds one after
another (a loop over K, each step vectorised over all points), as the algorithm requires.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm


@dataclass
class KMeansResult:
    centroids: torch.Tensor  # (K, D)
    labels: torch.Tensor  # (N,) int64 in 0..K-1
    inertia: float  # sum of squared distances of points to their centroid
    iterations: int  # Lloyd iterations run
    converged: bool  # stopped by the tolerance (not by the iteration cap)


def _nearest(x: torch.Tensor, centroids: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of and squared distance to the nearest centroid. x (N, D), centroids (K, D) -> (N,), (N,)"""
    c_sq = centroids.square().sum(-1)  # (K,)
    labels, dists = [], []
    for lo in range(0, x.shape[0], chunk):  # loop over row chunks only
        xc = x[lo:lo + chunk]  # (n, D)
        d = xc.square().sum(-1, keepdim=True) - 2.0 * (xc @ centroids.T) + c_sq  # (n, K)
        best, idx = d.min(dim=1)  # (n,), (n,)
        labels.append(idx)
        dists.append(best.clamp_min(0.0))
    return torch.cat(labels), torch.cat(dists)


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007): each next seed is drawn with probability
    proportional to the squared distance to the nearest seed so far. x (N, D) -> (K, D)"""
    n = x.shape[0]
    x_sq = x.square().sum(-1)  # (N,)
    u = torch.rand(k, generator=generator, device=x.device, dtype=torch.float64)  # all draws up front
    chosen = torch.empty(k, dtype=torch.long, device=x.device)
    chosen[0] = (u[0] * n).long().clamp_max(n - 1)
    closest = torch.full((n,), float("inf"), device=x.device)  # squared distance to the nearest seed
    for i in range(k):  # sequential by definition; each step is vectorised over all points
        if i > 0:
            cdf = torch.cumsum(closest.double(), 0)  # (N,) inverse-CDF draw, cheaper than multinomial
            if float(cdf[-1]) <= 0:  # every point coincides with a seed: draw uniformly
                chosen[i] = (u[i] * n).long().clamp_max(n - 1)
            else:
                chosen[i] = torch.searchsorted(cdf, (u[i] * cdf[-1]).reshape(1)).clamp_max(n - 1)[0]
        c = x[chosen[i]]  # (D,)
        d = (x_sq - 2.0 * (x @ c) + c.square().sum()).clamp_min(0.0)  # (N,)
        closest = torch.minimum(closest, d)
    return x[chosen]  # (K, D)


def kmeans(x: torch.Tensor, k: int, iters: int = 20, tol: float = 1e-4, generator: torch.Generator | None = None,
           max_points_per_centroid: int = 0, chunk: int = 65536, progress: bool | None = None,
           desc: str = "k-means") -> KMeansResult:
    """Cluster the rows of ``x`` (N, D) into ``k`` groups.

    k-means++ seeds, then Lloyd iterations until the relative decrease of the inertia is below
    ``tol`` or ``iters`` is reached. An empty cluster is re-seeded with the point farthest from
    its centroid. ``k`` larger than the number of points is an error. With
    ``max_points_per_centroid`` > 0 and more than ``k`` times that many points, the centroids are fitted
    on a uniform random subset of that size (as faiss does) and then every point is assigned; the
    returned inertia is over all points. ``progress=None`` shows a bar only on a terminal.
    ``generator`` must live on ``x``'s device.
    """
    x_all = x.detach().float()
    n = x_all.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= number of points, got k={k} for {n} points")
    x = x_all
    if 0 < max_points_per_centroid and k * max_points_per_centroid < n:
        x = x_all[torch.randperm(n, generator=generator, device=x_all.device)[:k * max_points_per_centroid]]
    centroids = kmeans_plus_plus(x, k, generator)  # (K, D)
    labels, dists = _nearest(x, centroids, chunk)  # (N,), (N,)
    inertia = float(dists.sum())
    converged, it = False, 0
    bar = tqdm(range(1, iters + 1), desc=desc, leave=False, disable=None if progress is None else not progress)
    for it in bar:
        # M-step: centroid = mean of its points (scatter-add, no loop over clusters)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)  # (K, D)
        counts = torch.bincount(labels, minlength=k)  # (K,)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp_min(1)[:, None])  # (K, D)
        if bool(empty.any()):  # re-seed empty clusters with the worst-fitted points
            far = torch.topk(dists, int(empty.sum())).indices
            centroids[empty] = x[far]
        # E-step
        labels, dists = _nearest(x, centroids, chunk)
        new_inertia = float(dists.sum())
        bar.set_postfix(inertia=f"{new_inertia:.4g}")
        rel = (inertia - new_inertia) / max(abs(inertia), 1e-12)
        inertia = new_inertia
        if 0 <= rel < tol and not bool(empty.any()):
            converged = True
            break
    bar.close()
    if x is not x_all:  # fitted on a subset: assign every point
        labels, dists = _nearest(x_all, centroids, chunk)
        inertia = float(dists.sum())
    if not math.isfinite(inertia):
        raise FloatingPointError("k-means produced a non-finite inertia (non-finite input?)")
    return KMeansResult(centroids=centroids, labels=labels, inertia=inertia, iterations=it, converged=converged)
