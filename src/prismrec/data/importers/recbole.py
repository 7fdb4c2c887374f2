"""RecBole atomic files (``.inter``, ``.item``): import and export.

An atomic file is tab-separated with a header of ``name:type`` fields, types ``token``,
``token_seq`` (tokens separated by ``seq_separator``, a space by default), ``float`` and
``float_seq``. Import reads the user, item and (optional) timestamp fields of ``.inter`` and
the text/attribute/image fields of ``.item``; export writes

* ``<name>.inter``: ``user_id:token  item_id:token  timestamp:float`` with raw ids and an
  *ordinal* timestamp: a user's items get 0, 1, 2, ... in sequence order. The prepared
  format keeps order, not wall-clock times, and ordinal times make RecBole's sort by
  (user, timestamp) reproduce the sequences exactly;
* ``<name>.item`` (when item metadata exists): ``item_id:token  text:token_seq
  attributes:token_seq  image_url:token``. Attribute names become single tokens: spaces
  inside a name are replaced by ``_`` (RecBole splits token_seq on spaces), so names with
  spaces do not survive a round trip verbatim; sequences, ids and text do.

Without a timestamp field, import uses file order.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from ..dataset import RecDataset
from ..prepared import clean_field
from ..sequences import DataError
from .lines import ErrorPolicy, drop_blank, iter_line_chunks
from .pipeline import META_SCHEMA, PipelineConfig, build_dataset

TEXT_FIELD_NAMES = ("text", "title", "name", "item_name", "movie_title")
IMAGE_FIELD_NAMES = ("image_url", "img_url", "image", "imurl")


def parse_header(line: str, path: Path) -> list[tuple[str, str]]:
    cells = line.split("\t")
    words = line.split()
    if len(cells) == 1 and len(words) > 1 and all(":" in w for w in words):
        raise DataError(f"{path}:1: the header's fields {words} are separated by spaces; RecBole atomic files "
                        f"separate fields (header and rows) by tabs")
    fields = []
    for col, token in enumerate(cells, start=1):
        name, sep, typ = token.strip().rpartition(":")
        if not sep or not name or typ not in ("token", "token_seq", "float", "float_seq"):
            raise DataError(f"{path}:1: header field {col} is {token!r}; RecBole atomic headers are "
                            f"name:type with type token, token_seq, float or float_seq")
        fields.append((name, typ))
    names = [n for n, _ in fields]
    if len(set(names)) != len(names):
        raise DataError(f"{path}:1: duplicate field names in header {names}")
    return fields


def read_atomic(path: str | Path, policy: ErrorPolicy, progress: bool = True) -> tuple[pl.DataFrame, list]:
    """All fields of an atomic file as strings, plus ``lineno``; rows with the wrong field count are malformed."""
    path = Path(path)
    header = None
    parts = []
    for chunk in iter_line_chunks(path, desc=f"reading {path.name}", progress=progress):
        if header is None:
            if chunk.height == 0:
                continue
            header = parse_header(chunk["line"][0], path)
            chunk = chunk.slice(1)
        chunk, _ = drop_blank(chunk)
        n = len(header)
        split = chunk.with_columns(pl.col("line").str.split("\t").alias("_f"))
        bad = split["_f"].list.len() != n
        if bad.any():
            idx = bad.arg_true()
            got = split["_f"].list.len().gather(idx[:5]).to_list()
            policy.bad(path, split["lineno"].gather(idx).to_list(),
                       [f"expected {n} tab-separated fields (header), found {g}" for g in got])
            split = split.filter(~bad)
        parts.append(split.select("lineno", *[pl.col("_f").list.get(j).alias(name)
                                              for j, (name, _) in enumerate(header)]))
    if header is None:
        raise DataError(f"{path}: empty file (no header)")
    return pl.concat(parts) if parts else pl.DataFrame(schema={"lineno": pl.Int64, **{n: pl.String for n, _ in header}}), header


def _field(header: list, wanted: str | None, path: Path, role: str, required: bool = True) -> str | None:
    names = [n for n, _ in header]
    if wanted in names:
        return wanted
    if required:
        raise DataError(f"{path}: no {role} field {wanted!r} in header {names}; "
                        f"name it with --{role.replace(' ', '-')}-field")
    return None


def import_recbole(inter: str | Path, item: str | Path | None = None, *, config: PipelineConfig = PipelineConfig(),
                   on_error: str = "error", name: str | None = None, user_field: str = "user_id",
                   item_field: str = "item_id", time_field: str = "timestamp", rating_field: str = "rating",
                   text_field: str | None = None, attribute_fields: list[str] | None = None,
                   seq_separator: str = " ", progress: bool = True) -> RecDataset:
    """Import RecBole ``.inter`` (+ ``.item``) files -> :class:`RecDataset`."""
    inter = Path(inter)
    policy = ErrorPolicy(on_error)
    report: dict = {"format": "recbole", "inter": str(inter)}
    df, header = read_atomic(inter, policy, progress)
    uf = _field(header, user_field, inter, "user")
    itf = _field(header, item_field, inter, "item")
    tf = _field(header, time_field, inter, "time", required=False)
    rf = _field(header, rating_field, inter, "rating", required=False)
    cols = [pl.col(uf).alias("user"), pl.col(itf).alias("item"), pl.col("lineno").alias("order")]
    numeric = {}
    if tf:
        numeric["ts"] = tf
    if rf:
        numeric["rating"] = rf
    for out_name, src in numeric.items():
        val = df[src].cast(pl.Float64, strict=False)
        bad = val.is_finite().fill_null(False).not_()  # "nan" and "inf" parse, but would reorder sequences
        if bad.any():
            idx = bad.arg_true()
            policy.bad(inter, df["lineno"].gather(idx).to_list(),
                       [f"field {src!r} is {v!r}, expected a finite number" for v in df[src].gather(idx[:5]).to_list()])
            df = df.filter(~bad)
        cols.append(pl.col(src).cast(pl.Float64).alias(out_name))
    if not tf:
        cols.append(pl.lit(0.0).alias("ts"))
    frame = df.select(cols)
    empty_id = (frame["user"] == "") | (frame["item"] == "")
    if empty_id.any():
        idx = empty_id.arg_true()
        policy.bad(inter, df["lineno"].gather(idx).to_list(), ["empty user or item id"] * min(len(idx), 5))
        frame = frame.filter(~empty_id)

    meta = None
    if item is not None:
        meta = _read_item_file(Path(item), item_field, text_field, attribute_fields, seq_separator, policy, progress)
        report["item"] = str(item)
    report.update(policy.report())
    return build_dataset(frame, name=name or inter.stem, source=f"RecBole atomic: {inter}", config=config,
                         meta=meta, report=report)


def _read_item_file(path: Path, item_field: str, text_field: str | None, attribute_fields: list[str] | None,
                    sep: str, policy: ErrorPolicy, progress: bool) -> pl.DataFrame:
    df, header = read_atomic(path, policy, progress)
    types = dict(header)
    idf = _field(header, item_field, path, "item")
    if text_field is None:
        text_field = next((n for n in TEXT_FIELD_NAMES if types.get(n) in ("token", "token_seq")), None)
    elif text_field not in types:
        raise DataError(f"{path}: no text field {text_field!r} in header {list(types)}")
    image_field = next((n for n in types if n.lower() in IMAGE_FIELD_NAMES), None)
    if attribute_fields is None:
        attribute_fields = [n for n, t in header if t in ("token", "token_seq") and n not in (idf, text_field, image_field)]
    for a in attribute_fields:
        if a not in types:
            raise DataError(f"{path}: no attribute field {a!r} in header {list(types)}")
    lists = [pl.col(a).str.split(sep) if types[a] == "token_seq" else pl.concat_list(pl.col(a))
             for a in attribute_fields]
    attrs = (pl.concat_list(lists).list.eval(pl.element().filter(pl.element() != "")) if lists
             else pl.lit([], dtype=pl.List(pl.String)))
    text = pl.col(text_field).str.replace_all(sep, " ", literal=True) if text_field else pl.lit("")
    return df.select(pl.col(idf).alias("raw_id"), text.alias("text"), attrs.alias("attributes"),
                     (pl.col(image_field) if image_field else pl.lit("")).alias("image_url")).cast(META_SCHEMA)


def export_recbole(ds: RecDataset, out: str | Path, name: str | None = None) -> list[Path]:
    """Write ``<out>/<name>.inter`` (+ ``.item``) in RecBole atomic format; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = name or ds.name
    seqs = ds.sequences
    lengths = seqs.lengths
    user_raw = ds.extras.get("user_raw_ids") or [str(int(u)) for u in seqs.user_ids]
    item_raw = ds.item_raw_ids or [str(i) for i in range(1, ds.num_items + 1)]
    users = np.repeat(np.arange(seqs.num_users), lengths)  # (num_interactions,) row of each interaction
    position = np.arange(seqs.num_interactions) - np.repeat(seqs.offsets[:-1], lengths)
    frame = pl.DataFrame({
        "user_id:token": pl.Series([clean_field(u) for u in user_raw]).gather(users),
        "item_id:token": pl.Series([clean_field(r) for r in item_raw]).gather(seqs.items - 1),
        "timestamp:float": position.astype(np.float64),
    })
    paths = [out / f"{name}.inter"]
    frame.write_csv(paths[0], separator="\t", quote_style="never")
    attrs = ds.extras.get("item_attributes")
    images = ds.extras.get("item_image_url")
    if ds.item_text is not None or attrs is not None or images is not None:
        n = ds.num_items
        items = pl.DataFrame({
            "item_id:token": [clean_field(r) for r in item_raw],
            "text:token_seq": [clean_field(t) for t in ds.item_text] if ds.item_text is not None else [""] * n,
            "attributes:token_seq": ([" ".join(clean_field(a).replace(" ", "_") for a in attrs[i])
                                      for i in range(1, n + 1)] if attrs is not None else [""] * n),
            "image_url:token": [clean_field(u) for u in images] if images is not None else [""] * n,
        })
        paths.append(out / f"{name}.item")
        items.write_csv(paths[1], separator="\t", quote_style="never")
    return paths
