"""Attribute features (brand, categories) per item.

Two methods:

* ``svd`` (default): the item x attribute multi-hot matrix, each row scaled to unit norm,
  reduced with TruncatedSVD (scikit-learn, fixed seed) to ``dim`` columns and L2-normalised.
  Works with anonymous attribute ids (Sports).
* ``text``: every attribute *name* embedded with a sentence encoder; an item's vector is
  the L2-normalised mean of its attributes' embeddings. Needs real names.

Items without attributes are missing (zero row, ``present=False``).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..data.attributes import ItemAttributes
from ..data.sequences import DataError
from .store import FeatureResult, encode_in_chunks, existing_result, inputs_hash, is_current, l2_normalize, open_prepared
from .text import DEFAULT_TEXT_MODEL, TextEncoder, load_text_encoder


def svd_embedding(attrs: ItemAttributes, dim: int, seed: int = 0) -> np.ndarray:
    """(num_items + 1, k) with k = min(dim, num_attributes - 1); rows without attributes are zero."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.preprocessing import normalize

    x = normalize(attrs.multi_hot(), norm="l2", axis=1)  # (N + 1, V) sparse; empty rows stay zero
    k = min(dim, attrs.num_attributes - 1)
    if k < 1:
        raise DataError(f"TruncatedSVD needs at least 2 distinct attributes, found {attrs.num_attributes}")
    z = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=7, random_state=seed).fit_transform(x)
    z = z.astype(np.float32)
    has = attrs.counts() > 0
    z[~has] = 0.0
    z[has] = l2_normalize(z[has])
    return z


def name_embedding(attrs: ItemAttributes, enc: TextEncoder, batch_size: int = 64) -> np.ndarray:
    """(num_items + 1, d): mean of the item's attribute-name embeddings, L2-normalised."""
    if not attrs.named:
        raise DataError("attribute names of this dataset are anonymous ids; the 'text' method would embed "
                        "placeholders — use --method svd")
    names = enc.encode(attrs.vocab, batch_size=batch_size)  # (V, d)
    m = attrs.multi_hot()  # (N + 1, V)
    counts = np.maximum(np.asarray(m.sum(axis=1)).ravel(), 1.0)
    z = np.asarray(m @ names, dtype=np.float32) / counts[:, None].astype(np.float32)
    has = attrs.counts() > 0
    z[~has] = 0.0
    z[has] = l2_normalize(z[has])
    return z


def build_attribute_features(data: str | Path, *, method: str = "svd", dim: int = 64, modality: str = "attributes",
                             model: str | TextEncoder = DEFAULT_TEXT_MODEL, batch_size: int = 64, device: str = "cpu",
                             seed: int = 0, force: bool = False, progress: bool = True) -> FeatureResult:
    """Write ``features/<modality>.npy`` for a prepared folder from its item attributes."""
    if method not in ("svd", "text"):
        raise DataError(f"attribute method must be 'svd' or 'text', got {method!r}")
    if dim < 1:
        raise DataError(f"--dim must be >= 1, got {dim}")
    folder = Path(data)
    ds = open_prepared(folder)
    attrs: ItemAttributes | None = ds.extras.get("item_attributes")
    if attrs is None or attrs.num_attributes == 0:
        raise DataError(f"{folder} has no item attributes (item_meta.tsv attributes column is empty)")
    spec = model if isinstance(model, str) else model.name
    encoder = "truncated-svd-multi-hot" if method == "svd" else f"mean-name-embedding:{spec}"
    params = {"method": method, "dim": dim if method == "svd" else None, "seed": seed if method == "svd" else None,
              "inputs": inputs_hash(attrs.as_lists())}
    if not force and is_current(folder, modality, ds, encoder, params):
        return existing_result(folder, modality)
    t0 = time.perf_counter()
    if method == "svd":
        import sklearn

        full = svd_embedding(attrs, dim, seed)
        version = f"scikit-learn {sklearn.__version__}"
    else:
        enc = load_text_encoder(model, device=device, progress=progress) if isinstance(model, str) else model
        full = name_embedding(attrs, enc, batch_size)
        version = enc.version
    items = np.flatnonzero(attrs.counts() > 0).astype(np.int64)
    values, present = encode_in_chunks(folder, modality, ds, items, lambda ids: full[ids], encoder=encoder,
                                       encoder_version=version, params=params, chunk_size=max(len(items), 1),
                                       progress=progress)
    return FeatureResult(modality, folder / "features" / f"{modality}.npy", values.shape[1], int(present.sum()),
                         ds.num_items - int(present.sum()), skipped=False, seconds=time.perf_counter() - t0)
