"""Writing feature matrices into a prepared folder: caching, resumable chunked encoding.

A matrix is *current* when ``features/<m>.json`` exists and records the same item-map
fingerprint, item count, encoder and parameters (including a hash of the encoder's
inputs): it is then not rebuilt unless ``force``. While encoding, each chunk of items is
saved under ``features/.partial/<m>-<key>/``; an interrupted run resumes from the chunks
already there, and the partial folder is removed once the matrix is written.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from tqdm.auto import tqdm

from ..data.dataset import RecDataset, item_map_fingerprint
from ..data.prepared import (FEATURES_DIR, check_modality_name, is_prepared, read_feature_info, read_prepared,
                             write_feature)
from ..data.sequences import DataError

log = logging.getLogger(__name__)


@dataclass
class FeatureResult:
    """What a feature builder did."""

    modality: str
    path: Path
    dim: int
    present: int
    missing: int
    skipped: bool
    """True when an up-to-date matrix was already there (nothing encoded)."""
    seconds: float = 0.0

    def summary(self) -> str:
        if self.skipped:
            return f"{self.modality}: up to date ({self.path}), {self.present} items present, {self.missing} missing"
        return (f"{self.modality}: wrote {self.path} (dim {self.dim}), {self.present} items present, "
                f"{self.missing} missing, {self.seconds:.1f}s")


def open_prepared(folder: str | Path) -> RecDataset:
    """The prepared dataset features are built for (metadata only, no feature matrices)."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{folder} is not a prepared dataset folder: the path does not exist (give a folder "
                        f"written by `prismrec data prepare`)")
    if folder.is_file():  # a sequence file: no raw item ids and no content; the RecBole route adds an .item file
        name = folder.stem
        raise DataError(f"{folder} is a file, not a prepared dataset folder; features are written into prepared "
                        f"folders, and a sequence file carries no item text or attributes to encode: run "
                        f"`prismrec data export-recbole --data {folder} --out RB --name {name}`, write RB/{name}.item "
                        f"(item_id:token and text/attribute fields, keyed by the file's item ids), then `prismrec "
                        f"data prepare recbole --inter RB/{name}.inter --item RB/{name}.item --k-core 0 --out DIR`")
    if not is_prepared(folder):
        raise DataError(f"{folder} is not a prepared dataset folder (no dataset.json); features are written into "
                        f"prepared folders: run `prismrec data prepare folder --from-folder {folder} --out DIR` "
                        f"(or another `data prepare` source) first")
    return read_prepared(folder, min_seq_len=1, modalities=None)


def inputs_hash(values: list) -> str:
    """A short hash of an encoder's inputs (texts, image paths, attribute lists)."""
    h = hashlib.sha256()
    for v in values:
        h.update(repr(v).encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


def cache_key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]


def is_current(folder: Path, modality: str, ds: RecDataset, encoder: str, params: dict) -> bool:
    check_modality_name(modality)
    js = folder / FEATURES_DIR / f"{modality}.json"
    if not js.is_file() or not (folder / FEATURES_DIR / f"{modality}.npy").is_file():
        return False
    try:
        info = read_feature_info(folder, modality)
    except DataError:
        return False
    return (info.get("item_map_fingerprint") == ds.item_map_fingerprint() and info.get("num_items") == ds.num_items
            and info.get("encoder") == encoder and info.get("params", {}).get("key") == cache_key(params))


def existing_result(folder: Path, modality: str) -> FeatureResult:
    info = read_feature_info(folder, modality)
    n = int(info["num_items"])
    return FeatureResult(modality, folder / FEATURES_DIR / f"{modality}.npy", int(info["dim"]),
                         n - int(info.get("num_missing", 0)), int(info.get("num_missing", 0)), skipped=True)


def encode_in_chunks(folder: Path, modality: str, ds: RecDataset, items: np.ndarray,
                     encode: Callable[[np.ndarray], np.ndarray], *, encoder: str, encoder_version: str,
                     params: dict, chunk_size: int = 2048, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Encode ``items`` (1-based ids of items that have this modality) chunk by chunk.

    ``encode(ids)`` returns a ``(len(ids), dim)`` array. Finished chunks are saved, so a
    rerun after an interruption encodes only what is left. An item whose content turns out
    to be unusable while encoding (e.g. an unreadable image) gets an all-zero row from
    ``encode`` and is recorded as missing (a real, normalised embedding is never all zero).
    Returns (values, present).
    """
    check_modality_name(modality)
    key = cache_key(params)
    part_dir = folder / FEATURES_DIR / ".partial" / f"{modality}-{key}"
    part_dir.mkdir(parents=True, exist_ok=True)
    chunks: list[np.ndarray] = []
    bar = tqdm(total=len(items), desc=f"encoding {modality}", unit="item", disable=not progress)
    for start in range(0, len(items), chunk_size):
        ids = items[start:start + chunk_size]
        path = part_dir / f"chunk_{start:09d}.npy"
        if path.is_file():
            block = np.load(path)
            if block.shape[0] != len(ids):
                raise DataError(f"{path}: partial chunk has {block.shape[0]} rows, expected {len(ids)}; "
                                f"delete {part_dir} and rerun")
        else:
            block = np.asarray(encode(ids), dtype=np.float32)
            if block.ndim != 2 or block.shape[0] != len(ids):
                raise DataError(f"encoder for {modality!r} returned shape {block.shape} for {len(ids)} items")
            tmp = part_dir / f".tmp_{start:09d}.npy"
            np.save(tmp, block)
            tmp.replace(path)
        chunks.append(block)
        bar.update(len(ids))
    bar.close()
    if not chunks:
        raise DataError(f"no item of {ds.name!r} has content for modality {modality!r}; nothing to encode")
    dim = chunks[0].shape[1]
    values = np.zeros((ds.num_items + 1, dim), dtype=np.float32)  # missing items keep zero rows
    values[items] = np.concatenate(chunks)
    present = np.zeros(ds.num_items + 1, dtype=bool)
    present[items] = np.any(values[items] != 0, axis=1)
    write_feature(folder, modality, values, present, encoder=encoder, encoder_version=encoder_version,
                  fingerprint=item_map_fingerprint(ds.num_items, ds.item_raw_ids), params={**params, "key": key})
    shutil.rmtree(part_dir, ignore_errors=True)
    try:
        part_dir.parent.rmdir()
    except OSError:
        pass
    return values, present


def note_hub_lookup(spec: str, kind: str) -> None:
    """Say, before a loader starts, that ``spec`` (not a local folder) will be looked up on the Hugging Face
    Hub: without network access that lookup retries for a minute or more before it fails."""
    if Path(spec).expanduser().exists() or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return
    log.info("%s model %r is not a local folder: looking it up on the Hugging Face Hub (without network access "
             "this retries for a minute or more before failing; HF_HUB_OFFLINE=1 reads only the local cache)",
             kind, spec)


@contextmanager
def model_loading_bars(progress: bool) -> Iterator[None]:
    """Inside: transformers' and huggingface_hub's progress bars (e.g. "Loading weights") follow
    ``progress``; their previous state is restored on exit."""
    if progress:
        yield
        return
    try:
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    except ImportError:
        hub = None
    else:
        hub = are_progress_bars_disabled()
        disable_progress_bars()
    try:
        from transformers.utils import logging as tf_logging
    except ImportError:
        tf_logging = None
    tf_on = tf_logging.is_progress_bar_enabled() if tf_logging is not None else False
    if tf_logging is not None:
        tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if tf_on:
            tf_logging.enable_progress_bar()
        if hub is False:
            enable_progress_bars()
        elif hub is True:
            disable_progress_bars()


def l2_normalize(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)
