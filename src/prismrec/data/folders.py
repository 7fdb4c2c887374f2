"""Reading dataset folders: benchmark folders like ``../shared/data/amazon_beauty`` and
prepared dataset folders (see ``docs/data_format.md``).

A benchmark folder holds (see ``../shared/data/README.md``): ``<Name>.txt`` (sequences),
``datamaps.json`` (raw user/item ids), ``<Name>_item2attributes.json`` (attribute ids per
item), ``item_generative_indexing_phase_0.txt`` (short text per raw item id) and
``derived/item_meta.tsv`` (the join of all of these, one row per item id). Benchmark
folders are read-only and carry no feature matrices: prepare them first
(``prismrec data prepare folder``) and build features into the prepared copy.
"""
from __future__ import annotations

import logging
from pathlib import Path

from .attributes import ItemAttributes
from .dataset import RecDataset
from .prepared import (DATASET_JSON, FEATURES_DIR, check_ids, int_column, is_prepared, json_object, read_json,
                       read_prepared, read_tsv_strings)
from .sequences import INT_TOKEN, DataError, read_sequence_file

log = logging.getLogger(__name__)


def find_sequence_file(folder: Path) -> Path:
    """The ``user item item ...`` file of a folder: ``sequences.txt`` or the single ``<Name>.txt``."""
    if (folder / "sequences.txt").is_file():
        return folder / "sequences.txt"
    cands = [p for p in sorted(folder.glob("*.txt")) if not p.name.startswith("item_generative_indexing")]
    if len(cands) != 1:
        raise DataError(f"{folder}: expected exactly one sequence file (sequences.txt or <Name>.txt), "
                        f"found {[p.name for p in cands] or 'none'}")
    return cands[0]


def load_folder(folder: Path, *, min_seq_len: int = 3, modalities: tuple[str, ...] = ()) -> RecDataset:
    """A prepared folder (``dataset.json``) or a benchmark folder, as a :class:`RecDataset`."""
    folder = Path(folder)
    if is_prepared(folder):
        return read_prepared(folder, min_seq_len=min_seq_len, modalities=modalities)
    if (folder / FEATURES_DIR).is_dir():  # a prepared folder without dataset.json, not a benchmark folder
        raise DataError(f"{folder / DATASET_JSON} is missing, but {folder / FEATURES_DIR} is there: a prepared "
                        f"folder is complete only with its dataset.json (written last; deleted, or the preparation "
                        f"was interrupted); prepare the folder again with `prismrec data prepare`")
    if modalities:
        raise DataError(f"{folder} is a raw/benchmark folder without feature matrices, but modalities "
                        f"{list(modalities)} were requested; prepare it first: `prismrec data prepare folder "
                        f"--from-folder {folder} --out DIR`, then `prismrec features text --data DIR`")
    return load_benchmark_folder(folder, min_seq_len=min_seq_len)


def _id_list(mapping: dict, n: int, path: Path, what: str) -> list[str]:
    try:
        ids = [mapping[str(i)] for i in range(1, n + 1)]
    except KeyError as exc:
        raise DataError(f"{path}: {what} ids are not contiguous 1..{n} (no entry for {exc.args[0]})") from None
    bad = next((i for i, r in enumerate(ids, start=1) if isinstance(r, bool) or not isinstance(r, (str, int))), None)
    if bad is not None:
        raise DataError(f"{path}: id2{what} entry {bad} is {ids[bad - 1]!r}, expected a raw id (a string)")
    return [str(r) for r in ids]


def load_benchmark_folder(folder: Path, *, min_seq_len: int = 3) -> RecDataset:
    seq_file = find_sequence_file(folder)
    raw_ids = None
    num_items = None
    extras: dict = {}
    maps = None
    datamaps = folder / "datamaps.json"
    if datamaps.is_file():
        maps = json_object(read_json(datamaps), datamaps, "the top level")
        if "id2item" not in maps:
            raise DataError(f"{datamaps}: no 'id2item' object (item id -> raw item id)")
        id2item = json_object(maps["id2item"], datamaps, "'id2item'")
        num_items = len(id2item)
        raw_ids = _id_list(id2item, num_items, datamaps, "item")
    seqs, _ = read_sequence_file(seq_file, min_len=min_seq_len, num_items=num_items)
    if num_items is None:
        num_items = seqs.num_items
    if maps is not None and "id2user" in maps:
        id2user = json_object(maps["id2user"], datamaps, "'id2user'")
        missing = [int(u) for u in seqs.user_ids[:] if str(int(u)) not in id2user]
        if missing:
            raise DataError(f"{datamaps}: no raw id for user {missing[0]} of {seq_file.name}")
        extras["user_raw_ids"] = [str(id2user[str(int(u))]) for u in seqs.user_ids]

    item_text = _benchmark_item_text(folder, raw_ids, num_items)
    attrs = _benchmark_item_attributes(folder, maps, num_items)
    if attrs is not None:
        extras["item_attributes"] = attrs
    return RecDataset(name=folder.name, sequences=seqs, item_raw_ids=raw_ids, item_text=item_text,
                      source=str(folder.resolve()), extras=extras)


def _read_item_meta_tsv(folder: Path, num_items: int):
    """``derived/item_meta.tsv`` as a table with rows for item ids 1..num_items, or None."""
    path = folder / "derived" / "item_meta.tsv"
    if not path.is_file():
        return None
    df = read_tsv_strings(path)
    if df.columns[0] != "item_id":
        raise DataError(f"{path}: first column must be item_id, found {df.columns[0]!r}")
    check_ids(path, "item_id", int_column(df, "item_id"), num_items)
    return df


def _benchmark_item_text(folder: Path, raw_ids: list[str] | None, num_items: int) -> list[str] | None:
    df = _read_item_meta_tsv(folder, num_items)
    if df is not None:
        col = next((c for c in df.columns if c.startswith("short_text")), None)
        if col is not None:
            return [t.strip() for t in df[col]]
    gen = folder / "item_generative_indexing_phase_0.txt"
    if raw_ids is None or not gen.is_file():
        return None
    text: dict[str, str] = {}
    for line in gen.read_text(encoding="utf-8").splitlines():  # one line per item
        raw, _, rest = line.partition(" ")
        text[raw] = rest.strip()
    return [text.get(r, "") for r in raw_ids]


def _benchmark_item_attributes(folder: Path, maps: dict | None, num_items: int) -> ItemAttributes | None:
    """Attribute ids from ``<Name>_item2attributes.json``, named when the names are recoverable.

    Names come from ``derived/attribute_id2name.json`` when present (Beauty), else from the
    names column of ``derived/item_meta.tsv`` zipped with each item's id list, checked to be
    consistent (Yelp). Otherwise (Sports) the ids stay anonymous: ``attr_<id>``.
    """
    cands = sorted(folder.glob("*_item2attributes.json"))
    if not cands:
        return None
    path = cands[0]
    item2attr = json_object(read_json(path), path, "the top level (item id -> attribute ids)")
    per_item_ids: list[list[int]] = []
    for i in range(1, num_items + 1):
        ids = item2attr.get(str(i), [])
        if not isinstance(ids, list) or not all(isinstance(a, int) for a in ids):
            raise DataError(f"{path}: item {i}: expected a list of integer attribute ids, got {ids!r}")
        per_item_ids.append(ids)
    all_ids = sorted({a for ids in per_item_ids for a in ids})

    names: dict[int, str] | None = None
    id2name = folder / "derived" / "attribute_id2name.json"
    if id2name.is_file():
        id2names = json_object(read_json(id2name), id2name, "the top level (attribute id -> name)")
        bad = next((k for k in id2names if not INT_TOKEN.fullmatch(k)), None)
        if bad is not None:
            raise DataError(f"{id2name}: key {bad!r} is not an integer attribute id")
        names = {int(k): str(v) for k, v in id2names.items()}
    else:
        df = _read_item_meta_tsv(folder, num_items)
        col = None if df is None else next((c for c in df.columns[2:] if ("attribute" in c or "categor" in c)
                                            and "unnamed" not in c), None)
        if col is not None:
            names = {}
            for i, (ids, cell) in enumerate(zip(per_item_ids, df[col]), start=1):
                parts = [p.strip() for p in cell.split("|") if p.strip()]
                if len(parts) != len(ids):
                    names = None
                    log.warning("%s: attribute names of item %d do not line up with %s; attributes stay anonymous",
                                folder, i, path.name)
                    break
                for a, name in zip(ids, parts):
                    if names.setdefault(a, name) != name:
                        raise DataError(f"{folder}: attribute id {a} has two names ({names[a]!r}, {name!r})")
    named = names is not None and all(a in names for a in all_ids)
    vocab_ids = all_ids
    # an id without a usable name (Beauty has one named "") keeps a placeholder, so it is not lost
    vocab = [(names[a].strip() or f"attr_{a}") if named else f"attr_{a}" for a in vocab_ids]
    if len(set(vocab)) != len(vocab):  # two ids with one name: keep ids apart
        vocab = [f"{v} #{a}" if vocab.count(v) > 1 else v for v, a in zip(vocab, vocab_ids)]
    pos = {a: j for j, a in enumerate(vocab_ids)}
    return ItemAttributes.from_lists([[vocab[pos[a]] for a in ids] for ids in per_item_ids], vocab=vocab, named=named)


def prepare_from_folder(src: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """Convert a benchmark folder (read-only) into a prepared folder at ``out``."""
    from .prepared import write_prepared

    src = Path(src)
    if not src.is_dir():
        raise DataError(f"--from-folder {src} is not a folder")
    if is_prepared(src):
        raise DataError(f"{src} is already a prepared dataset")
    if Path(out).resolve() == src.resolve():
        raise DataError("--out must differ from --from-folder (benchmark folders are read-only inputs)")
    ds = load_benchmark_folder(src, min_seq_len=1)
    return write_prepared(out, ds, overwrite=overwrite, provenance={"format": "benchmark-folder", "from": str(src.resolve())})
