"""The in-memory dataset every trainer and model reads: sequences + per-item features.

Feature row ``i`` belongs to item ``i``; row 0 is padding. Each modality carries a
presence mask so a missing modality is explicit all the way to the model inputs.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .sequences import DataError, Sequences, read_sequence_file


@dataclass
class FeatureMatrix:
    """One modality's per-item features, aligned with item ids."""

    name: str
    values: np.ndarray  # (num_items + 1, dim) float32; row 0 = padding
    present: np.ndarray  # (num_items + 1,) bool; False = item has no such content (row 0 False)
    encoder: str = "unknown"
    synthetic: bool = False
    """True for generated vectors (the embedded demo world, tests). Never a real modality."""

    def __post_init__(self) -> None:
        if self.values.ndim != 2:
            raise DataError(f"feature {self.name!r}: expected a 2-D matrix, got shape {self.values.shape}")
        if self.present.shape != (self.values.shape[0],):
            raise DataError(f"feature {self.name!r}: presence mask has shape {self.present.shape}, "
                            f"expected ({self.values.shape[0]},)")
        check_finite(self.values, f"feature {self.name!r}")

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])


@dataclass
class RecDataset:
    """Sequences plus named feature matrices and optional item metadata."""

    name: str
    sequences: Sequences
    features: dict[str, FeatureMatrix] = field(default_factory=dict)
    item_raw_ids: list[str] | None = None
    """``item_raw_ids[i - 1]`` is the raw id (ASIN, business id) of item ``i``, when known."""
    item_text: list[str] | None = None
    """Short text of item ``i`` at index ``i - 1``, when known (used for display)."""
    source: str = ""
    extras: dict = field(default_factory=dict)
    """Dataset-specific extras (e.g. the synthetic world's planted ground truth)."""

    def __post_init__(self) -> None:
        for f in self.features.values():
            check_feature_alignment(f, self.num_items, self.name)

    @property
    def num_items(self) -> int:
        return self.sequences.num_items

    @property
    def num_users(self) -> int:
        return self.sequences.num_users

    def item_map_fingerprint(self) -> str:
        return item_map_fingerprint(self.num_items, self.item_raw_ids)

    def items_from_raw_ids(self, raw_ids: list[str]) -> list[int]:
        """The item ids (1..N) of raw item ids (ASINs, business ids), in order. Raises DataError naming the
        raw ids the dataset does not know, or if it has no raw ids at all."""
        if not self.item_raw_ids:
            raise DataError(f"{self.source or self.name}: this dataset has no raw item ids (no item map); give "
                            f"its item ids (1..{self.num_items}) instead")
        index = {raw: i for i, raw in enumerate(self.item_raw_ids, start=1)}
        unknown = [r for r in raw_ids if r not in index]
        if unknown:
            shown = ", ".join(repr(r) for r in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise DataError(f"{self.source or self.name}: unknown raw item id(s) {shown} (not in the dataset's "
                            f"item map of {self.num_items} items)")
        return [index[r] for r in raw_ids]

    def sequences_fingerprint(self) -> str:
        """sha256 over the users and their item sequences, in order: two datasets with the same item map
        (e.g. two sequence files with items 1..N, or two synthetic worlds) but different interactions
        differ here, so a run is not evaluated or compared on data it was not trained on."""
        seqs = self.sequences
        h = hashlib.sha256(f"{seqs.num_users}:{seqs.num_interactions}:{self.num_items}\n".encode())
        for array in (seqs.user_ids, seqs.offsets, seqs.items):
            h.update(np.ascontiguousarray(array, dtype="<i8").tobytes())
        return h.hexdigest()[:16]

    @property
    def num_items_seen(self) -> int:
        """How many of the item ids 1..num_items occur in some sequence."""
        return int(len(np.unique(self.sequences.items)))

    def statistics(self) -> dict:
        lengths = self.sequences.lengths
        n_int = self.sequences.num_interactions
        return {
            "name": self.name,
            "users": self.num_users,
            "items": self.num_items,
            "items_seen": self.num_items_seen,
            "interactions": n_int,
            "avg_len": round(float(lengths.mean()), 2),
            "median_len": float(np.median(lengths)),
            "min_len": int(lengths.min()),
            "max_len": int(lengths.max()),
            "density": n_int / (self.num_users * self.num_items),
            "modalities": {k: {"dim": f.dim, "present": int(f.present[1:].sum()), "encoder": f.encoder,
                               "synthetic": f.synthetic} for k, f in self.features.items()},
        }


def item_map_fingerprint(num_items: int, raw_ids: list[str] | None) -> str:
    """sha256 over the item id -> raw id map (or just the item count when there is no map)."""
    h = hashlib.sha256()
    if raw_ids is None:
        h.update(f"identity:{num_items}".encode())
    else:
        for i, raw in enumerate(raw_ids, start=1):
            h.update(f"{i}\t{raw}\n".encode())
    return h.hexdigest()[:16]


def check_finite(values: np.ndarray, what: str) -> None:
    """A feature matrix must hold finite numbers only: one NaN or inf would spread through the feature
    standardisation to every item and surface later as a diverged training loss, far from its cause.
    The error names how many entries are bad and the first one (row = item id, column)."""
    finite = np.isfinite(values)
    if finite.all():
        return
    bad = np.argwhere(~finite)
    row, col = (int(x) for x in bad[0])
    rows = np.unique(bad[:, 0])
    raise DataError(f"{what}: {len(bad)} non-finite value(s) (nan/inf) in {len(rows)} row(s); the first is "
                    f"{values[row, col]} at row {row} (item {row}), column {col}. Features must be finite: fix "
                    f"or rebuild the matrix, or mark the items that have no such content as missing")


def check_feature_alignment(f: FeatureMatrix, num_items: int, dataset: str = "dataset") -> None:
    if f.values.shape[0] != num_items + 1:
        raise DataError(f"feature {f.name!r} has {f.values.shape[0]} rows but {dataset} has {num_items} items; "
                        f"expected {num_items + 1} rows (row 0 = padding, row i = item i)")


def load_dataset(path: str | Path | None, *, min_seq_len: int = 3, modalities: tuple[str, ...] = (),
                 synthetic=None) -> RecDataset:
    """Load a dataset from a sequence file or folder, or build the embedded synthetic world.

    ``path`` may be: ``None`` (synthetic world), a ``user item ...`` text file, a prepared dataset
    folder (``dataset.json``), or a benchmark folder like ``../shared/data/amazon_beauty``.
    """
    if path is None:
        from ..config import SyntheticConfig
        from .synthetic import make_synthetic_dataset

        return make_synthetic_dataset(synthetic if synthetic is not None else SyntheticConfig())
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"data path {path} does not exist")
    if path.is_file():
        seqs, _ = read_sequence_file(path, min_len=min_seq_len)
        return RecDataset(name=path.stem, sequences=seqs, source=str(path))
    from .folders import load_folder

    return load_folder(path, min_seq_len=min_seq_len, modalities=modalities)

