"""What the top-K recommendation lists contain, beyond accuracy: catalogue coverage, concentration,
and how popular the listed items are, against how popular the targets are.

Accuracy metrics say how often a model puts the target in its list; these say which items it lists
at all. A model that recommends only popular items can score well on average and still fail every
user whose next item is rare, which is where content features ought to help. Popularity is an
item's count in the training sequences (every user's s[:-2], :func:`..data.split.train_item_counts`),
grouped like ``prismrec compare --by target-count`` (:data:`.compare.GROUPINGS`).

``prismrec evaluate --run DIR --lists K`` prints these for a saved run.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .compare import GROUPINGS, group_label


@dataclass(frozen=True)
class ListStats:
    """Statistics of U users' top-K lists over a catalogue of N items (list slots holding 0, for users
    with fewer than K recommendable items, are left out of every figure)."""

    k: int
    users: int
    coverage: float  # distinct listed items / N
    gini: float  # Gini coefficient of how often each of the N items is listed (0 = even, -> 1 = a few items)
    mean_log2_count_listed: float  # mean of log2(1 + training count) over the list slots
    mean_log2_count_targets: float  # the same over the users' targets
    groups: list[dict]  # per training-count group: share of list slots, of targets, of hits

    def to_dict(self) -> dict:
        return asdict(self)


def gini(frequencies: np.ndarray) -> float:
    """Gini coefficient of non-negative ``frequencies`` (one per item): 0 when every item occurs
    equally often, (n - 1) / n when one item takes everything."""
    x = np.sort(np.asarray(frequencies, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float(((2 * ranks - n - 1) * x).sum() / (n * total))


def list_stats(top: np.ndarray, targets: np.ndarray, item_counts: np.ndarray,
               edges: tuple[int, ...] = GROUPINGS["target-count"]) -> ListStats:
    """Statistics of the lists ``top`` (U, K) item ids (0 = empty slot) for users whose targets are
    ``targets`` (U,); ``item_counts`` (N + 1,) is each item's training count (row 0 = padding).

    ``groups``: for each training-count group [edge, next edge), the share of all list slots that
    hold an item of the group (``listed``), the share of targets in it (``targets``), and the share of
    the hits (target in the list) whose target is in it (``hits``). A model that under-recommends rare
    items lists them far less often than they occur as targets."""
    top = np.asarray(top)
    targets = np.asarray(targets)
    counts = np.asarray(item_counts)
    if top.ndim != 2 or top.shape[0] != targets.shape[0]:
        raise ValueError(f"top must be (users, K) with one row per target; got {top.shape} for {targets.shape[0]} targets")
    n_items = len(counts) - 1
    filled = top != 0
    listed = top[filled]
    freq = np.bincount(listed, minlength=n_items + 1)[1:]
    hit = (top == targets[:, None]).any(axis=1)

    def group_of(c: np.ndarray) -> np.ndarray:  # index of each count's group
        return np.searchsorted(np.asarray(edges), c, side="right") - 1

    g_listed = np.bincount(group_of(counts[listed]), minlength=len(edges))
    g_target = np.bincount(group_of(counts[targets]), minlength=len(edges))
    g_hit = np.bincount(group_of(counts[targets[hit]]), minlength=len(edges))
    groups = []
    for i, lo in enumerate(edges):
        hi = edges[i + 1] if i + 1 < len(edges) else None
        groups.append({"group": group_label(lo, hi),
                       "listed": float(g_listed[i] / max(len(listed), 1)),
                       "targets": float(g_target[i] / max(len(targets), 1)),
                       "hits": float(g_hit[i] / max(int(hit.sum()), 1)),
                       "hit_rate": float(g_hit[i] / g_target[i]) if g_target[i] else None})
    return ListStats(
        k=int(top.shape[1]), users=int(top.shape[0]),
        coverage=float((freq > 0).sum() / max(n_items, 1)), gini=gini(freq),
        mean_log2_count_listed=float(np.log2(1.0 + counts[listed]).mean()) if len(listed) else float("nan"),
        mean_log2_count_targets=float(np.log2(1.0 + counts[targets]).mean()) if len(targets) else float("nan"),
        groups=groups)


def format_list_stats(stats: ListStats) -> str:
    """A plain-text table of :class:`ListStats` for the terminal."""
    lines = [f"top-{stats.k} lists of {stats.users:,} users: catalogue coverage {stats.coverage:.1%}, "
             f"Gini of listings {stats.gini:.3f}",
             f"mean log2(1 + training count): listed items {stats.mean_log2_count_listed:.2f}, "
             f"targets {stats.mean_log2_count_targets:.2f}",
             "",
             f"{'train count':<12} {'listed':>8} {'targets':>8} {'hits':>8} {'HR@' + str(stats.k):>8}"]
    for g in stats.groups:
        hr = "-" if g["hit_rate"] is None else f"{g['hit_rate']:.4f}"
        lines.append(f"{g['group']:<12} {g['listed']:8.1%} {g['targets']:8.1%} {g['hits']:8.1%} {hr:>8}")
    return "\n".join(lines)
