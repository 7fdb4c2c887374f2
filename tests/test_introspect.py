"""Linear probes of learned embeddings (prismrec.introspect)."""
from __future__ import annotations

import numpy as np
import pytest

from prismrec import api
from prismrec.introspect import expert_probes, expert_separability, expert_similarity, linear_probe_accuracy
from prismrec.plotting import scatter_svg


def test_probe_finds_linear_classes_and_not_xor():
    rng = np.random.default_rng(0)
    n = 800
    a, b = rng.integers(0, 2, n), rng.integers(0, 2, n)
    x = np.stack([2 * a - 1, 2 * b - 1], axis=1) + rng.normal(0, 0.1, (n, 2))
    assert linear_probe_accuracy(x, a) > 0.97  # visible linearly
    xor = a ^ b
    assert linear_probe_accuracy(x, xor) < 0.65  # XOR: no linear read-out from (a, b) alone
    with_product = np.hstack([x, (x[:, :1] * x[:, 1:])])
    assert linear_probe_accuracy(with_product, xor) > 0.97  # once the interaction is a feature, it is


def test_probe_on_random_labels_is_near_chance_and_ignores_negative_labels():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 8))
    y = rng.integers(0, 4, 600)
    assert linear_probe_accuracy(x, y) < 0.35
    y_unknown = y.copy()
    y_unknown[:300] = -1
    assert linear_probe_accuracy(np.vstack([x[:300] * 0, x[300:]]), y_unknown) < 0.4  # rows with -1 dropped


def test_probe_rejects_bad_shapes():
    with pytest.raises(ValueError, match="must be"):
        linear_probe_accuracy(np.zeros((10, 2)), np.zeros(9, dtype=int))
    with pytest.raises(ValueError, match="at least"):
        linear_probe_accuracy(np.zeros((4, 2)), np.zeros(4, dtype=int))


def test_expert_probes_on_planted_world(tiny_cfg, tmp_path):
    from dataclasses import replace
    cfg = replace(tiny_cfg, data=replace(tiny_cfg.data, synthetic=replace(tiny_cfg.data.synthetic, num_items=400)),
                  model=replace(tiny_cfg.model, prism=replace(tiny_cfg.model.prism, enabled=True)))
    run = api.train(cfg, tmp_path / "run", progress=False)
    props = run.dataset.extras["item_properties"]
    probes = expert_probes(run, props)
    assert set(probes) == {"unique_image", "unique_text", "synergy", "redundancy", "input:concat", "id"}
    assert all(0.0 <= v <= 1.0 for row in probes.values() for v in row.values())
    # the planted world as designed: unique/redundant categories are linearly visible in the
    # modalities, the synergy category (a + b mod K) is not (chance is 1/8)
    raw = probes["input:concat"]
    assert min(raw["unique_image"], raw["unique_text"], raw["redundant"]) > 0.6
    assert raw["synergy"] < 0.3


def test_expert_similarity_and_separability_on_constructed_embeddings():
    rng = np.random.default_rng(0)
    n, D = 300, 8
    # four experts that each live on their own axis (plus a little noise): orthogonal, separable
    axes = np.eye(D)[:4]
    emb = 3.0 * axes[None] + rng.normal(0, 0.3, (n, 4, D))  # (n, E, D)
    sim = expert_similarity(emb)
    assert sim.shape == (4, 4) and np.allclose(np.diag(sim), 1.0) and np.allclose(sim, sim.T)
    assert np.abs(sim[~np.eye(4, dtype=bool)]).max() < 0.1
    assert expert_separability(emb) > 0.99
    # four experts that output the same vector for an item: similarity 1, expert not identifiable
    same = np.repeat(rng.normal(size=(n, 1, D)), 4, axis=1)
    assert np.allclose(expert_similarity(same), 1.0)
    assert expert_separability(same) < 0.35  # chance 0.25
    # scale does not matter (cosine geometry), and a zero output counts as similarity 0
    assert np.allclose(expert_similarity(emb * rng.uniform(0.1, 10, (n, 4, 1))), sim)
    emb[:, 0] = 0.0
    assert np.allclose(expert_similarity(emb)[0], 0.0)


def test_scatter_svg_scales_points_into_the_canvas(tmp_path):
    import xml.etree.ElementTree as ET
    xy = np.array([[-5.0, 2.0], [5.0, 2.0], [0.0, 12.0], [0.0, -8.0]])
    scatter_svg(tmp_path / "s.svg", xy, np.array([0, 1, 2, 1]), ["a", "b<c", "d"], title="t & u", size=200)
    root = ET.parse(tmp_path / "s.svg").getroot()
    ns = "{http://www.w3.org/2000/svg}"
    points = [c for c in root.iter(f"{ns}circle") if c.get("r") != "5"]
    assert len(points) == 4
    assert sorted(c.get("class") for c in points) == ["g0", "g1", "g1", "g2"]  # one colour class per group
    cx = sorted(float(c.get("cx")) for c in points)
    cy = sorted(float(c.get("cy")) for c in points)
    assert cx[0] == pytest.approx(20.0) and cy[0] >= 0 and cx[-1] <= 200 and cy[-1] <= float(root.get("height"))
    # equal scale on both axes: the y range (20) spans the canvas, the x range (10) half of it
    assert cy[-1] - cy[0] == pytest.approx(2 * (cx[-1] - cx[0]))
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert texts == ["t & u", "a", "b<c", "d"]  # escaped in the file, read back intact
    with pytest.raises(ValueError, match="must be"):
        scatter_svg(tmp_path / "bad.svg", np.zeros((3, 3)), np.zeros(3, dtype=int), ["a"])
