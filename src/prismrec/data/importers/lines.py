"""Streaming raw text files (plain or ``.gz``) as polars frames of lines, plus the
malformed-line policy shared by every importer.

Files are read in byte chunks cut at line boundaries; each chunk becomes one polars
``String`` column (``line``) with the 1-based line number of every row, so parsing is
vectorised and a bad line can still be reported as ``file:line``. Memory is bounded by
the chunk size, not by the file size.
"""
from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

import polars as pl
from tqdm.auto import tqdm

from ..sequences import DataError

OnError = Literal["error", "skip"]
CHUNK_BYTES = 32 << 20
_SEP = "\x1f"  # unit separator: never valid unescaped inside JSON; chunks holding it are split exactly


@dataclass
class ErrorPolicy:
    """What to do with a malformed line: ``error`` (default) stops with ``file:line: reason``;
    ``skip`` drops it and counts it, and the counts end up in the import report."""

    mode: OnError = "error"
    skipped: dict[str, int] = field(default_factory=dict)
    """Skipped lines per file."""
    examples: list[str] = field(default_factory=list)
    """First few ``file:line: reason`` of skipped lines."""

    def __post_init__(self) -> None:
        if self.mode not in ("error", "skip"):
            raise DataError(f"--on-error must be 'error' or 'skip', got {self.mode!r}")

    def bad(self, path: Path, line_numbers: list[int], reasons: list[str]) -> None:
        """Report malformed lines (sorted by line number); raise in ``error`` mode."""
        if not line_numbers:
            return
        if self.mode == "error":
            more = f" (and {len(line_numbers) - 1} more in this chunk)" if len(line_numbers) > 1 else ""
            raise DataError(f"{path}:{line_numbers[0]}: {reasons[0]}{more}. Fix the file, or pass "
                            f"--on-error skip to skip malformed lines (they are counted and reported)")
        self.skipped[str(path)] = self.skipped.get(str(path), 0) + len(line_numbers)
        for ln, why in zip(line_numbers, reasons):
            if len(self.examples) >= 5:
                break
            self.examples.append(f"{path}:{ln}: {why}")

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def report(self) -> dict:
        return {"on_error": self.mode, "skipped_lines": dict(self.skipped), "skipped_examples": list(self.examples)}


def _open_binary(path: Path):
    raw = path.open("rb")
    if path.suffix == ".gz":
        return raw, gzip.GzipFile(fileobj=raw, mode="rb")
    return raw, raw


def _lines_frame(piece: bytes, first_line: int) -> pl.DataFrame:
    """One chunk (no trailing newline) -> frame(lineno: Int64, line: String)."""
    expected = piece.count(b"\n") + 1
    df = None
    if _SEP.encode() not in piece:  # else polars would cut those lines at the separator
        try:
            df = pl.read_csv(io.BytesIO(piece), has_header=False, separator=_SEP, quote_char=None,
                             schema={"line": pl.String}, encoding="utf8-lossy", truncate_ragged_lines=True)
        except pl.exceptions.PolarsError:
            pass
    if df is None or df.height != expected:  # polars and we disagree on line breaks: split exactly
        df = pl.DataFrame({"line": piece.decode("utf-8", errors="replace").split("\n")}, schema={"line": pl.String})
    return df.with_columns(pl.col("line").fill_null("").str.strip_chars_end("\r"),
                           pl.int_range(first_line, first_line + df.height, dtype=pl.Int64).alias("lineno"))


def iter_line_chunks(path: str | Path, *, desc: str | None = None, chunk_bytes: int = CHUNK_BYTES,
                     progress: bool = True) -> Iterator[pl.DataFrame]:
    """Yield frames ``(line, lineno)`` covering every line of ``path`` in order (blank lines included)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input file {path} does not exist")
    total = os.path.getsize(path)
    raw, fh = _open_binary(path)
    bar = tqdm(total=total, unit="B", unit_scale=True, desc=desc or path.name, disable=not progress, leave=False)
    line_no = 1
    rest = b""
    try:
        while True:
            try:
                block = fh.read(chunk_bytes)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise DataError(f"{path}: cannot read (corrupt or truncated file?): {exc}") from None
            bar.update(raw.tell() - bar.n)
            if not block:
                if rest:
                    yield _lines_frame(rest, line_no)
                break
            buf = rest + block
            cut = buf.rfind(b"\n")
            if cut < 0:  # a single line longer than the chunk: keep reading
                rest = buf
                continue
            piece, rest = buf[:cut], buf[cut + 1:]
            frame = _lines_frame(piece, line_no)
            line_no += frame.height
            yield frame
    finally:
        bar.close()
        fh.close()
        raw.close()


def drop_blank(frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Remove blank lines (allowed anywhere in line-oriented files); return the count removed."""
    blank = frame["line"].str.strip_chars() == ""
    n = int(blank.sum())
    return (frame.filter(~blank) if n else frame), n


def _numeric(dtype: pl.DataType) -> bool:
    return dtype in (pl.Int64, pl.Float64)


def _json_reason(line: str, fields: dict[str, pl.DataType], required: tuple[str, ...]) -> str:
    """Why one line failed (only computed for the few lines that get reported)."""
    import json
    import math

    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg} at column {exc.colno})"
    except RecursionError:
        return "not valid JSON (nested too deeply)"
    if not isinstance(obj, dict):
        return f"expected a JSON object, found {type(obj).__name__}"
    for name in required:
        if obj.get(name) is None:
            return f"missing field {name!r}"
    for name, dtype in fields.items():
        value = obj.get(name)
        if value is None:  # optional and absent
            continue
        if _numeric(dtype):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"field {name!r} is {value!r}, expected a number"
            if isinstance(value, float) and not math.isfinite(value):
                return f"field {name!r} is {value!r}, expected a finite number"
        elif isinstance(value, (dict, list)):
            return f"field {name!r} is a {type(value).__name__}, expected a single value"
        elif value == "" and name in required:
            return f"field {name!r} is empty"
    return "not readable as JSON with the expected fields"


def _decode(frame: pl.DataFrame, fields: dict[str, pl.DataType], required: tuple[str, ...],
            split: bool = False) -> pl.DataFrame:
    """``lineno``, ``fields`` and ``_bad`` (not a JSON object, or a field of the wrong JSON type)
    for every line of ``frame``, in order.

    One ``json_decode`` when every line is well typed. polars rejects the whole chunk for
    one badly typed line; then :func:`_decode_per_value` reads it with nulls for the bad
    values, and if even that fails the frame is halved until the rejected lines are single.
    """
    try:
        out = frame.select("lineno", pl.col("line").str.json_decode(pl.Struct(fields)).alias("_s")).unnest("_s")
        return out.with_columns(_bool_numbers(frame, out, fields).alias("_bad"))
    except pl.exceptions.PolarsError:
        out = None if split else _decode_per_value(frame, fields, required)
    if out is not None:
        return out
    if frame.height <= 1:
        return frame.select("lineno", *[pl.lit(None, dtype=d).alias(n) for n, d in fields.items()],
                            pl.lit(True).alias("_bad"))
    mid = frame.height // 2
    return pl.concat([_decode(frame.slice(0, mid), fields, required, split=True),
                      _decode(frame.slice(mid), fields, required, split=True)])


def _bool_numbers(frame: pl.DataFrame, out: pl.DataFrame, fields: dict[str, pl.DataType]) -> pl.Series:
    """Rows where a numeric field holds ``true``/``false``, which ``json_decode`` turns into 1/0."""
    numeric = [n for n, d in fields.items() if _numeric(d)]
    flags = pl.repeat(False, out.height, eager=True).alias("_bad")
    if not numeric:
        return flags
    cand = out.select(pl.any_horizontal((pl.col(numeric) == 0) | (pl.col(numeric) == 1)).fill_null(False))
    idx = cand.to_series().arg_true()
    if len(idx):  # only the 0/1 values are read again, as text
        text = frame["line"].gather(idx).str.json_decode(pl.Struct({n: pl.String for n in numeric})).struct.unnest()
        is_bool = text.select(pl.any_horizontal(pl.col(numeric).is_in(["true", "false"])).fill_null(False))
        flags = flags.scatter(idx.filter(is_bool.to_series()), True)
    return flags


def _decode_per_value(frame: pl.DataFrame, fields: dict[str, pl.DataType],
                      required: tuple[str, ...]) -> pl.DataFrame | None:
    """Like the one-``json_decode`` path of :func:`_decode`, for a chunk with badly typed lines.

    ``read_ndjson(ignore_errors=True)`` turns a value of the wrong type into null, so a
    field that is present as text but null when typed is a wrong type. None if polars'
    readers disagree on some line (the caller then locates it by halving).
    """
    key = f"$.{required[0]}" if required else "$"
    ok = frame["line"].str.json_path_match(key).is_not_null()  # else not a JSON object with the field: bad
    rows = frame.filter(ok)

    def read(lines: pl.Series, schema: dict) -> pl.DataFrame:
        buf = io.BytesIO("\n".join(lines.to_list()).encode())
        df = pl.read_ndjson(buf, schema=schema, ignore_errors=True)
        if df.height != len(lines):
            raise pl.exceptions.ComputeError("line count changed")
        return df

    try:
        typed = read(rows["line"], fields)
        text = read(rows["line"], {n: pl.String for n in fields})
        wrong = [text[n].is_not_null() & typed[n].is_null() for n, d in fields.items() if _numeric(d)]
        strings = [n for n, d in fields.items() if not _numeric(d)]
        if strings:  # a list or object reads as its JSON text: look again at values starting like one
            starts = text.select(pl.any_horizontal(pl.col(strings).str.starts_with("[")
                                                   | pl.col(strings).str.starts_with("{")).fill_null(False))
            idx = starts.to_series().arg_true()
            flags = pl.repeat(False, rows.height, eager=True)
            if len(idx):
                lines = rows["line"].gather(idx)
                lists = read(lines, {n: pl.List(pl.String) for n in strings})
                objects = read(lines, {n: pl.Struct({}) for n in strings})
                hit = pl.any_horizontal(*[lists[n].is_not_null() | objects[n].is_not_null() for n in strings])
                flags = flags.scatter(idx.filter(pl.select(hit.fill_null(False)).to_series()), True)
            wrong.append(flags)
    except pl.exceptions.PolarsError:
        return None
    good = typed.with_columns(rows["lineno"], pl.any_horizontal(wrong).fill_null(False).alias("_bad") if wrong
                              else pl.lit(False).alias("_bad"))
    bad = frame.filter(~ok).select("lineno", *[pl.lit(None, dtype=d).alias(n) for n, d in fields.items()],
                                   pl.lit(True).alias("_bad"))
    return pl.concat([good.select(bad.columns), bad]).sort("lineno")


def json_fields(frame: pl.DataFrame, fields: dict[str, pl.DataType], required: tuple[str, ...],
                path: Path, policy: ErrorPolicy) -> tuple[pl.DataFrame, int]:
    """Decode each line as a JSON object and keep ``fields`` (plus ``lineno``).

    Malformed lines go to ``policy``: not a JSON object, a ``required`` field missing, null
    or an empty string, or any field of the wrong type (a numeric field holding a string or
    boolean, a text field holding a list or object). Returns (frame, blank lines dropped).
    Vectorised throughout; see :func:`_decode`.
    """
    frame, blank = drop_blank(frame)
    out = _decode(frame, fields, required)
    checks = [pl.col("_bad")]
    checks += [pl.col(name).is_null() for name in required]
    checks += [pl.col(name) == "" for name in required if not _numeric(fields[name])]
    mask = out.select(pl.any_horizontal(checks).fill_null(False).alias("b"))["b"]
    out = out.drop("_bad")
    if mask.any():
        idx = mask.arg_true()
        line_numbers = out["lineno"].gather(idx).to_list()
        lines = frame["line"].gather(idx[:5]).to_list()
        policy.bad(path, line_numbers, [_json_reason(s, fields, required) for s in lines])
        out = out.filter(~mask)
    return out, blank
