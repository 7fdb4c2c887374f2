"""Reading and validating ``user item item ...`` sequence files.

One line per user: a user id followed by that user's item ids, oldest first. Ids are
positive integers (``PAD_ID = 0`` is reserved for padding). Problems are reported with
file, line number and what was expected; nothing is dropped silently.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PAD_ID = 0
# an integer as data files write it; int() also takes "1_0", "+1" and non-ASCII digits
INT_TOKEN = re.compile(r"-?[0-9]+")

log = logging.getLogger(__name__)


class DataError(ValueError):
    """Input data is malformed. The message names the file, the line and the problem."""


@dataclass
class ReadReport:
    """What :func:`read_sequence_file` skipped or dropped, so callers can tell the user."""

    blank_lines: list[int] = field(default_factory=list)
    """1-based line numbers of blank lines (skipped)."""
    short_users: list[tuple[int, int, int]] = field(default_factory=list)
    """(line, user id, length) of users dropped for having fewer than ``min_len`` items."""

    def summary(self, min_len: int) -> str | None:
        parts = []
        if self.blank_lines:
            parts.append(f"skipped {len(self.blank_lines)} blank line(s) (first at line {self.blank_lines[0]})")
        if self.short_users:
            ex = ", ".join(f"user {u} at line {ln} ({n} items)" for ln, u, n in self.short_users[:3])
            parts.append(f"dropped {len(self.short_users)} user(s) with fewer than {min_len} items "
                         f"(leave-one-out needs train/valid/test items), e.g. {ex}")
        return "; ".join(parts) or None


@dataclass
class Sequences:
    """Users' chronological item sequences in compressed (CSR) form.

    ``items[offsets[u]:offsets[u + 1]]`` is user ``u``'s sequence (0-based row ``u``);
    ``user_ids[u]`` is the id from the file. Item ids are ``1..num_items``.
    """

    items: np.ndarray  # (num_interactions,) int64
    offsets: np.ndarray  # (num_users + 1,) int64
    user_ids: np.ndarray  # (num_users,) int64
    num_items: int

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_interactions(self) -> int:
        return int(self.offsets[-1])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __getitem__(self, u: int) -> np.ndarray:
        return self.items[self.offsets[u]:self.offsets[u + 1]]

    def as_lists(self) -> list[list[int]]:
        return [self[u].tolist() for u in range(self.num_users)]

    @classmethod
    def from_lists(cls, seqs: list[list[int]] | list[np.ndarray], user_ids=None,
                   num_items: int | None = None) -> "Sequences":
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        items = (np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs])
                 if len(seqs) else np.zeros(0, dtype=np.int64))
        if user_ids is None:
            user_ids = np.arange(1, len(seqs) + 1, dtype=np.int64)
        n = int(items.max()) if num_items is None and len(items) else (num_items or 0)
        if len(items) and (items.min() < 1 or items.max() > n):
            raise DataError(f"item ids must lie in 1..{n}, got {items.min()}..{items.max()}")
        return cls(items=items, offsets=offsets, user_ids=np.asarray(user_ids, dtype=np.int64), num_items=n)


def read_sequence_file(path: str | Path, min_len: int = 3, num_items: int | None = None,
                       ) -> tuple[Sequences, ReadReport]:
    """Parse a ``user item item ...`` file.

    Errors (raise :class:`DataError`): non-integer tokens, ids < 1, duplicate user ids,
    item ids above ``num_items`` when given. Blank lines are skipped and users with fewer
    than ``min_len`` items are dropped; both are listed in the returned :class:`ReadReport`.
    """
    path = Path(path)
    try:
        # bytes that are not UTF-8 become lone surrogates: the line holding one is reported below
        fh = path.open("r", encoding="utf-8-sig", errors="surrogateescape")  # -sig: a leading BOM is not data
    except OSError as exc:
        raise DataError(f"cannot open sequence file {path}: {exc.strerror}") from None
    report = ReadReport()
    seen: dict[int, int] = {}
    chunks: list[np.ndarray] = []
    users: list[int] = []
    with fh:
        for lineno, line in enumerate(fh, start=1):
            tokens = line.split()
            if not tokens:
                report.blank_lines.append(lineno)
                continue
            try:
                if not line.isascii() or "_" in line or "+" in line:
                    raise ValueError  # numpy parses with int(), which accepts these
                ids = np.array(tokens, dtype=np.int64)
            except (ValueError, OverflowError):
                raise DataError(f"{path}:{lineno}: {_token_problem(line, tokens)}") from None
            if ids.min() < 1:
                pos = int(np.argmin(ids))
                what = "user id" if pos == 0 else "item id"
                raise DataError(f"{path}:{lineno}: {what} {ids[pos]} is < 1 "
                                f"(ids start at 1; 0 is reserved for padding)")
            user = int(ids[0])
            if user in seen:
                raise DataError(f"{path}:{lineno}: duplicate user id {user} (first seen at line {seen[user]}); "
                                f"each user must have exactly one line")
            seen[user] = lineno
            seq = ids[1:]
            if num_items is not None and len(seq) and seq.max() > num_items:
                raise DataError(f"{path}:{lineno}: item id {seq.max()} exceeds the dataset's "
                                f"{num_items} items")
            if len(seq) < min_len:
                report.short_users.append((lineno, user, len(seq)))
                continue
            users.append(user)
            chunks.append(seq)
    if not users:
        raise DataError(f"{path}: no user has at least {min_len} items; nothing to train on")
    seqs = Sequences.from_lists(chunks, user_ids=users, num_items=num_items)
    msg = report.summary(min_len)
    if msg:
        log.warning("%s: %s", path, msg)
    return seqs, report


def _token_problem(line: str, tokens: list[str]) -> str:
    """Why a line's tokens are not int64 ids (only computed for the line that gets reported)."""
    undecoded = [c for c in line if "\udc80" <= c <= "\udcff"][:1]  # surrogateescape's stand-ins for bytes
    if undecoded:
        col = line.index(undecoded[0]) + 1
        return (f"not valid UTF-8 (byte {ord(undecoded[0]) - 0xdc00:#04x} at character {col}); "
                f"sequence files must be UTF-8 text")
    for t in tokens:
        if not INT_TOKEN.fullmatch(t):
            return f"expected integer ids separated by spaces, found {t!r}"
        if not -2 ** 63 <= int(t) < 2 ** 63:
            return f"id {t} is out of range (ids are 1..2**63-1)"
    odd = [c for c in line if not c.isascii()][:1]  # what is left: non-ASCII whitespace between ids
    return f"expected integer ids separated by spaces, found {odd[0]!r}" if odd else "expected integer ids"


def write_sequence_file(seqs: Sequences, path: str | Path) -> None:
    """Write sequences in the same ``user item item ...`` format."""
    with Path(path).open("w", encoding="utf-8") as fh:
        for u in range(seqs.num_users):
            fh.write(f"{seqs.user_ids[u]} {' '.join(map(str, seqs[u].tolist()))}\n")
