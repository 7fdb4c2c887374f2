"""The prepared dataset folder: writer and reader (layout in ``docs/data_format.md``).

::

    DIR/dataset.json          format_version, name, source, counts, item_map_fingerprint
    DIR/sequences.txt         user item item ...   (oldest first)
    DIR/item_map.tsv          item_id <TAB> raw_id  (item_id = 1..num_items, in order)
    DIR/user_map.tsv          user_id <TAB> raw_id
    DIR/item_meta.tsv         optional: item_id, raw_id, text, attributes (" | "), image_url
    DIR/features/<m>.npy      float32 (num_items + 1, dim), row 0 = padding zeros
    DIR/features/<m>.json     modality, encoder, encoder_version, dim, num_items,
                              item_map_fingerprint, missing (item ids), created

Every file is written to a temporary name and renamed, and ``dataset.json`` (or a
feature's ``.json``) is written last, so a folder or matrix without its JSON is an
interrupted write: it is refused when read, with an error naming the missing file.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from .attributes import ItemAttributes
from .dataset import FeatureMatrix, RecDataset, check_finite, item_map_fingerprint
from .sequences import INT_TOKEN, DataError, read_sequence_file

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DATASET_JSON = "dataset.json"
FEATURES_DIR = "features"
ATTRIBUTE_SEP = " | "
META_COLUMNS = ("item_id", "raw_id", "text", "attributes", "image_url")


def is_prepared(folder: str | Path) -> bool:
    return (Path(folder) / DATASET_JSON).is_file()


def clean_field(value: str | None) -> str:
    """A TSV field: tabs, newlines and carriage returns become spaces (documented in the format)."""
    if not value:
        return ""
    return " ".join(str(value).replace("\t", " ").replace("\r", " ").replace("\n", " ").split())


def clean_attribute(name: str) -> str:
    """An attribute name inside the ``" | "``-separated column: ``|`` becomes ``/``."""
    return clean_field(name).replace("|", "/")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a hidden temporary file beside ``path`` and rename it over ``path``: a reader
    sees the old file or the whole new one, never a half-written one."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# ----------------------------------------------------------------------------- writing


def write_prepared(out: str | Path, ds: RecDataset, *, overwrite: bool = False,
                   provenance: dict | None = None) -> Path:
    """Write ``ds`` as a prepared folder at ``out`` and return its path.

    Uses ``ds.item_raw_ids`` (required), ``ds.extras["user_raw_ids"]`` (optional),
    ``ds.item_text``, ``ds.extras["item_attributes"]`` (:class:`ItemAttributes`) and
    ``ds.extras["item_image_url"]`` when present. Feature matrices of ``ds`` are written too.

    An existing prepared folder is refused unless ``overwrite``; with ``overwrite``, feature
    matrices already there are kept only if they still match the new item map.
    """
    out = Path(out)
    if ds.item_raw_ids is None:
        raise DataError(f"dataset {ds.name!r} has no raw item ids; a prepared folder needs the item id map")
    if len(ds.item_raw_ids) != ds.num_items:
        raise DataError(f"dataset {ds.name!r}: {len(ds.item_raw_ids)} raw item ids for {ds.num_items} items")
    raw_ids = [clean_field(r) for r in ds.item_raw_ids]  # as item_map.tsv stores them
    first: dict[str, int] = {}
    for i, r in enumerate(raw_ids, start=1):
        j = first.setdefault(r, i)
        if ds.item_raw_ids[j - 1] != ds.item_raw_ids[i - 1]:  # distinct ids that cleaning made equal
            raise DataError(f"dataset {ds.name!r}: raw ids of items {j} and {i} ({ds.item_raw_ids[j - 1]!r}, "
                            f"{ds.item_raw_ids[i - 1]!r}) both become {r!r} in item_map.tsv (tabs and newlines "
                            f"become spaces, whitespace is trimmed and collapsed); raw item ids must stay distinct")
    if out.exists() and any(out.iterdir()):
        if not is_prepared(out):
            raise DataError(f"{out} exists, is not empty and is not a prepared dataset; choose another --out")
        if not overwrite:
            raise DataError(f"{out} already holds a prepared dataset; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    seqs = ds.sequences
    fingerprint = item_map_fingerprint(ds.num_items, raw_ids)  # of what is written, which load_dataset checks

    # sequences.txt: one line per user; numpy builds the lines without per-item Python work
    lines = []
    for u in range(seqs.num_users):  # one join per user
        lines.append(f"{seqs.user_ids[u]} " + " ".join(map(str, seqs[u].tolist())))
    atomic_write_text(out / "sequences.txt", "\n".join(lines) + "\n")

    atomic_write_text(out / "item_map.tsv", "item_id\traw_id\n" + "".join(
        f"{i}\t{r}\n" for i, r in enumerate(raw_ids, start=1)))
    user_raw = ds.extras.get("user_raw_ids")
    if user_raw is not None and len(user_raw) != seqs.num_users:
        raise DataError(f"dataset {ds.name!r}: {len(user_raw)} raw user ids for {seqs.num_users} users")
    atomic_write_text(out / "user_map.tsv", "user_id\traw_id\n" + "".join(
        f"{int(seqs.user_ids[u])}\t{clean_field(user_raw[u]) if user_raw is not None else int(seqs.user_ids[u])}\n"
        for u in range(seqs.num_users)))

    attrs: ItemAttributes | None = ds.extras.get("item_attributes")
    images: list[str] | None = ds.extras.get("item_image_url")
    has_meta = ds.item_text is not None or attrs is not None or images is not None
    if has_meta:
        rows = ["\t".join(META_COLUMNS)]
        for i in range(1, ds.num_items + 1):
            text = clean_field(ds.item_text[i - 1]) if ds.item_text is not None else ""
            att = ATTRIBUTE_SEP.join(clean_attribute(a) for a in attrs[i]) if attrs is not None else ""
            img = clean_field(images[i - 1]) if images is not None else ""
            rows.append(f"{i}\t{raw_ids[i - 1]}\t{text}\t{att}\t{img}")
        atomic_write_text(out / "item_meta.tsv", "\n".join(rows) + "\n")
    elif (out / "item_meta.tsv").exists():
        (out / "item_meta.tsv").unlink()

    for f in ds.features.values():
        write_feature(out, f.name, f.values, f.present, encoder=f.encoder, encoder_version="",
                      fingerprint=fingerprint, params={"synthetic": f.synthetic})
    _drop_stale_features(out, fingerprint, ds.num_items)

    meta = {
        "format_version": FORMAT_VERSION,
        "name": ds.name,
        "source": ds.source,
        "num_users": seqs.num_users,
        "num_items": ds.num_items,
        "num_interactions": seqs.num_interactions,
        "item_map_fingerprint": fingerprint,
        "attributes_named": bool(attrs.named) if attrs is not None else None,
        "created": _now(),
    }
    if provenance:
        meta["provenance"] = provenance
    atomic_write_text(out / DATASET_JSON, json.dumps(meta, indent=2) + "\n")
    return out


def _drop_stale_features(folder: Path, fingerprint: str, num_items: int) -> None:
    fdir = folder / FEATURES_DIR
    if not fdir.is_dir():
        return
    for js in sorted(fdir.glob("*.json")):
        try:
            info = json.loads(js.read_text())
        except (OSError, json.JSONDecodeError):
            info = {}
        if info.get("item_map_fingerprint") != fingerprint or info.get("num_items") != num_items:
            log.warning("removing feature %s: it was built for another item map", js.stem)
            js.unlink()
            (fdir / f"{js.stem}.npy").unlink(missing_ok=True)


def check_modality_name(modality: str) -> str:
    """A modality name is a file name inside ``features/``: refuse one that could leave it (checked by
    :func:`write_feature`, and by the feature builders before anything is encoded)."""
    if not isinstance(modality, str) or not modality or "/" in modality or "\\" in modality \
            or modality.startswith(".") or "\x00" in modality:
        raise DataError(f"invalid modality name {modality!r}: it names the files features/<name>.npy and "
                        f"features/<name>.json, so it must be non-empty, not start with '.' and contain no "
                        f"'/' or '\\'")
    return modality


def write_feature(folder: str | Path, modality: str, values: np.ndarray, present: np.ndarray, *,
                  encoder: str, encoder_version: str, fingerprint: str, params: dict | None = None) -> Path:
    """Write ``features/<modality>.npy`` + ``.json``. ``values`` rows of absent items must be zero."""
    check_modality_name(modality)
    folder = Path(folder)
    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.ndim != 2 or present.shape != (values.shape[0],):
        raise DataError(f"feature {modality!r}: values {values.shape} and mask {present.shape} do not agree")
    check_finite(values, f"feature {modality!r}")
    if np.any(values[0] != 0) or present[0]:
        raise DataError(f"feature {modality!r}: row 0 is padding and must be zeros / absent")
    if np.any(values[~present] != 0):
        raise DataError(f"feature {modality!r}: rows of missing items must be zeros (never random fill)")
    fdir = folder / FEATURES_DIR
    fdir.mkdir(parents=True, exist_ok=True)
    missing = [int(i) for i in np.flatnonzero(~present[1:]) + 1]
    info = {
        "modality": modality,
        "encoder": encoder,
        "encoder_version": encoder_version,
        "dim": int(values.shape[1]),
        "num_items": int(values.shape[0] - 1),
        "item_map_fingerprint": fingerprint,
        "num_missing": len(missing),
        "missing": missing,
        "dtype": "float32",
        "params": params or {},
        "created": _now(),
    }
    js = fdir / f"{modality}.json"
    js.unlink(missing_ok=True)  # the JSON marks a complete matrix: remove it before replacing the .npy
    _atomic_save_npy(fdir / f"{modality}.npy", values)
    atomic_write_text(js, json.dumps(info, indent=1) + "\n")
    return fdir / f"{modality}.npy"


# ----------------------------------------------------------------------------- reading


def read_json(path: Path):
    """Parse a JSON file; an unreadable or malformed file is a DataError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
               type(None): "null"}


def json_object(value, path: Path, what: str) -> dict:
    """``value`` if it is a JSON object, else a DataError naming the file and what was expected."""
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected {what} to be a JSON object, found {_JSON_KINDS.get(type(value), 'other')}")
    return value


def read_dataset_json(folder: str | Path) -> dict:
    path = Path(folder) / DATASET_JSON
    meta = json_object(read_json(path), path, "the top level")
    need = ("format_version", "num_users", "num_items", "num_interactions", "item_map_fingerprint")
    lacking = [k for k in need if k not in meta]
    if lacking:
        raise DataError(f"{path}: missing field(s) {lacking}")
    for k in need[:4]:
        v = meta[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if k == "format_version" else 0):
            kind = "a positive" if k == "format_version" else "a non-negative"
            raise DataError(f"{path}: {k} is {v!r}, expected {kind} integer")
    if not isinstance(meta["item_map_fingerprint"], str):
        raise DataError(f"{path}: item_map_fingerprint is {meta['item_map_fingerprint']!r}, expected a string")
    if meta["format_version"] > FORMAT_VERSION:
        raise DataError(f"{path}: format_version {meta['format_version']} is newer than this prismrec "
                        f"understands ({FORMAT_VERSION}); upgrade prismrec")
    return meta


class TsvTable:
    """A headed tab-separated table of strings: ``table.columns`` and ``table[column] -> list[str]``.

    Plain Python (no optional dependency): prepared folders must load with the core install.
    """

    def __init__(self, path: Path, columns: list[str], rows: list[list[str]]) -> None:
        self.path, self.columns = path, columns
        self._data = {c: [r[i] for r in rows] for i, c in enumerate(columns)}

    def __getitem__(self, column: str) -> list[str]:
        return self._data[column]

    def __len__(self) -> int:
        return len(next(iter(self._data.values()), []))


def read_tsv_strings(path: Path) -> TsvTable:
    """Read a headed TSV file; every row must have as many fields as the header (file:line errors)."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise DataError(f"{path}: file is missing (expected a headed TSV file; the folder may be incomplete: "
                        f"prepare it again)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as UTF-8 text: {exc}") from None
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise DataError(f"{path}: empty file (expected a header line)")
    header = lines[0].rstrip("\r").split("\t")
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        fields = line.rstrip("\r").split("\t")
        if len(fields) != len(header):
            raise DataError(f"{path}:{lineno}: expected {len(header)} tab-separated fields, found {len(fields)}")
        rows.append(fields)
    return TsvTable(path, header, rows)


def int_column(table: TsvTable, column: str) -> list[int]:
    """A column of integer ids; a non-integer names its file and line."""
    out = []
    for lineno, value in enumerate(table[column], start=2):
        if not INT_TOKEN.fullmatch(value):
            raise DataError(f"{table.path}:{lineno}: {column} {value!r} is not an integer")
        out.append(int(value))
    return out


def check_ids(path: Path, column: str, ids: list[int], expected: int) -> None:
    """``ids`` must be ``1..expected``, one per row in order; else name the first row that is off."""
    if ids == list(range(1, expected + 1)):
        return
    for row, (want, got) in enumerate(zip(range(1, expected + 1), ids)):
        if want != got:
            raise DataError(f"{path}:{row + 2}: expected {column} {want}, found {got} ({column}s run 1..{expected}, "
                            f"one row each, in order)")
    if len(ids) < expected:
        raise DataError(f"{path}: {len(ids)} rows, expected {expected} ({column} 1..{expected}); rows are missing")
    raise DataError(f"{path}:{expected + 2}: expected {expected} rows ({column} 1..{expected}), found an extra "
                    f"row with {column} {ids[expected]}")


def _read_tsv(path: Path, columns: tuple[str, ...]) -> TsvTable:
    df = read_tsv_strings(path)
    if tuple(df.columns[:len(columns)]) != columns:
        raise DataError(f"{path}: expected columns {list(columns)}, found {df.columns}")
    return df


def _read_id_column(path: Path, df: TsvTable, expected: int | None) -> None:
    column = "item_id" if "item_id" in df.columns else "user_id"
    ids = int_column(df, column)
    if expected is not None:
        check_ids(path, column, ids, expected)


def available_features(folder: str | Path) -> list[str]:
    """The modalities under ``features/``; an ``.npy`` without its ``.json`` (an interrupted write, or one
    deleted by hand) or a ``.json`` without its ``.npy`` is an error naming both files."""
    fdir = Path(folder) / FEATURES_DIR
    if not fdir.is_dir():
        return []
    names = {suffix: {p.stem for p in fdir.glob(f"*{suffix}") if not p.name.startswith(".")}  # .tmp files
             for suffix in (".npy", ".json")}
    for have, lack in ((".npy", ".json"), (".json", ".npy")):
        lone = sorted(names[have] - names[lack])
        if lone:
            m = lone[0]
            raise DataError(f"{fdir / (m + have)} has no {fdir / (m + lack)} beside it (a feature matrix is both "
                            f"files; the write was interrupted or one was deleted): rebuild it with `prismrec "
                            f"features text|clip|attributes --data {folder} --name {m}`, or delete "
                            f"{fdir / (m + have)}")
    return sorted(names[".json"])


def read_feature_info(folder: str | Path, modality: str) -> dict:
    return read_json(Path(folder) / FEATURES_DIR / f"{modality}.json")


def read_feature(folder: str | Path, modality: str, *, num_items: int, fingerprint: str) -> FeatureMatrix:
    """Load one modality, refusing it unless it was built for exactly this item map."""
    folder = Path(folder)
    info = read_feature_info(folder, modality)
    npy = folder / FEATURES_DIR / f"{modality}.npy"
    fix = (f"rebuild it with `prismrec features ... --data {folder}` (add --force)")
    if info.get("item_map_fingerprint") != fingerprint:
        raise DataError(f"feature {modality!r} in {folder} was built for item map {info.get('item_map_fingerprint')} "
                        f"but the dataset's item map is {fingerprint}: its rows may belong to other items; {fix}")
    if info.get("num_items") != num_items:
        raise DataError(f"feature {modality!r} in {folder} is for {info.get('num_items')} items but the dataset "
                        f"has {num_items}; {fix}")
    try:
        with open(npy, "rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise DataError(f"cannot read {npy}: {exc.strerror}") from None
    if magic != b"\x93NUMPY":  # np.load would call any other file "pickled (object) data"
        raise DataError(f"{npy}: not a valid .npy file (no NumPy header); {fix}")
    try:
        values = np.load(npy, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {npy}: {exc}") from None
    if values.ndim != 2 or values.shape[0] != num_items + 1:
        raise DataError(f"feature {modality!r}: {npy} has shape {values.shape}, expected ({num_items + 1}, dim) "
                        f"(row 0 = padding, row i = item i); {fix}")
    if values.shape[1] != info.get("dim"):
        raise DataError(f"feature {modality!r}: {npy} has dim {values.shape[1]} but its JSON says {info.get('dim')}")
    if values.dtype != np.float32:
        raise DataError(f"feature {modality!r}: {npy} has dtype {values.dtype}, expected float32")
    check_finite(values, f"feature {modality!r}: {npy}")
    present = np.ones(num_items + 1, dtype=bool)
    present[0] = False
    missing = np.asarray(info.get("missing", []), dtype=np.int64)
    if len(missing) and (missing.min() < 1 or missing.max() > num_items):
        raise DataError(f"feature {modality!r}: missing item ids out of range 1..{num_items}")
    present[missing] = False
    if np.any(values[~present] != 0):
        raise DataError(f"feature {modality!r}: padding row or rows of missing items are not zero in {npy}")
    return FeatureMatrix(modality, values, present, encoder=str(info.get("encoder", "unknown")),
                         synthetic=bool(info.get("params", {}).get("synthetic", False)))


def select_features(folder: Path, modalities: Iterable[str], *, num_items: int,
                    fingerprint: str) -> dict[str, FeatureMatrix]:
    """``modalities`` empty = every matrix under ``features/``; otherwise exactly those, or an error."""
    have = available_features(folder)
    wanted = list(modalities) or have
    lacking = [m for m in wanted if m not in have]
    if lacking:
        raise DataError(f"{folder}: no feature matrix for modality {', '.join(map(repr, lacking))}; "
                        f"available: {have or 'none'} (build one with `prismrec features text|clip|attributes "
                        f"--data {folder}`)")
    return {m: read_feature(folder, m, num_items=num_items, fingerprint=fingerprint) for m in wanted}


def read_prepared(folder: str | Path, *, min_seq_len: int = 3, modalities: Iterable[str] | None = ()) -> RecDataset:
    """Read a prepared folder, its metadata and the requested feature matrices.

    ``modalities``: empty = every matrix under ``features/``; ``None`` = none (metadata only).
    """
    folder = Path(folder)
    meta = read_dataset_json(folder)
    num_items = int(meta["num_items"])
    imap = _read_tsv(folder / "item_map.tsv", ("item_id", "raw_id"))
    _read_id_column(folder / "item_map.tsv", imap, num_items)
    raw_ids = imap["raw_id"]
    fingerprint = item_map_fingerprint(num_items, raw_ids)
    if fingerprint != meta["item_map_fingerprint"]:
        raise DataError(f"{folder}/item_map.tsv does not match dataset.json (fingerprint {fingerprint} != "
                        f"{meta['item_map_fingerprint']}): the folder was edited by hand; prepare it again")
    seqs, _ = read_sequence_file(folder / "sequences.txt", min_len=min_seq_len, num_items=num_items)

    extras: dict = {}
    umap_path = folder / "user_map.tsv"
    if umap_path.is_file():
        umap = _read_tsv(umap_path, ("user_id", "raw_id"))
        lookup = dict(zip(int_column(umap, "user_id"), umap["raw_id"]))
        extras["user_raw_ids"] = [lookup.get(int(u), str(int(u))) for u in seqs.user_ids]

    item_text = None
    meta_path = folder / "item_meta.tsv"
    if meta_path.is_file():
        im = _read_tsv(meta_path, META_COLUMNS)
        _read_id_column(meta_path, im, num_items)
        if im["raw_id"] != raw_ids:
            raise DataError(f"{meta_path}: raw ids differ from item_map.tsv; prepare the folder again")
        item_text = im["text"]
        attr_lists = [[a.strip() for a in s.split("|") if a.strip()] for s in im["attributes"]]
        extras["item_attributes"] = ItemAttributes.from_lists(attr_lists, named=meta.get("attributes_named") is not False)
        urls = im["image_url"]
        if any(urls):
            extras["item_image_url"] = urls
    extras["prepared"] = {k: meta[k] for k in ("num_users", "num_items", "num_interactions", "format_version")}

    features = ({} if modalities is None else
                select_features(folder, modalities, num_items=num_items, fingerprint=fingerprint))
    return RecDataset(name=str(meta.get("name") or folder.name), sequences=seqs, features=features,
                      item_raw_ids=raw_ids, item_text=item_text, source=str(meta.get("source") or folder),
                      extras=extras)


def remove_prepared(folder: str | Path) -> None:
    """Delete a prepared folder (only if it is one)."""
    folder = Path(folder)
    if not is_prepared(folder):
        raise DataError(f"{folder} is not a prepared dataset; refusing to delete it")
    shutil.rmtree(folder)
