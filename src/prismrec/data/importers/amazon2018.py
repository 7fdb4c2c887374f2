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
from .amazon2014 import _unique, import_amazon
from .jsonl import parse_json
from .pipeline import PipelineConfig, clean_text


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
    return import_amazon("2018", parse_json, extract_meta_2018, reviews, meta, config=config,
                         on_error=on_error, name=name, progress=progress)
