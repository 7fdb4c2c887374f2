"""Reading interactions and filtered metadata from JSON-lines (and Python-literal) files."""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Callable, Iterable

import polars as pl

from ..sequences import DataError
from .lines import ErrorPolicy, drop_blank, iter_line_chunks, json_fields
from .pipeline import META_SCHEMA, file_order


def read_json_interactions(paths: Iterable[str | Path], *, user: str, item: str, time: str,
                           time_format: str | tuple[str, ...] | None, rating: str | None, policy: ErrorPolicy,
                           report: dict, progress: bool = True) -> pl.DataFrame:
    """Interactions (user, item, ts, order[, rating]) from JSON-lines review files.

    ``time_format`` None: ``time`` holds a number (unix seconds); else a date string parsed
    with this strftime format, or the first of several that fits (e.g. Yelp's
    ``%Y-%m-%d %H:%M:%S``, older releases ``%Y-%m-%d``).
    """
    fields: dict[str, pl.DataType] = {user: pl.String, item: pl.String,
                                      time: pl.Float64 if time_format is None else pl.String}
    if rating:
        fields[rating] = pl.Float64
    paths = [Path(p) for p in paths]
    if not paths:
        raise DataError("no review files given")
    parts = []
    blank = 0
    for fi, path in enumerate(paths):
        for chunk in iter_line_chunks(path, desc=f"reading {path.name}", progress=progress):
            df, nb = json_fields(chunk, fields, (user, item, time), path, policy)
            blank += nb
            if time_format is not None:
                formats = (time_format,) if isinstance(time_format, str) else time_format
                df = df.with_columns(pl.coalesce([pl.col(time).str.to_datetime(f, strict=False) for f in formats])
                                     .dt.epoch("s").cast(pl.Float64).alias("_t"))
                bad = df["_t"].is_null()
                if bad.any():
                    idx = bad.arg_true()
                    policy.bad(path, df["lineno"].gather(idx).to_list(),
                               [f"field {time!r} is {v!r}, expected a date like {formats[0]!r}"
                                for v in df[time].gather(idx[:5]).to_list()])
                    df = df.filter(~bad)
                df = df.drop(time).rename({"_t": time})
            cols = [pl.col(user).alias("user"), pl.col(item).alias("item"), pl.col(time).alias("ts"),
                    file_order(fi)]
            if rating:
                cols.append(pl.col(rating).alias("rating"))
            parts.append(df.select(cols))
    report["blank_lines"] = report.get("blank_lines", 0) + blank
    names = ", ".join(map(str, paths))
    if not parts:  # every file is empty
        raise DataError(f"{names}: no reviews (the file{'s are' if len(paths) > 1 else ' is'} empty); "
                        f"expected one JSON review per line")
    out = pl.concat(parts, how="vertical")
    if out.height == 0:
        raise DataError(f"{names}: no reviews found (only blank or skipped lines); "
                        f"expected one JSON review per line")
    return out


def read_filtered_records(path: str | Path, keep: pl.Series, *, key_pattern: str,
                          parse: Callable[[str], object], key: str, policy: ErrorPolicy,
                          extract: Callable[[dict], dict], progress: bool = True) -> pl.DataFrame:
    """Metadata rows (``META_SCHEMA``) for the raw ids in ``keep`` only.

    Each line's id is found with the regex ``key_pattern`` (vectorised); only lines whose id
    is kept are parsed in Python with ``parse`` (``json.loads`` or ``ast.literal_eval``) and
    turned into a row by ``extract``. Lines with no recognisable id are malformed. The
    number of parsed lines is bounded by the number of kept items, not by the file size.
    """
    path = Path(path)
    rows: list[dict] = []
    keep_ids = pl.DataFrame({"_id": keep.cast(pl.String)})
    for chunk in iter_line_chunks(path, desc=f"reading {path.name}", progress=progress):
        chunk, _ = drop_blank(chunk)
        chunk = chunk.with_columns(pl.col("line").str.extract(key_pattern, 1).alias("_id"))
        no_id = chunk["_id"].is_null()
        if no_id.any():
            idx = no_id.arg_true()
            policy.bad(path, chunk["lineno"].gather(idx).to_list(),
                       [f"no {key!r} field found in {s[:60]!r}" for s in chunk["line"].gather(idx[:5]).to_list()])
        chunk = chunk.filter(~no_id).join(keep_ids, on="_id", how="semi")
        for lineno, line in chunk.select("lineno", "line").iter_rows():  # kept items only
            try:
                obj = parse(line)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
                policy.bad(path, [lineno], [f"cannot parse line ({type(exc).__name__}: {exc})"])
                continue
            if not isinstance(obj, dict) or not obj.get(key):
                policy.bad(path, [lineno], [f"expected a record with a {key!r} field"])
                continue
            row = extract(obj)
            row["raw_id"] = str(obj[key])
            rows.append(row)
    return pl.DataFrame(rows, schema=META_SCHEMA) if rows else pl.DataFrame(schema=META_SCHEMA)


def parse_python_literal(line: str):
    """A Python-literal dict line (Amazon 2014 metadata), parsed safely: never ``eval``."""
    return ast.literal_eval(line)


def parse_json(line: str):
    return json.loads(line)
