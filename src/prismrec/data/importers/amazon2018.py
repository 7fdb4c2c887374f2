"""Amazon product reviews, 2018 release (Ni, Li and McAuley).

* reviews: ``<Category>.json.gz`` or 5-core ``<Category>_5.json.gz``, strict JSON lines with
  the same keys as 2014 (``reviewerID``, ``asin``, ``unixReviewTime``, ``overall``);
* metadata: ``meta_<Category>.json.gz``, strict JSON lines: ``asin``, ``title``, ``brand``,
  ``category`` (one list), ``imageURLHighRes`` / ``imageURL`` (lists), ...
  Repeated ``asin`` lines (present in the release) keep the first.

Item text = title (HTML removed); attributes = brand + ``category`` list; image URL = the
first high-resolution image, else the first image.
"""
from __future__ import annotations

from pathlib import Path

from ..dataset import RecDataset
from .amazon2014 import ASIN_PATTERN, _default_name, _kept_items, _unique, read_amazon_reviews
from .jsonl import parse_json, read_filtered_records
from .lines import ErrorPolicy
from .pipeline import PipelineConfig, build_dataset, clean_text


def _first(value) -> str:
    if isinstance(value, list):
        return clean_text(value[0]) if value else ""
    return clean_text(value)


def extract_meta_2018(obj: dict) -> dict:
    cats = obj.get("category") or []
    if not isinstance(cats, list):
        cats = [cats]
    brand = obj.get("brand")
    return {"text": clean_text(obj.get("title")),
            "attributes": _unique(([brand] if brand else []) + cats),
            "image_url": _first(obj.get("imageURLHighRes")) or _first(obj.get("imageURL"))}


def import_amazon2018(reviews: str | Path | list, meta: str | Path | None = None, *,
                      config: PipelineConfig = PipelineConfig(), on_error: str = "error",
                      name: str | None = None, progress: bool = True) -> RecDataset:
    """Import one Amazon 2018 category: reviews (+ metadata) -> :class:`RecDataset`."""
    paths = [Path(p) for p in (reviews if isinstance(reviews, (list, tuple)) else [reviews])]
    policy = ErrorPolicy(on_error)
    report: dict = {"format": "amazon2018", "reviews": [str(p) for p in paths]}
    inter = read_amazon_reviews(paths, policy, report, progress)
    meta_df = None
    if meta is not None:
        kept = _kept_items(inter, config)
        meta_df = read_filtered_records(meta, kept, key_pattern=ASIN_PATTERN, parse=parse_json,
                                        key="asin", policy=policy, extract=extract_meta_2018, progress=progress)
        report["meta"] = str(meta)
    report.update(policy.report())
    return build_dataset(inter, name=name or _default_name(paths[0]),
                         source=f"Amazon 2018: {', '.join(map(str, paths))}", config=config, meta=meta_df,
                         report=report)
