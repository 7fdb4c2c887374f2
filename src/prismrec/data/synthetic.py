"""The embedded default dataset: a SYNTHETIC multimodal world with planted PID structure.

Nothing here is real data. Two synthetic modalities, labelled ``image`` and ``text``, are
generated from latent item properties so that each of the four kinds of information of
Partial Information Decomposition (PAPER.md §1) is present and known:

==============  =========================================  ==============================
property        how it is generated                        visible in
==============  =========================================  ==============================
``unique_image``  category ``c_img``                       image only
``unique_text``   category ``c_txt``                       text only
``redundant``     category ``c_red``                       both image and text
``synergy``       ``(a + b) mod K_s`` with ``a`` in image, neither alone: ``a`` and ``b``
                  ``b`` in text (generalised XOR)          are independent and uniform,
                                                           so each alone says nothing
==============  =========================================  ==============================

Every property has K = 8 categories except synergy, which has ``K_s = synergy_categories`` (8 by
default; 2 makes it a plain XOR of one bit per modality).

``oracle_modality`` (a diagnostic) adds a third modality, ``synergy_oracle``, that shows the
synergy property directly (a noisy linear map of its one-hot code): what a synergy expert would
provide if it computed the interaction perfectly.

Each user has a planted *type* (one of the four kinds) and a preferred category of that
kind's property; at each step the user follows the preference with probability
``follow_prob`` (picking among matching items by popularity), otherwise picks a popular
item. The preference drifts to a new category with probability ``drift_prob`` per step,
so recent items carry more signal than old ones. The ground truth is returned in
``RecDataset.extras`` for analysis and tests.
"""
from __future__ import annotations

import numpy as np

from ..config import SyntheticConfig
from .dataset import FeatureMatrix, RecDataset
from .sequences import Sequences

USER_TYPES = ("unique_image", "unique_text", "redundant", "synergy")
NUM_CATEGORIES = 8
DRIFT_PROB = 0.05
ENCODER_NAME = "synthetic-planted-pid-v1"


def make_synthetic_dataset(cfg: SyntheticConfig | None = None) -> RecDataset:
    """Generate the world deterministically from ``cfg.seed``."""
    cfg = cfg or SyntheticConfig()
    rng = np.random.default_rng(cfg.seed)
    n_items, n_users, k, ks = cfg.num_items, cfg.num_users, NUM_CATEGORIES, cfg.synergy_categories

    # ---- latent item properties (index 0 = padding, filled with -1)
    latent = {name: rng.integers(0, ks if name in ("a", "b") else k, size=n_items)
              for name in ("c_img", "c_txt", "c_red", "a", "b")}
    props = {
        "unique_image": latent["c_img"],
        "unique_text": latent["c_txt"],
        "redundant": latent["c_red"],
        "synergy": (latent["a"] + latent["b"]) % ks,
    }

    # ---- synthetic modalities: random linear maps of one-hot latents + isotropic noise
    def modality(codes: list[np.ndarray]) -> np.ndarray:
        onehots = np.concatenate([np.eye(k)[c] for c in codes], axis=1)  # (N, 3K)
        mix = rng.normal(0.0, 1.0, size=(onehots.shape[1], cfg.feature_dim)) / np.sqrt(len(codes))
        x = onehots @ mix + rng.normal(0.0, cfg.feature_noise, size=(n_items, cfg.feature_dim))
        return np.vstack([np.zeros((1, cfg.feature_dim)), x]).astype(np.float32)  # row 0 = padding

    image = modality([latent["c_img"], latent["c_red"], latent["a"]])
    text = modality([latent["c_txt"], latent["c_red"], latent["b"]])

    # ---- popularity (Zipf over a random item order)
    ranks = rng.permutation(n_items) + 1
    pop = ranks.astype(np.float64) ** (-cfg.popularity_alpha)
    pop /= pop.sum()
    # per property and category: the member items and their popularity distribution
    categories = {name: ks if name == "synergy" else k for name in props}
    groups = {name: [np.flatnonzero(p == c) for c in range(categories[name])] for name, p in props.items()}

    # ---- users
    user_type = rng.integers(0, len(USER_TYPES), size=n_users)
    first_pref = rng.integers(0, k, size=n_users)
    lengths = rng.integers(cfg.min_len, cfg.max_len + 1, size=n_users)
    seqs: list[np.ndarray] = []
    for u in range(n_users):  # generation only (not a hot path): one short loop per user
        kind = USER_TYPES[user_type[u]]
        pref = int(first_pref[u]) % categories[kind]  # drawn over K for every type: one random stream
        seen: set[int] = set()
        seq = np.empty(lengths[u], dtype=np.int64)
        for t in range(lengths[u]):
            if rng.random() < DRIFT_PROB:
                pref = int(rng.integers(0, k)) % categories[kind]
            if rng.random() < cfg.follow_prob:
                cand = groups[kind][pref]
                w = pop[cand].copy()
            else:
                cand = np.arange(n_items)
                w = pop.copy()
            if seen:
                w[np.isin(cand, list(seen))] = 0.0
            if w.sum() <= 0:  # everything matching already consumed: fall back to popularity
                cand, w = np.arange(n_items), pop.copy()
                w[list(seen)] = 0.0
            item = int(rng.choice(cand, p=w / w.sum()))
            seen.add(item)
            seq[t] = item + 1  # item ids are 1-based
        seqs.append(seq)

    sequences = Sequences.from_lists(seqs, num_items=n_items)
    present = np.ones(n_items + 1, dtype=bool)
    present[0] = False
    features = {
        "image": FeatureMatrix("image", image, present.copy(), encoder=ENCODER_NAME, synthetic=True),
        "text": FeatureMatrix("text", text, present.copy(), encoder=ENCODER_NAME, synthetic=True),
    }
    if cfg.oracle_modality:  # drawn last: everything above is the same world as without it
        oracle = modality([props["synergy"]])
        features["synergy_oracle"] = FeatureMatrix("synergy_oracle", oracle, present.copy(),
                                                   encoder=ENCODER_NAME + "-oracle", synthetic=True)
    pad = lambda a: np.concatenate([[-1], a])  # noqa: E731  align with 1-based item ids
    extras = {
        "synthetic": True,
        "user_types": USER_TYPES,
        "user_type": user_type,  # (U,) index into USER_TYPES, row u = user u
        "item_properties": {name: pad(p) for name, p in props.items()},  # (N+1,) category per item
        "item_latents": {name: pad(v) for name, v in latent.items()},
        "num_categories": k,
        "categories_per_property": categories,  # chance level of a classifier of each property = 1 / this
    }
    return RecDataset(name="synthetic", sequences=sequences, features=features,
                      source=f"embedded synthetic world (seed {cfg.seed}); NOT real data", extras=extras)
