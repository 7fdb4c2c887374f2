"""Per-item categorical attributes (brand, categories) in compressed (CSR) form.

Row ``i`` belongs to item ``i`` (row 0 = padding, always empty), like every feature matrix.
Attribute ``j`` is named ``vocab[j]``. Some sources only give anonymous attribute ids
(``named = False``, e.g. the Sports benchmark): their vocab entries are ``attr_<id>`` and
must not be fed to a text encoder as if they were words.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .sequences import DataError


@dataclass
class ItemAttributes:
    """Attributes of items ``1..num_items``; ``indices[offsets[i]:offsets[i + 1]]`` are item ``i``'s."""

    offsets: np.ndarray  # (num_items + 2,) int64; offsets[0] == offsets[1] == 0 (row 0 = padding)
    indices: np.ndarray  # (nnz,) int64 into vocab
    vocab: list[str]
    named: bool = True
    """False when the names are placeholders for anonymous ids."""

    def __post_init__(self) -> None:
        if self.offsets.ndim != 1 or len(self.offsets) < 2 or self.offsets[0] != 0 or self.offsets[1] != 0:
            raise DataError("ItemAttributes.offsets must start with [0, 0] (row 0 = padding has no attributes)")
        if int(self.offsets[-1]) != len(self.indices):
            raise DataError(f"ItemAttributes: offsets end at {int(self.offsets[-1])} but there are "
                            f"{len(self.indices)} attribute entries")
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= len(self.vocab)):
            raise DataError(f"ItemAttributes: attribute index out of range 0..{len(self.vocab) - 1}")

    @property
    def num_items(self) -> int:
        return len(self.offsets) - 2

    @property
    def num_attributes(self) -> int:
        return len(self.vocab)

    def ids_of(self, item: int) -> np.ndarray:
        return self.indices[self.offsets[item]:self.offsets[item + 1]]

    def __getitem__(self, item: int) -> list[str]:
        """Attribute names of item ``item`` (1-based item id)."""
        return [self.vocab[j] for j in self.ids_of(item)]

    def as_lists(self) -> list[list[str]]:
        """Names per item, index ``i - 1`` for item ``i``."""
        return [self[i] for i in range(1, self.num_items + 1)]

    def counts(self) -> np.ndarray:
        """(num_items + 1,) number of attributes per item (row 0 = 0)."""
        return np.diff(self.offsets)

    def multi_hot(self):
        """``scipy.sparse.csr_matrix`` of shape (num_items + 1, num_attributes), float32, row 0 empty."""
        from scipy.sparse import csr_matrix

        data = np.ones(len(self.indices), dtype=np.float32)
        m = csr_matrix((data, self.indices, self.offsets), shape=(self.num_items + 1, len(self.vocab)))
        m.sum_duplicates()
        m.data[:] = 1.0  # an attribute listed twice is still one attribute
        return m

    @classmethod
    def from_lists(cls, per_item: Sequence[Iterable[str]], vocab: Sequence[str] | None = None,
                   named: bool = True) -> "ItemAttributes":
        """Build from names per item (index ``i - 1`` = item ``i``).

        Without ``vocab`` the vocabulary is the names in order of first appearance over items
        1..N, which is deterministic for a given item order. Duplicate names within an item
        are kept once.
        """
        index: dict[str, int] = {name: j for j, name in enumerate(vocab)} if vocab is not None else {}
        voc = list(vocab) if vocab is not None else []
        lengths = np.zeros(len(per_item) + 1, dtype=np.int64)
        flat: list[int] = []
        for i, names in enumerate(per_item, start=1):  # one pass over items (not interactions)
            seen: set[int] = set()
            for name in names:
                j = index.get(name)
                if j is None:
                    if vocab is not None:
                        raise DataError(f"item {i}: attribute {name!r} is not in the given vocabulary")
                    j = index[name] = len(voc)
                    voc.append(name)
                if j not in seen:
                    seen.add(j)
                    flat.append(j)
            lengths[i] = len(seen)
        offsets = np.zeros(len(per_item) + 2, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(offsets=offsets, indices=np.asarray(flat, dtype=np.int64), vocab=voc, named=named)

    @classmethod
    def empty(cls, num_items: int) -> "ItemAttributes":
        return cls(offsets=np.zeros(num_items + 2, dtype=np.int64), indices=np.zeros(0, dtype=np.int64), vocab=[])
