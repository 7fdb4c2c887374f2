"""Leave-one-out split and padded tensors for training and evaluation (PAPER.md §3).

For a user sequence ``s`` (oldest first): the last item is the test target, the
second-to-last the validation target, and ``s[:-2]`` is the training sequence.
Training uses all-position next-item prediction over the most recent
``max_seq_len + 1`` training items. Sequences are left-padded with ``PAD_ID = 0``.

Everything is built once, vectorised over the CSR layout (no Python loop over users).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .sequences import PAD_ID, Sequences


def _window(items: np.ndarray, start: np.ndarray, end: np.ndarray, length: int) -> np.ndarray:
    """Last ``length`` items of ``items[start[u]:end[u]]`` per user, left-padded. -> (U, length)"""
    idx = end[:, None] - length + np.arange(length)[None, :]  # (U, length)
    valid = idx >= start[:, None]
    out = items[np.clip(idx, 0, max(len(items) - 1, 0))] if len(items) else np.zeros(idx.shape, np.int64)
    return np.where(valid, out, PAD_ID)


def _history(items: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """All items of ``items[start[u]:end[u]]``, right-padded to the longest. -> (U, H)"""
    width = max(int((end - start).max()), 1)
    idx = start[:, None] + np.arange(width)[None, :]
    valid = idx < end[:, None]
    out = items[np.clip(idx, 0, len(items) - 1)]
    return np.where(valid, out, PAD_ID)


@dataclass
class SplitTensors:
    """Inputs, targets and histories of one evaluation split (``valid`` or ``test``)."""

    inputs: torch.Tensor  # (U, L) int64, left-padded most recent items before the target
    targets: torch.Tensor  # (U,) int64
    history: torch.Tensor  # (U, H) int64, every item before the target (excluded from ranking), RIGHT-padded with 0


@dataclass
class LeaveOneOut:
    """Leave-one-out tensors for all users of a dataset."""

    num_items: int
    max_seq_len: int
    train_inputs: torch.Tensor  # (U, L) items at positions 0..L-1
    train_targets: torch.Tensor  # (U, L) next item at each position, PAD where no target
    train_history: torch.Tensor  # (U, H) the training sequence, 0-padded (negatives avoid these)
    valid: SplitTensors
    test: SplitTensors

    @property
    def num_users(self) -> int:
        return int(self.train_inputs.shape[0])

    def split(self, name: str) -> SplitTensors:
        if name not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', got {name!r}")
        return self.valid if name == "valid" else self.test

    @classmethod
    def build(cls, seqs: Sequences, max_seq_len: int) -> "LeaveOneOut":
        if int(seqs.lengths.min()) < 3:
            raise ValueError("leave-one-out needs at least 3 items per user")
        items, start, end = seqs.items, seqs.offsets[:-1], seqs.offsets[1:]
        train_end = end - 2  # training sequence = s[:-2]
        # all-position targets: window ending at the last training item; inputs shifted by one
        targets = _window(items, start, train_end, max_seq_len)  # (U, L)
        inputs = _window(items, start, train_end - 1, max_seq_len)  # (U, L)
        targets = np.where(inputs == PAD_ID, PAD_ID, targets)  # the first item has no input before it
        t = _as_tensor
        valid = SplitTensors(inputs=t(_window(items, start, end - 2, max_seq_len)),
                             targets=t(items[end - 2]), history=t(_history(items, start, end - 2)))
        test = SplitTensors(inputs=t(_window(items, start, end - 1, max_seq_len)),
                            targets=t(items[end - 1]), history=t(_history(items, start, end - 1)))
        return cls(num_items=seqs.num_items, max_seq_len=max_seq_len, train_inputs=t(inputs),
                   train_targets=t(targets), train_history=valid.history, valid=valid, test=test)


def next_item_inputs(seqs: Sequences, max_seq_len: int) -> SplitTensors:
    """Every user's whole sequence as the input for what comes after it (recommending, not evaluating):
    inputs = the last ``max_seq_len`` items, history = every item; ``targets`` are unknown (all PAD)."""
    items, start, end = seqs.items, seqs.offsets[:-1], seqs.offsets[1:]
    return SplitTensors(inputs=_as_tensor(_window(items, start, end, max_seq_len)),
                        targets=torch.full((len(start),), PAD_ID, dtype=torch.int64),
                        history=_as_tensor(_history(items, start, end)))


def _as_tensor(a: np.ndarray) -> torch.Tensor:
    """An int64 torch tensor sharing (when it can) the memory of the numpy array ``a``."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))


def trim_left_padding(item_seq: torch.Tensor, *aligned: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Drop leading columns that are padding for every row of the batch.

    Exact for models whose outputs do not depend on the amount of left padding (all
    backbones here: positions count from the first real item). (B, L) -> (B, L')
    """
    real_cols = (item_seq != PAD_ID).any(dim=0)  # (L,)
    if not bool(real_cols.any()):
        return (item_seq, *aligned)
    first = int(real_cols.int().argmax())
    return (item_seq[:, first:], *(t[:, first:] for t in aligned))


def pad_history(history: list[int], max_seq_len: int) -> torch.Tensor:
    """One user's history as a left-padded ``(1, max_seq_len)`` input (most recent items kept)."""
    h = list(history)[-max_seq_len:]
    return torch.tensor([[PAD_ID] * (max_seq_len - len(h)) + h], dtype=torch.int64)


def train_item_counts(seqs: Sequences) -> np.ndarray:
    """(N + 1,) int64: how often each item occurs in the training sequences (every user's s[:-2],
    the part the trainer learns from; the validation and test targets are not counted). Row 0 (padding)
    is 0."""
    return observed_item_counts(seqs, "valid")


def observed_item_counts(seqs: Sequences, split: str) -> np.ndarray:
    """(N + 1,) int64: how often each item occurs among the interactions observed before ``split``'s
    targets: every user's s[:-2] for ``valid`` (= :func:`train_item_counts`), s[:-1] for ``test`` (the
    validation items are part of the test inputs). Neither split's own targets are counted. ``all``
    counts every interaction (what is observed before a next item after the data's end, for serving
    recommendations)."""
    backs = {"valid": 2, "test": 1, "all": 0}
    if split not in backs:
        raise ValueError(f"split must be 'valid', 'test' or 'all', got {split!r}")
    back = backs[split]
    start, end = seqs.offsets[:-1], seqs.offsets[1:]
    lengths = end - start
    pos = np.arange(len(seqs.items)) - np.repeat(start, lengths)  # position within its user's sequence
    observed = pos < np.repeat(lengths - back, lengths)
    return np.bincount(seqs.items[observed], minlength=seqs.num_items + 1).astype(np.int64)
