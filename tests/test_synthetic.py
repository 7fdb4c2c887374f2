"""The embedded synthetic world: planted properties are what the docstring says they are."""
import numpy as np
import pytest

from prismrec.config import ConfigError, SyntheticConfig
from prismrec.data.synthetic import USER_TYPES, make_synthetic_dataset


def _props(d):
    lat = {k: np.asarray(v)[1:] for k, v in d.extras["item_latents"].items()}
    props = {k: np.asarray(v)[1:] for k, v in d.extras["item_properties"].items()}
    return lat, props


@pytest.mark.parametrize("ks", [8, 4, 2])
def test_synergy_property_is_pure_synergy(ks):
    d = make_synthetic_dataset(SyntheticConfig(synergy_categories=ks, num_users=100))  # items are what count
    lat, props = _props(d)
    assert d.extras["categories_per_property"]["synergy"] == ks
    assert d.extras["categories_per_property"]["redundant"] == 8
    np.testing.assert_array_equal(props["synergy"], (lat["a"] + lat["b"]) % ks)
    assert set(np.unique(props["synergy"])) == set(range(ks))
    # each modality's latent alone says (almost) nothing about it, both together say everything:
    # plug-in mutual information (nats) against its maximum log(ks)
    assert _mutual_information(lat["a"], props["synergy"]) < 0.1 * np.log(ks)
    assert _mutual_information(lat["b"], props["synergy"]) < 0.1 * np.log(ks)
    assert _mutual_information(lat["a"] * ks + lat["b"], props["synergy"]) == pytest.approx(np.log(ks), rel=0.02)


def _mutual_information(x, y):
    joint = np.zeros((x.max() + 1, y.max() + 1))
    np.add.at(joint, (x, y), 1.0)
    joint /= joint.sum()
    px, py = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (px @ py)[nz])).sum())


def test_synergy_users_follow_their_synergy_category():
    ks = 4
    d = make_synthetic_dataset(SyntheticConfig(synergy_categories=ks))
    _, props = _props(d)
    syn = np.concatenate([[-1], props["synergy"]])
    types = np.asarray(d.extras["user_type"])
    shares = []
    for u, seq in enumerate(d.sequences.as_lists()):
        if USER_TYPES[types[u]] == "synergy":
            counts = np.bincount(syn[np.asarray(seq)], minlength=ks)
            shares.append(counts.max() / counts.sum())
    # follow_prob 0.8 (and slow drift): the dominant category holds far more than the 1/ks of chance
    assert np.mean(shares) > 0.6


def test_synergy_categories_must_divide_the_preference_categories():
    with pytest.raises(ConfigError, match="synergy_categories"):
        SyntheticConfig(synergy_categories=3)


def test_oracle_modality_shows_the_synergy_and_leaves_the_world_unchanged():
    from prismrec.introspect import linear_probe_accuracy

    base = make_synthetic_dataset(SyntheticConfig(synergy_categories=4, num_users=200))
    d = make_synthetic_dataset(SyntheticConfig(synergy_categories=4, num_users=200, oracle_modality=True))
    assert list(base.features) == ["image", "text"]
    assert list(d.features) == ["image", "text", "synergy_oracle"]
    for name in ("image", "text"):
        np.testing.assert_array_equal(d.features[name].values, base.features[name].values)
    assert d.sequences.as_lists() == base.sequences.as_lists()
    assert d.features["synergy_oracle"].synthetic
    _, props = _props(d)
    oracle = np.asarray(d.features["synergy_oracle"].values)[1:]
    both = np.concatenate([np.asarray(d.features[n].values)[1:] for n in ("image", "text")], axis=1)
    # the oracle shows the property to a linear probe; the two real synthetic modalities do not
    assert linear_probe_accuracy(oracle, props["synergy"]) > 0.95
    assert linear_probe_accuracy(both, props["synergy"]) < 0.4
