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
_SEP = "\x1f"  # unit separator: never valid unescaped inside JSON, so a line is one field


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
    df = pl.read_csv(io.BytesIO(piece), has_header=False, separator=_SEP, quote_char=None,
                     schema={"line": pl.String}, encoding="utf8-lossy", truncate_ragged_lines=True)
    if df.height != expected:  # polars and we disagree on line breaks: fall back to exact splitting
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


def _json_reason(line: str, required: dict[str, pl.DataType]) -> str:
    """Why one line failed (only computed for the few lines that get reported)."""
    import json

    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(obj, dict):
        return f"expected a JSON object, found {type(obj).__name__}"
    for name in required:
        if obj.get(name) is None:
            return f"missing field {name!r}"
    for name, dtype in required.items():
        value = obj[name]
        numeric = dtype in (pl.Int64, pl.Float64)
        if numeric and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"field {name!r} is {value!r}, expected a number"
        if not numeric and isinstance(value, (dict, list)):
            return f"field {name!r} is a {type(value).__name__}, expected a single value"
    return "a required field has an unusable value"


def json_fields(frame: pl.DataFrame, fields: dict[str, pl.DataType], required: tuple[str, ...],
                path: Path, policy: ErrorPolicy) -> tuple[pl.DataFrame, int]:
    """Decode each line as a JSON object and keep ``fields`` (plus ``lineno``).

    Lines that are not JSON objects or lack a usable value for a ``required`` field are
    malformed and go to ``policy``. Returns (frame, blank lines dropped). Fast path: one
    ``json_decode`` into a struct; if polars rejects the chunk, each field is extracted
    separately so the bad lines can be found and named.
    """
    frame, blank = drop_blank(frame)
    try:
        out = frame.select("lineno", pl.col("line").str.json_decode(pl.Struct(fields)).alias("_s")).unnest("_s")
    except pl.exceptions.PolarsError:
        out = frame.select("lineno", *[
            pl.col("line").str.json_path_match(f"$.{name}").cast(dtype, strict=False).alias(name)
            for name, dtype in fields.items()])
    bad = pl.any_horizontal(pl.col(list(required)).is_null()) if required else pl.lit(False)
    mask = out.select(bad.alias("b"))["b"]
    if mask.any():
        idx = mask.arg_true()
        line_numbers = out["lineno"].gather(idx).to_list()
        req = {k: fields[k] for k in required}
        lines = frame["line"].gather(idx[:5]).to_list()
        policy.bad(path, line_numbers, [_json_reason(s, req) for s in lines])
        out = out.filter(~mask)
    return out, blank
