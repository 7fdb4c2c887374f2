"""The vectorised torch K-means used for InDiRec's intent clustering."""
import pytest
import torch

from prismrec.models.kmeans import _nearest, kmeans, kmeans_plus_plus

CENTERS = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])


def blobs(per=150, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([c + 0.5 * torch.randn(per, 2, generator=g) for c in CENTERS])  # (4 * per, 2)
    truth = torch.arange(4).repeat_interleave(per)
    return x, truth, g


def test_recovers_separated_blobs_and_stops_by_tolerance():
    x, truth, g = blobs()
    res = kmeans(x, 4, iters=50, tol=1e-6, generator=g, progress=False)
    # each true blob is exactly one cluster, and the four clusters are distinct
    mapping = {int(t): set(res.labels[truth == t].tolist()) for t in range(4)}
    assert all(len(v) == 1 for v in mapping.values())
    assert len(set().union(*mapping.values())) == 4
    centers = res.centroids[torch.tensor([next(iter(mapping[t])) for t in range(4)])]
    assert torch.allclose(centers, CENTERS, atol=0.15)
    assert res.converged and res.iterations < 50
    assert abs(res.inertia - float(((x - res.centroids[res.labels]) ** 2).sum())) < 1e-2 * res.inertia


def test_result_is_a_lloyd_fixed_point():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 5, generator=g)
    res = kmeans(x, 7, iters=100, tol=0.0, generator=g, progress=False)
    d = torch.cdist(x, res.centroids) ** 2  # (N, K) brute-force reference
    assert torch.equal(res.labels, d.argmin(1))  # every point at its nearest centroid
    for k in range(7):  # every centroid at the mean of its points
        assert torch.allclose(res.centroids[k], x[res.labels == k].mean(0), atol=1e-4)


def test_kmeans_plus_plus_seeds_are_data_points_spread_over_blobs():
    x, truth, g = blobs()
    seeds = kmeans_plus_plus(x, 4, g)
    rows = [int(torch.nonzero((x == s).all(1))[0]) for s in seeds]
    assert len({int(truth[r]) for r in rows}) == 4  # one seed per blob (D² weighting)


def test_chunked_nearest_matches_unchunked():
    g = torch.Generator().manual_seed(2)
    x, c = torch.randn(103, 4, generator=g), torch.randn(6, 4, generator=g)
    a, da = _nearest(x, c, chunk=10)
    b, db = _nearest(x, c, chunk=1000)
    assert torch.equal(a, b) and torch.allclose(da, db)


def test_subsampled_fit_assigns_every_point():
    x, truth, g = blobs(per=300)
    res = kmeans(x, 4, generator=g, max_points_per_centroid=20, progress=False)  # fit on 80 of 1200 points
    assert res.labels.shape == (1200,)
    assert all(len(set(res.labels[truth == t].tolist())) == 1 for t in range(4))


def test_duplicates_empty_clusters_and_bounds():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]).repeat(10, 1)  # 3 distinct points, 30 rows
    res = kmeans(x, 5, generator=torch.Generator().manual_seed(0), progress=False)
    assert res.labels.min() >= 0 and res.labels.max() < 5
    assert res.inertia == pytest.approx(0.0, abs=1e-6)
    exact = kmeans(torch.randn(6, 3), 6, progress=False)
    assert exact.inertia == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="k-means needs"):
        kmeans(torch.randn(3, 2), 4, progress=False)


def test_same_generator_same_clustering():
    g = torch.Generator()
    x = torch.randn(300, 8, generator=g.manual_seed(5))
    a = kmeans(x, 10, generator=torch.Generator().manual_seed(9), progress=False)
    b = kmeans(x, 10, generator=torch.Generator().manual_seed(9), progress=False)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.centroids, b.centroids)
