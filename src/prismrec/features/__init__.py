"""Per-item feature extraction into prepared dataset folders (``features/<modality>.npy``).

* :mod:`.text` — sentence-transformers embedding of item text;
* :mod:`.clip` — CLIP image and text embeddings (L2-normalised);
* :mod:`.attributes` — multi-hot attributes reduced with TruncatedSVD, or attribute-name embeddings.

Every builder is batched, shows progress, skips a matrix that is already current and
resumes an interrupted run from saved chunks (:mod:`.store`).
"""
from .store import FeatureResult

__all__ = ["FeatureResult"]
