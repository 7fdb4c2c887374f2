"""Paired comparison of finished runs on the same users, from the ranks they saved.

Every run directory holds ``ranks.npz``: each user's valid and test target rank (row u = user u of
the dataset). A per-user metric follows from a rank alone (HR@K, NDCG@K, MRR@K, as in
:mod:`.metrics`), so two runs, or two groups of runs (seeds), are compared user by user without
re-scoring: each user's metric is averaged over a group's runs, then the two groups are compared by a
paired t-test and a Wilcoxon signed-rank test over users. ``prismrec compare`` prints this.

:func:`compare_by_group` repeats the comparison inside groups of users (:data:`GROUPINGS`: how often
the target item occurs in the training sequences, or how long the history that predicts it is), to
show *where* one model gains or loses (``prismrec compare --by``).
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.sequences import DataError, Sequences
from ..data.split import train_item_counts

RANKS_FILE = "ranks.npz"
_METRIC = re.compile(r"^(HR|NDCG|MRR)@([1-9][0-9]*)$")


def parse_metric(metric: str) -> tuple[str, int]:
    """``"NDCG@10"`` -> ``("NDCG", 10)``; a ``ValueError`` naming the accepted forms otherwise."""
    m = _METRIC.match(metric.strip().upper().replace("RECALL", "HR"))
    if not m:
        raise ValueError(f"unknown metric {metric!r}: expected HR@K, Recall@K, NDCG@K or MRR@K with K >= 1")
    return m.group(1), int(m.group(2))


def per_user_metric(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Each user's value of ``metric`` (e.g. ``"NDCG@10"``) from 1-based target ranks; its mean is
    the metric that :func:`.metrics.metrics_from_ranks` reports."""
    name, k = parse_metric(metric)
    r = np.asarray(ranks, dtype=np.float64)
    hit = r <= k
    if name == "HR":
        return hit.astype(np.float64)
    if name == "NDCG":
        return np.where(hit, 1.0 / np.log2(r + 1.0), 0.0)
    return np.where(hit, 1.0 / r, 0.0)


@dataclass(frozen=True)
class PairedTest:
    """A against B on the same users: means, relative change of A over B, and two-sided p-values."""

    metric: str
    mean_a: float
    mean_b: float
    mean_diff: float
    relative: float | None  # (mean_a - mean_b) / mean_b; None when mean_b is 0
    t_stat: float
    t_pvalue: float
    wilcoxon_pvalue: float
    users: int

    def to_dict(self) -> dict:
        return asdict(self)


def paired_test(a: np.ndarray, b: np.ndarray, metric: str = "NDCG@10") -> PairedTest:
    """Paired t-test and Wilcoxon signed-rank test of per-user values ``a`` against ``b``.

    Identical values (every difference zero) carry no evidence of a difference: both p-values are
    1 and the t statistic 0, instead of scipy's NaN or error."""
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values must be two 1-d arrays of one length, got {a.shape} and {b.shape}")
    diff = a - b
    if np.any(diff != 0):
        t = stats.ttest_rel(a, b)
        t_stat, t_p = float(t.statistic), float(t.pvalue)
        w_p = float(stats.wilcoxon(a, b, zero_method="wilcox").pvalue)
    else:
        t_stat, t_p, w_p = 0.0, 1.0, 1.0
    mean_b = float(b.mean()) if len(b) else 0.0
    return PairedTest(metric=metric, mean_a=float(a.mean()) if len(a) else 0.0, mean_b=mean_b,
                      mean_diff=float(diff.mean()) if len(diff) else 0.0,
                      relative=float(diff.mean() / mean_b) if mean_b > 0 else None,
                      t_stat=t_stat, t_pvalue=t_p, wilcoxon_pvalue=w_p, users=int(len(a)))


@dataclass(frozen=True)
class SavedRanks:
    run_dir: Path
    ranks: np.ndarray  # (U,) 1-based target ranks of one split
    user_ids: np.ndarray | None  # (U,) as saved by the run; None in folders that kept none
    fingerprint: str | None  # summary.json's item_map_fingerprint, where there is one
    sequences_fingerprint: str | None = None  # summary.json's sequences_fingerprint (runs since 2026-12-06)


def load_ranks(run_dir: str | Path, split: str = "test") -> SavedRanks:
    """The per-user target ranks one run saved for ``split`` (``valid`` or ``test``)."""
    run_dir = Path(run_dir)
    path = run_dir / RANKS_FILE
    if not path.is_file():
        what = ("a finished run directory written by `prismrec train`" if run_dir.is_dir()
                else "an existing run directory")
        raise DataError(f"{path}: not found; expected {what}")
    try:
        with np.load(path, allow_pickle=False) as z:
            if split not in z.files:
                raise DataError(f"{path} holds no {split!r} ranks (it has: {', '.join(z.files)})")
            ranks = np.asarray(z[split])
            user_ids = np.asarray(z["user_ids"]) if "user_ids" in z.files else None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable ranks file ({exc})") from None
    if ranks.ndim != 1 or not np.issubdtype(ranks.dtype, np.integer) or (len(ranks) and ranks.min() < 1):
        raise DataError(f"{path}: {split!r} must be a 1-d array of integer ranks >= 1, got "
                        f"shape {ranks.shape}, dtype {ranks.dtype}")
    info = {}
    summary = run_dir / "summary.json"
    if summary.is_file():
        try:
            info = json.loads(summary.read_text())
        except (OSError, ValueError):
            info = {}
    info = info if isinstance(info, dict) else {}
    return SavedRanks(run_dir, ranks, user_ids, info.get("item_map_fingerprint"), info.get("sequences_fingerprint"))


def _check_same_users(saved: Sequence[SavedRanks]) -> None:
    ref = saved[0]
    for s in saved[1:]:
        if len(s.ranks) != len(ref.ranks):
            raise DataError(f"{s.run_dir / RANKS_FILE} holds {len(s.ranks):,} users but "
                            f"{ref.run_dir / RANKS_FILE} {len(ref.ranks):,}: were the runs trained on one dataset?")
        if ref.fingerprint and s.fingerprint and ref.fingerprint != s.fingerprint:
            raise DataError(f"{s.run_dir} and {ref.run_dir} were trained on different item maps "
                            f"(item_map_fingerprint {s.fingerprint} vs {ref.fingerprint} in summary.json)")
        if ref.sequences_fingerprint and s.sequences_fingerprint and ref.sequences_fingerprint != s.sequences_fingerprint:
            raise DataError(f"{s.run_dir} and {ref.run_dir} were trained on different interactions "
                            f"(sequences_fingerprint {s.sequences_fingerprint} vs {ref.sequences_fingerprint} in "
                            f"summary.json): their users' ranks are not paired")
        if ref.user_ids is not None and s.user_ids is not None and not np.array_equal(ref.user_ids, s.user_ids):
            first = int(np.flatnonzero(ref.user_ids != s.user_ids)[0])
            raise DataError(f"{s.run_dir / RANKS_FILE} and {ref.run_dir / RANKS_FILE} list the users in "
                            f"different orders (row {first}: user {s.user_ids[first]} vs {ref.user_ids[first]})")


def _per_user_sides(runs_a: Sequence[str | Path], runs_b: Sequence[str | Path], split: str,
                    metrics: Sequence[str]) -> tuple[list[SavedRanks], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The runs' saved ranks (checked to be of the same users) and, per metric (canonical name), each
    user's value averaged over side A's runs and over side B's: ``{metric: (a (U,), b (U,))}``."""
    if not runs_a or not runs_b:
        raise ValueError("a comparison needs at least one run on each side")
    sides_of: dict[Path, list[str]] = {}
    for side, runs in (("A", runs_a), ("B", runs_b)):
        for r in runs:
            sides_of.setdefault(Path(r).resolve(), []).append(side)
    for path, sides in sides_of.items():
        if len(sides) > 1:  # the same run on both sides says nothing; twice on one side counts it twice
            where = "on both sides" if set(sides) == {"A", "B"} else f"twice on side {sides[0]}"
            raise DataError(f"{path}: the same run is given {where}; each run may appear once in a comparison")
    metrics = [f"{name}@{k}" for name, k in map(parse_metric, metrics)]  # canonical names
    a = [load_ranks(r, split) for r in runs_a]
    b = [load_ranks(r, split) for r in runs_b]
    _check_same_users(a + b)
    return a + b, {m: (np.mean([per_user_metric(s.ranks, m) for s in a], axis=0),
                       np.mean([per_user_metric(s.ranks, m) for s in b], axis=0)) for m in metrics}


def compare_runs(runs_a: Sequence[str | Path], runs_b: Sequence[str | Path], *, split: str = "test",
                 metrics: Sequence[str] = ("NDCG@10", "HR@10")) -> list[PairedTest]:
    """Group A (one run or several seeds) against group B on the same users, one test per metric.

    Each user's metric is averaged over a group's runs before the paired tests, so seeds reduce the
    noise of the comparison instead of counting as extra users."""
    _, sides = _per_user_sides(runs_a, runs_b, split, metrics)
    return [paired_test(va, vb, m) for m, (va, vb) in sides.items()]


# ---------------------------------------------------------------------------- by groups of users
GROUPINGS: dict[str, tuple[int, ...]] = {
    # how often the split's target item occurs in the training sequences (every user's s[:-2])
    "target-count": (0, 5, 10, 20, 50, 100),
    # how many items the history that predicts the split's target holds
    "history-length": (0, 5, 8, 12, 20),
}
"""Lower edges of the user groups of each grouping; a group is [edge, next edge), the last one open."""


def user_groups(sequences: Sequences, split: str = "test") -> dict[str, np.ndarray]:
    """Per user, in the dataset's order, the value each of :data:`GROUPINGS` groups by for ``split``:
    ``target-count`` (training occurrences of the target item) and ``history-length``."""
    if split not in ("valid", "test"):
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
    back = 1 if split == "test" else 2  # the target's place from the end of each sequence
    end = sequences.offsets[1:]
    counts = train_item_counts(sequences)
    return {"target-count": counts[sequences.items[end - back]],
            "history-length": np.diff(sequences.offsets) - back}


def group_label(lo: int, hi: int | None) -> str:
    """``"5-9"`` for [5, 10); ``"100+"`` for the open last group (``hi`` None)."""
    return f"{lo}+" if hi is None else (str(lo) if hi - lo == 1 else f"{lo}-{hi - 1}")


def group_masks(values: np.ndarray, edges: Sequence[int]) -> list[tuple[str, np.ndarray]]:
    """(label, boolean mask over users) for each group [edges[i], edges[i + 1]) of ``values``, the last
    group open-ended; empty groups are left out."""
    values = np.asarray(values)
    out = []
    for i, lo in enumerate(edges):
        hi = edges[i + 1] if i + 1 < len(edges) else None
        mask = (values >= lo) & (values < hi) if hi is not None else values >= lo
        if mask.any():
            out.append((group_label(lo, hi), mask))
    return out


@dataclass(frozen=True)
class GroupComparison:
    group: str  # e.g. "5-9"
    users: int
    tests: list[PairedTest]  # one per metric, on this group's users

    def to_dict(self) -> dict:
        return {"group": self.group, "users": self.users, "tests": [t.to_dict() for t in self.tests]}


def compare_by_group(runs_a: Sequence[str | Path], runs_b: Sequence[str | Path], sequences: Sequences, by: str, *,
                     split: str = "test", metrics: Sequence[str] = ("NDCG@10",)) -> list[GroupComparison]:
    """:func:`compare_runs` inside each group of users of the grouping ``by`` (a key of :data:`GROUPINGS`).
    ``sequences`` is the dataset the runs were trained on (row u of every ranks file = its user u)."""
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}; expected one of {', '.join(GROUPINGS)}")
    saved, sides = _per_user_sides(runs_a, runs_b, split, metrics)
    users = len(sequences.offsets) - 1
    for s in saved:
        if len(s.ranks) != users:
            raise DataError(f"{s.run_dir / RANKS_FILE} holds {len(s.ranks):,} users but the dataset {users:,}: "
                            f"was the run trained on it?")
        if s.user_ids is not None and not np.array_equal(s.user_ids, sequences.user_ids):
            first = int(np.flatnonzero(s.user_ids != sequences.user_ids)[0])
            raise DataError(f"{s.run_dir / RANKS_FILE} lists its users in another order than the dataset "
                            f"(row {first}: user {s.user_ids[first]} vs {sequences.user_ids[first]})")
    return _tests_in_groups(sides, group_masks(user_groups(sequences, split)[by], GROUPINGS[by]))


def compare_in_groups(runs_a: Sequence[str | Path], runs_b: Sequence[str | Path],
                      groups: Sequence[tuple[str, np.ndarray]], *, split: str = "test",
                      metrics: Sequence[str] = ("NDCG@10",)) -> list[GroupComparison]:
    """:func:`compare_runs` inside each of the caller's groups of users: ``groups`` holds (label, mask), each
    mask a boolean array over the ranks files' rows (e.g. the planted user types of the synthetic world)."""
    saved, sides = _per_user_sides(runs_a, runs_b, split, metrics)
    users = len(saved[0].ranks)
    groups = [(label, np.asarray(mask)) for label, mask in groups]  # e.g. lists of bools
    for label, mask in groups:
        if mask.dtype != bool or mask.shape != (users,):
            raise ValueError(f"group {label!r}: expected a boolean mask of {users:,} users (the rows of "
                             f"{saved[0].run_dir / RANKS_FILE}), got dtype {mask.dtype}, shape {mask.shape}")
    return _tests_in_groups(sides, groups)


def _tests_in_groups(sides: dict[str, tuple[np.ndarray, np.ndarray]],
                     groups: Sequence[tuple[str, np.ndarray]]) -> list[GroupComparison]:
    return [GroupComparison(label, int(mask.sum()), [paired_test(va[mask], vb[mask], m) for m, (va, vb) in sides.items()])
            for label, mask in groups]
