"""Linear probes of learned embeddings (prismrec.introspect)."""
from __future__ import annotations

import numpy as np
import pytest

from prismrec import api
from prismrec.introspect import expert_probes, linear_probe_accuracy


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
