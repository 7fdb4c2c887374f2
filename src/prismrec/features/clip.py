"""Image and text features with CLIP (Radford et al., 2021) through ``transformers``.

As in the PRISM paper, both the item image and the item text are embedded with CLIP
(default ``openai/clip-vit-base-patch32``) and L2-normalised. Images come from local files
only (nothing is downloaded):

* ``image_dir``: a folder of images named by raw item id (``<raw_id>.jpg`` / ``.jpeg`` /
  ``.png`` / ``.webp`` / ``.bmp`` / ``.gif``);
* otherwise the ``image_url`` column of ``item_meta.tsv`` when it holds a local path
  (absolute, or relative to the dataset folder). ``http(s)`` URLs are not fetched: download
  the images into a folder named by raw id and pass ``image_dir``.

Items without a (readable) image are recorded as missing in the mask, with a zero row —
never filled with noise. Offline benchmarks here have no images (see docs/data_format.md).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ..data.dataset import RecDataset
from ..data.sequences import DataError
from .store import (FeatureResult, encode_in_chunks, existing_result, inputs_hash, is_current, l2_normalize,
                    model_loading_bars, note_hub_lookup, open_prepared)

log = logging.getLogger(__name__)

DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


class ClipEncoder:
    """A CLIP model + processor; ``encode_images`` / ``encode_texts`` give L2-normalised rows."""

    def __init__(self, model, processor, name: str, version: str, device: str = "cpu"):
        self.model = model.eval().to(device)
        self.processor = processor
        self.name = name
        self.version = version
        self.device = device

    @staticmethod
    def _features(out):
        # transformers < 5 returns the projected tensor; 5.x returns an output whose pooler_output is it
        return out if hasattr(out, "shape") else out.pooler_output

    def encode_images(self, paths: list[Path]) -> np.ndarray:
        """(len(paths), dim); an unreadable image gives a zero row (recorded as missing)."""
        import torch
        from PIL import Image, UnidentifiedImageError

        images, ok = [], []
        for p in paths:
            try:
                with Image.open(p) as im:
                    images.append(im.convert("RGB"))
                ok.append(True)
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                log.warning("cannot read image %s (%s); item recorded as missing", p, exc)
                ok.append(False)
        dim = self.model.config.projection_dim
        out = np.zeros((len(paths), dim), dtype=np.float32)
        if images:
            pixels = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
            with torch.no_grad():
                emb = self._features(self.model.get_image_features(pixel_values=pixels))
            out[np.array(ok)] = l2_normalize(emb.float().cpu().numpy())
        return out

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        tok = self.processor.tokenizer
        max_len = min(int(getattr(tok, "model_max_length", 77) or 77),
                      int(self.model.config.text_config.max_position_embeddings))
        batch = tok(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
        with torch.no_grad():
            emb = self._features(self.model.get_text_features(**batch))
        return l2_normalize(emb.float().cpu().numpy()).astype(np.float32)


def load_clip(spec: str = DEFAULT_CLIP_MODEL, device: str = "cpu", progress: bool = True) -> ClipEncoder:
    """A CLIP model by hub name or local folder (saved with ``save_pretrained``); ``progress=False`` hides
    the loaders' progress bars."""
    try:
        import transformers
        from transformers import CLIPModel, CLIPProcessor
    except ImportError as exc:
        raise DataError(f"CLIP features need the 'features' extra ({exc.name} is not installed): "
                        f"pip install 'prismrec[features]'") from None
    note_hub_lookup(spec, "CLIP")
    try:
        with model_loading_bars(progress):
            model = CLIPModel.from_pretrained(spec)
            processor = CLIPProcessor.from_pretrained(spec)
    except Exception as exc:  # hub/offline/format errors come in many types
        raise DataError(f"cannot load CLIP model {spec!r}: {str(exc).rstrip('.')}. Without network access give a local folder "
                        f"holding a CLIP model and processor") from None
    return ClipEncoder(model, processor, spec, f"transformers {transformers.__version__}", device)


def find_item_images(ds: RecDataset, folder: Path, image_dir: str | Path | None) -> list[Path | None]:
    """Local image path per item (index ``i - 1``), or None when the item has no local image."""
    out: list[Path | None] = [None] * ds.num_items
    if image_dir is not None:
        image_dir = Path(image_dir)
        if not image_dir.is_dir():
            raise DataError(f"image folder {image_dir} does not exist")
        by_stem: dict[str, Path] = {}
        for p in sorted(image_dir.iterdir()):  # one listing, not one stat per item
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.stem not in by_stem:
                by_stem[p.stem] = p
        raw = ds.item_raw_ids or [str(i) for i in range(1, ds.num_items + 1)]
        return [by_stem.get(r) for r in raw]
    urls = ds.extras.get("item_image_url") or []
    remote = 0
    for i, u in enumerate(urls):
        if not u:
            continue
        if u.startswith(("http://", "https://")):
            remote += 1
            continue
        p = Path(u) if Path(u).is_absolute() else folder / u
        if p.is_file():
            out[i] = p
    if remote:
        log.warning("%d items have only remote image URLs; they are recorded as missing (nothing is downloaded). "
                    "Download them into a folder named by raw item id and pass --image-dir", remote)
    return out


def build_clip_features(data: str | Path, *, model: str | ClipEncoder = DEFAULT_CLIP_MODEL,
                        image_dir: str | Path | None = None, image_modality: str | None = "image",
                        text_modality: str | None = "clip_text", batch_size: int = 32, device: str = "cpu",
                        force: bool = False, chunk_size: int = 1024, progress: bool = True) -> list[FeatureResult]:
    """Write CLIP image (and text) features into a prepared folder; either modality may be None, not both."""
    if not image_modality and not text_modality:
        raise DataError("CLIP features: image_modality and text_modality (--image-modality, --text-modality) are "
                        "both empty, which skips both matrices; nothing to encode (give at least one modality name)")
    folder = Path(data)
    ds = open_prepared(folder)
    spec = model if isinstance(model, str) else model.name
    enc: ClipEncoder | None = None if isinstance(model, str) else model
    results = []

    def get_encoder() -> ClipEncoder:
        nonlocal enc
        if enc is None:
            enc = load_clip(spec, device=device, progress=progress)
        return enc

    def batched(fn, inputs):
        def run(ids):
            xs = [inputs[i - 1] for i in ids]
            return np.concatenate([fn(xs[s:s + batch_size]) for s in range(0, len(xs), batch_size)])
        return run

    def encode(modality: str, items: np.ndarray, fn_name: str, inputs: list, kind: str) -> None:
        params = {"model": spec, "inputs": inputs_hash([str(x) if x else "" for x in inputs]), "kind": kind}
        if not force and is_current(folder, modality, ds, spec, params):
            results.append(existing_result(folder, modality))
            return
        t0 = time.perf_counter()
        e = get_encoder()
        values, present = encode_in_chunks(folder, modality, ds, items, batched(getattr(e, fn_name), inputs),
                                           encoder=spec, encoder_version=e.version, params=params,
                                           chunk_size=chunk_size, progress=progress)
        results.append(FeatureResult(modality, folder / "features" / f"{modality}.npy", values.shape[1],
                                     int(present.sum()), ds.num_items - int(present.sum()), False,
                                     time.perf_counter() - t0))

    if image_modality:
        paths = find_item_images(ds, folder, image_dir)
        items = np.array([i for i, p in enumerate(paths, start=1) if p is not None], dtype=np.int64)
        if len(items) == 0:
            raise DataError(f"no item of {folder} has a local image (looked in "
                            f"{image_dir if image_dir else 'item_meta.tsv image_url'}); nothing to encode")
        encode(image_modality, items, "encode_images", paths, "image")
    if text_modality:
        if ds.item_text is None:
            raise DataError(f"{folder} has no item text (no item_meta.tsv); pass --text-modality '' to skip CLIP text")
        texts = [t.strip() for t in ds.item_text]
        items = np.array([i for i, t in enumerate(texts, start=1) if t], dtype=np.int64)
        encode(text_modality, items, "encode_texts", texts, "text")
    return results
