"""The Yelp open dataset.

* reviews: ``yelp_academic_dataset_review.json``, JSON lines: ``user_id``, ``business_id``,
  ``stars``, ``date`` (``YYYY-MM-DD HH:MM:SS``), ...
* businesses: ``yelp_academic_dataset_business.json``, JSON lines: ``business_id``, ``name``,
  ``city``, ``categories`` (a ``", "``-separated string; a list in some older releases), ...

Item text = business name; attributes = categories. Yelp has no image URLs in these files
(photos are a separate download), so no image column is produced.
"""
from __future__ import annotations

from pathlib import Path

from ..dataset import RecDataset
from .amazon2014 import _kept_items, _unique
from .jsonl import parse_json, read_filtered_records, read_json_interactions
from .lines import ErrorPolicy
from .pipeline import PipelineConfig, build_dataset, clean_text

BUSINESS_PATTERN = r'"business_id"\s*:\s*"([^"]+)"'
DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d")


def extract_business(obj: dict) -> dict:
    cats = obj.get("categories") or []
    if isinstance(cats, str):
        cats = cats.split(",")
    return {"text": clean_text(obj.get("name")), "attributes": _unique(cats), "image_url": ""}


def import_yelp(reviews: str | Path | list, business: str | Path | None = None, *,
                config: PipelineConfig = PipelineConfig(), on_error: str = "error",
                name: str = "yelp", progress: bool = True) -> RecDataset:
    """Import Yelp reviews (+ businesses) -> :class:`RecDataset`."""
    paths = [Path(p) for p in (reviews if isinstance(reviews, (list, tuple)) else [reviews])]
    policy = ErrorPolicy(on_error)
    report: dict = {"format": "yelp", "reviews": [str(p) for p in paths]}
    inter = read_json_interactions(paths, user="user_id", item="business_id", time="date",
                                   time_format=DATE_FORMATS, rating="stars", policy=policy, report=report,
                                   progress=progress)
    meta_df = None
    if business is not None:
        kept = _kept_items(inter, config)
        meta_df = read_filtered_records(business, kept, key_pattern=BUSINESS_PATTERN, parse=parse_json,
                                        key="business_id", policy=policy, extract=extract_business,
                                        progress=progress)
        report["business"] = str(business)
    report.update(policy.report())
    return build_dataset(inter, name=name, source=f"Yelp: {', '.join(map(str, paths))}", config=config,
                         meta=meta_df, report=report)
