"""Amazon product reviews, 2014 release (McAuley et al.).

* reviews: ``reviews_<Category>.json.gz`` or the 5-core ``reviews_<Category>_5.json.gz``,
  strict JSON lines: ``reviewerID``, ``asin``, ``unixReviewTime``, ``overall``, ...
* metadata: ``meta_<Category>.json.gz``, one Python-literal dict per line (single quotes,
  so not JSON): ``asin``, ``title``, ``brand``, ``categories`` (list of category paths),
  ``imUrl``, ... Parsed with :func:`ast.literal_eval`, never ``eval``.

Item text = title; attributes = brand followed by every category on the item's category
paths (first appearance order, duplicates once); image URL = ``imUrl``.
"""
from __future__ import annotations

from pathlib import Path

from ..dataset import RecDataset
from .jsonl import parse_python_literal, read_filtered_records, read_json_interactions
from .lines import ErrorPolicy
from .pipeline import PipelineConfig, build_dataset, clean_text

# 'asin': '0000031852'  or  "asin": "..."  (Python literal or JSON)
ASIN_PATTERN = r"""['"]asin['"]\s*:\s*['"]([^'"]+)['"]"""


def _unique(seq) -> list[str]:
    out: list[str] = []
    for s in seq:
        s = clean_text(s)
        if s and s not in out:
            out.append(s)
    return out


def extract_meta_2014(obj: dict) -> dict:
    cats = obj.get("categories") or []
    flat = [c for path in cats if isinstance(path, (list, tuple)) for c in path]
    brand = obj.get("brand")
    return {"text": clean_text(obj.get("title")),
            "attributes": _unique(([brand] if brand else []) + flat),
            "image_url": clean_text(obj.get("imUrl"))}


def read_amazon_reviews(reviews: list[Path], policy: ErrorPolicy, report: dict, progress: bool = True):
    """Both Amazon releases use the same review keys."""
    return read_json_interactions(reviews, user="reviewerID", item="asin", time="unixReviewTime",
                                  time_format=None, rating="overall", policy=policy, report=report,
                                  progress=progress)


def import_amazon2014(reviews: str | Path | list, meta: str | Path | None = None, *,
                      config: PipelineConfig = PipelineConfig(), on_error: str = "error",
                      name: str | None = None, progress: bool = True) -> RecDataset:
    """Import one Amazon 2014 category: reviews (+ metadata) -> :class:`RecDataset`."""
    return import_amazon("2014", parse_python_literal, extract_meta_2014, reviews, meta, config=config,
                         on_error=on_error, name=name, progress=progress)


def import_amazon(version: str, parse_meta, extract_meta, reviews: str | Path | list, meta: str | Path | None,
                  *, config: PipelineConfig, on_error: str, name: str | None, progress: bool) -> RecDataset:
    """Shared Amazon pipeline; the versions differ only in how a metadata line is parsed and read."""
    paths = [Path(p) for p in (reviews if isinstance(reviews, (list, tuple)) else [reviews])]
    policy = ErrorPolicy(on_error)
    report: dict = {"format": f"amazon{version}", "reviews": [str(p) for p in paths]}
    inter = read_amazon_reviews(paths, policy, report, progress)
    meta_df = None
    if meta is not None:
        kept = _kept_items(inter, config)
        meta_df = read_filtered_records(meta, kept, key_pattern=ASIN_PATTERN, parse=parse_meta,
                                        key="asin", policy=policy, extract=extract_meta, progress=progress)
        report["meta"] = str(meta)
    report.update(policy.report())
    return build_dataset(inter, name=name or _default_name(paths[0]),
                         source=f"Amazon {version}: {', '.join(map(str, paths))}", config=config, meta=meta_df,
                         report=report)


def _kept_items(inter, config: PipelineConfig):
    """Items that survive filtering (metadata is parsed only for these)."""
    from .pipeline import iterated_k_core
    import polars as pl

    df = inter
    if config.min_rating is not None and "rating" in df.columns:
        df = df.filter(pl.col("rating") >= config.min_rating)
    if config.dedup:
        df = df.unique(subset=["user", "item"])
    df, _ = iterated_k_core(df.select("user", "item"), config.k_core)
    return df["item"].unique()


def _default_name(path: Path) -> str:
    stem = path.name
    for suffix in (".gz", ".json", ".jsonl"):
        stem = stem.removesuffix(suffix)
    return stem.removeprefix("reviews_").removesuffix("_5")
