"""The common import pipeline: raw interactions -> k-core -> chronological sequences -> ids.

Every importer turns its source into one polars frame of interactions with columns

* ``user`` (String): raw user id,
* ``item`` (String): raw item id,
* ``ts`` (Float64): timestamp (seconds, or any monotone number; constant if unknown),
* ``order`` (Int64): position in the input (file index << 40 | line number), the tie-breaker,

and, optionally, an item metadata frame (``raw_id``, ``text``, ``attributes`` List(String),
``image_url``). :func:`build_dataset` then applies, in this order:

1. optional rating filter and de-duplication (keep the earliest of repeated user-item pairs);
2. iterated k-core: drop users and items with fewer than ``k`` interactions, repeat until
   nothing changes (the unique maximal subset where every user and item has >= k);
3. chronological order: each user's interactions sorted by ``(ts, order)`` — equal
   timestamps keep their original file order (stable tie rule);
4. id remapping in first-appearance order: users are numbered 1..U in the order their first
   interaction appears in the input; then, walking users in that order and each user's
   items oldest first, items are numbered 1..N in order of first appearance. This is the
   numbering of the S3-Rec-processed benchmark files (e.g. ``Beauty.txt``).

All of it is vectorised polars; no Python loop over interactions.
"""
from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass

import numpy as np
import polars as pl

from ..attributes import ItemAttributes
from ..dataset import RecDataset
from ..sequences import DataError, Sequences

log = logging.getLogger(__name__)

ORDER_FILE_SHIFT = 40  # order = file index << 40 | line number: 1e12 lines per file
META_SCHEMA = {"raw_id": pl.String, "text": pl.String, "attributes": pl.List(pl.String), "image_url": pl.String}


@dataclass(frozen=True)
class PipelineConfig:
    """Filtering shared by every importer."""

    k_core: int = 5
    """Iterated k-core: every kept user and item has at least this many interactions (0 or 1 = off)."""
    dedup: bool = False
    """Keep only the earliest interaction of each (user, item) pair (repeat purchases removed)."""
    min_rating: float | None = None
    """Drop interactions rated below this (None = keep all). Needs a ``rating`` column."""

    def __post_init__(self) -> None:
        if self.k_core < 0:
            raise DataError(f"k-core must be >= 0, got {self.k_core}")


def file_order(file_index: int) -> pl.Expr:
    """``order`` column from ``lineno`` for the ``file_index``-th input file."""
    return (pl.col("lineno") + (file_index << ORDER_FILE_SHIFT)).alias("order")


def iterated_k_core(df: pl.DataFrame, k: int) -> tuple[pl.DataFrame, int]:
    """Return the k-core of the user-item interaction multigraph and the number of rounds."""
    rounds = 0
    if k <= 1:
        return df, rounds
    while True:
        rounds += 1
        kept = df.filter((pl.len().over("user") >= k) & (pl.len().over("item") >= k))
        if kept.height == df.height:
            return kept, rounds
        df = kept


def clean_text(value) -> str:
    """Metadata text to one line: HTML entities decoded, tags removed, whitespace collapsed."""
    if value is None:
        return ""
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    text = html.unescape(str(value))
    text = re.sub(r"<[^>]*>", " ", text)
    return " ".join(text.split())


def empty_meta() -> pl.DataFrame:
    return pl.DataFrame(schema=META_SCHEMA)


def _nothing_left(name: str, stages: list[str], advice: str) -> DataError:
    return DataError(f"{name}: no interactions left after filtering ({', '.join(stages)}); {advice}")


def build_dataset(interactions: pl.DataFrame, *, name: str, source: str, config: PipelineConfig,
                  meta: pl.DataFrame | None = None, report: dict | None = None) -> RecDataset:
    """Run steps 1-4 (module docstring) and attach item metadata. ``report`` is extended in place."""
    report = report if report is not None else {}
    df = interactions.select("user", "item", pl.col("ts").cast(pl.Float64), pl.col("order").cast(pl.Int64),
                             *(["rating"] if "rating" in interactions.columns else []))
    report["interactions_read"] = df.height
    if df.height == 0:
        raise DataError(f"{name}: the source has no interactions (read 0); nothing to import")
    stages = [f"read {df.height:,}"]  # the count after each filter, for the message if none are left
    if config.min_rating is not None:
        if "rating" not in df.columns:
            raise DataError(f"{name}: --min-rating given but the source has no ratings")
        df = df.filter(pl.col("rating") >= config.min_rating)
        report["after_min_rating"] = df.height
        stages.append(f"{df.height:,} rated >= {config.min_rating:g} (--min-rating)")
        if df.height == 0:
            raise _nothing_left(name, stages, "lower --min-rating (or leave it out)")
    if config.dedup:
        df = df.sort(["ts", "order"]).unique(subset=["user", "item"], keep="first", maintain_order=True)
        report["after_dedup"] = df.height
        stages.append(f"{df.height:,} after --dedup")
    df, rounds = iterated_k_core(df, config.k_core)
    report.update(k_core=config.k_core, k_core_rounds=rounds, after_k_core=df.height)
    if df.height == 0:
        stages.append(f"0 in the {config.k_core}-core (--k-core)")
        raise _nothing_left(name, stages, "try a smaller --k-core (0 = off)"
                            + (" or a lower --min-rating" if config.min_rating is not None else ""))

    # chronological order within users, users in order of first appearance in the input
    df = df.with_columns(pl.col("order").min().over("user").alias("_user_first"))
    df = df.sort(["_user_first", "ts", "order"]).with_row_index("_pos")
    df = df.with_columns(
        pl.col("_user_first").rank("dense").cast(pl.Int64).alias("uid"),
        pl.col("_pos").min().over("item").rank("dense").cast(pl.Int64).alias("iid"),  # first appearance
    )
    users = df.group_by("uid", maintain_order=True).agg(pl.col("user").first(), pl.len().alias("n"))
    items = df.select("iid", "item").unique("iid").sort("iid")
    lengths = users["n"].to_numpy().astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    num_items = items.height
    seqs = Sequences(items=df["iid"].to_numpy().astype(np.int64), offsets=offsets,
                     user_ids=users["uid"].to_numpy().astype(np.int64), num_items=num_items)
    item_raw = items["item"].to_list()
    report.update(users=seqs.num_users, items=num_items, interactions=seqs.num_interactions)

    extras: dict = {"user_raw_ids": users["user"].to_list(), "import_report": report}
    item_text = None
    if meta is not None:
        meta = meta.unique("raw_id", keep="first", maintain_order=True)
        joined = (items.with_row_index("_pos").join(meta, left_on="item", right_on="raw_id", how="left")
                  .sort("_pos"))
        texts = joined["text"].fill_null("").to_list()
        attrs = joined["attributes"].fill_null(pl.lit([], dtype=pl.List(pl.String))).to_list()
        urls = joined["image_url"].fill_null("").to_list()
        item_text = texts
        extras["item_attributes"] = ItemAttributes.from_lists(attrs)
        if any(urls):
            extras["item_image_url"] = urls
        report.update(items_with_metadata=int(joined["text"].is_not_null().sum()),
                      items_with_text=sum(1 for t in texts if t),
                      items_with_attributes=sum(1 for a in attrs if a),
                      items_with_image_url=sum(1 for u in urls if u))
    return RecDataset(name=name, sequences=seqs, item_raw_ids=item_raw, item_text=item_text,
                      source=source, extras=extras)
