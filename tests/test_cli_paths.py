"""Bad paths and damaged files on the command line: one clear ``error:`` line, checked before the work."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from prismrec.cli import main
from prismrec.data import Sequences
from prismrec.data.attributes import ItemAttributes
from prismrec.data.dataset import RecDataset
from prismrec.data.prepared import write_prepared

from conftest import TINY, sets

ONE_EPOCH = TINY + ["train.epochs=1"]


def fails(argv, capsys, *needles) -> str:
    """Run the CLI, expect exit code 2 with one ``error:`` line holding every needle; return it."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny finished run (one epoch on the synthetic world); tests copy it before damaging it."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--quiet", "--output-dir", str(run), *sets(ONE_EPOCH)]) == 0
    return run


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    return run


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a run is loaded (the path checks must come first)."""
    import prismrec.api

    def load_run(*args, **kwargs):
        raise AssertionError("the run was loaded before the output path was checked")
    monkeypatch.setattr(prismrec.api, "load_run", load_run)


def write_seq(path: Path, rows: list[list[int]]) -> Path:
    path.write_text("".join(" ".join(map(str, r)) + "\n" for r in rows))
    return path


# ----------------------------------------------------------------------------- 9: output path is a file


def test_train_output_dir_that_is_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "some_file.txt"
    f.write_text("x")
    fails(["train", "--quiet", "--output-dir", str(f), *sets(ONE_EPOCH)], capsys, str(f), "is a file")
    fails(["train", "--quiet", "--output-dir", str(f / "sub"), *sets(ONE_EPOCH)], capsys, "is a file, not a folder")
    assert f.read_text() == "x"


def test_api_train_output_dir_that_is_a_file_is_refused(tmp_path, tiny_cfg):
    from prismrec.api import train
    from prismrec.config import ConfigError

    f = tmp_path / "some_file.txt"
    f.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        train(tiny_cfg, f, progress=False)


def test_export_recbole_out_that_is_a_file_is_refused(tmp_path, capsys):
    data = write_seq(tmp_path / "seq.txt", [[1, 1, 2, 3], [2, 2, 3, 4]])
    f = tmp_path / "some_file.txt"
    f.write_text("x")
    fails(["data", "export-recbole", "--data", str(data), "--out", str(f)], capsys, "--out", str(f), "is a file")


def test_prepare_out_that_is_a_file_is_refused(tmp_path, capsys):
    reviews = tmp_path / "rev.json"
    reviews.write_text(json.dumps({"reviewerID": "u", "asin": "i", "unixReviewTime": 1, "overall": 5.0}) + "\n")
    f = tmp_path / "some_file.txt"
    f.write_text("x")
    fails(["data", "prepare", "amazon2014", "--reviews", str(reviews), "--out", str(f), "--no-progress"],
          capsys, "--out", str(f), "is a file")
    fails(["data", "prepare", "--from-folder", str(tmp_path), "--out", str(f)], capsys, "--out", "is a file")


# ----------------------------------------------------------------------------- 10: output files checked first


def test_export_ranks_to_a_folder_or_missing_folder_is_refused_before_evaluating(tmp_path, capsys, no_work):
    fails(["evaluate", "--run", str(tmp_path), "--export-ranks", str(tmp_path)], capsys,
          "--export-ranks", "is a folder", "ranks.csv")
    fails(["evaluate", "--run", str(tmp_path), "--export-ranks", str(tmp_path / "nope" / "r.csv")], capsys,
          "--export-ranks", "does not exist")


@pytest.mark.parametrize("flag,name", [("--export-weights", "w.npz"), ("--export-experts", "e.npz"),
                                       ("--tsne", "map.svg")])
def test_inspect_outputs_are_checked_before_loading(tmp_path, capsys, no_work, flag, name):
    (tmp_path / name).mkdir()
    fails(["inspect", "--run", str(tmp_path), flag, str(tmp_path / name)], capsys, flag, "is a folder")
    fails(["inspect", "--run", str(tmp_path), flag, str(tmp_path / "nope" / name)], capsys, flag, "does not exist")


def test_tsne_csv_that_is_a_folder_is_refused(tmp_path, capsys, no_work):
    (tmp_path / "map.csv").mkdir()
    fails(["inspect", "--run", str(tmp_path), "--tsne", str(tmp_path / "map.svg")], capsys, "map.csv", "is a folder")


# ----------------------------------------------------------------------------- 11, 12: damaged weights


def test_corrupt_weights_file_is_named(run_copy, capsys):
    (run_copy / "model.safetensors").write_bytes(b"junk")
    fails(["evaluate", "--run", str(run_copy)], capsys, "model.safetensors is not a valid safetensors file")


def test_weights_that_do_not_match_the_config_name_the_first_tensor(run_copy, capsys):
    cfg = run_copy / "config.yaml"
    cfg.write_text(cfg.read_text().replace("hidden_dim: 16", "hidden_dim: 24"))
    line = fails(["evaluate", "--run", str(run_copy)], capsys,
                 f"{run_copy / 'config.yaml'} does not match model.safetensors: e.g. ", "has shape")
    assert "[97, 16] in the file but [97, 24]" in line or "16] in the file but" in line
    assert len(line) < 600  # not pages of size mismatches


def test_load_weights_mismatch_is_a_data_error(tmp_path):
    import torch

    from prismrec.data import DataError
    from prismrec.training.checkpoint import load_weights, save_weights

    save_weights(torch.nn.Linear(3, 2), tmp_path)
    with pytest.raises(DataError, match=r"does not match model.safetensors: e.g. weight has shape \[2, 3\] in the "
                                        r"file but \[2, 4\]"):
        load_weights(torch.nn.Linear(4, 2), tmp_path)
    with pytest.raises(DataError, match="bias is in the model but not in the file"):
        save_weights(torch.nn.Linear(3, 2, bias=False), tmp_path)
        load_weights(torch.nn.Linear(3, 2), tmp_path)


# ----------------------------------------------------------------------------- 13: -k


@pytest.mark.parametrize("k", ["-1", "0"])
def test_recommend_needs_k_of_at_least_one(trained, capsys, k):
    fails(["recommend", "--run", str(trained), "--history", "1,2,3", "-k", k], capsys, "-k", ">= 1", k)


def test_api_recommend_needs_k_of_at_least_one(trained):
    from prismrec.api import load_run
    from prismrec.config import ConfigError

    run = load_run(trained, device="cpu")
    with pytest.raises(ConfigError, match=">= 1"):
        run.recommend([1, 2, 3], k=0)
    assert len(run.recommend([1, 2, 3], k=1)) == 1


# ----------------------------------------------------------------------------- 14: damaged resume state


@pytest.mark.parametrize("name,content", [("state.json", b"{bad"), ("state.json", b"[1, 2]"),
                                          ("state.json", b'{"version": 1}'), ("state.json", b"{}"), ("optimizer.pt", b"junk"),
                                          ("model.safetensors", b"junk"), ("rng.safetensors", b"")])
def test_damaged_resume_state_is_named(run_copy, capsys, name, content):
    (run_copy / "summary.json").unlink()
    (run_copy / "resume" / name).write_bytes(content)
    fails(["train", "--quiet", "--resume", str(run_copy)], capsys,
          str(run_copy / "resume" / name), "the resume state is damaged", "start a fresh run", "--overwrite")


class _RunsCode:
    """Unpickling this runs a shell command (the attack that ``weights_only=True`` refuses)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def test_resume_state_that_would_run_code_is_refused_unrun(run_copy, capsys, tmp_path):
    import torch

    marker = tmp_path / "pwned"
    (run_copy / "summary.json").unlink()
    torch.save({"state": _RunsCode(marker)}, run_copy / "resume" / "optimizer.pt")
    fails(["train", "--quiet", "--resume", str(run_copy)], capsys,
          str(run_copy / "resume" / "optimizer.pt"), "the resume state is damaged")
    assert not marker.exists()  # refused before anything was unpickled into a call


def test_missing_resume_file_is_named(run_copy, capsys):
    (run_copy / "summary.json").unlink()
    (run_copy / "resume" / "optimizer.pt").unlink()
    fails(["train", "--quiet", "--resume", str(run_copy)], capsys, "optimizer.pt", "damaged", "missing")


# ----------------------------------------------------------------------------- 17: sparse item ids


def test_sequence_file_with_far_apart_item_ids_is_refused(tmp_path, capsys):
    rows = [[u, 1 + u, 2 + u, 3 + u] for u in range(1, 11)]
    huge = write_seq(tmp_path / "huge.txt", rows + [[11, 1, 2, 1000000000000]])
    fails(["train", "--quiet", "--data", str(huge), "--output-dir", str(tmp_path / "r1"), *sets(ONE_EPOCH)],
          capsys, str(huge), "1,000,000,000,000", "prismrec data prepare")
    assert not (tmp_path / "r1").exists()
    phantom = write_seq(tmp_path / "phantom.txt", rows + [[11, 1, 2, 2000000]])
    fails(["train", "--quiet", "--data", str(phantom), "--output-dir", str(tmp_path / "r2"), *sets(ONE_EPOCH)],
          capsys, "2,000,000", "14 distinct item ids")


def test_dense_or_declared_item_ids_pass(tmp_path):
    from prismrec.api import dataset_from_config
    from prismrec.config import build_config

    rows = [[u, u, u + 1, u + 2] for u in range(1, 21)] + [[21, 1, 2, 900]]  # 900 > 2 x 23 but only 877 unused
    data = write_seq(tmp_path / "gappy.txt", rows)
    assert dataset_from_config(build_config(overrides=[f"data.path={data}"])).num_items == 900
    seqs = Sequences.from_lists([[1, 2, 5000], [2, 1, 5000]], num_items=5000)
    prep = write_prepared(tmp_path / "prep", RecDataset("p", seqs, item_raw_ids=[f"r{i}" for i in range(5000)]))
    assert dataset_from_config(build_config(overrides=[f"data.path={prep}"])).num_items == 5000  # declared


# ----------------------------------------------------------------------------- 18: existing runs


def test_output_dir_holding_a_run_needs_overwrite(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = (run / "summary.json").read_text()
    fails(["train", "--quiet", "--output-dir", str(run), *sets(ONE_EPOCH)], capsys,
          "already holds a run", "--overwrite")
    assert (run / "summary.json").read_text() == before
    (run / "summary.json").unlink()  # cut off: config.yaml and resume/ only
    fails(["train", "--quiet", "--output-dir", str(run), *sets(ONE_EPOCH)], capsys, "config.yaml", f"--resume {run}")
    assert main(["train", "--quiet", "--output-dir", str(run), "--overwrite", *sets(ONE_EPOCH + ["train.seed=7"])]) == 0
    assert "seed: 7" in (run / "config.yaml").read_text() and (run / "summary.json").is_file()
    fails(["train", "--quiet", "--resume", str(run), "--overwrite"], capsys, "--overwrite")


def test_overwrite_removes_the_old_results_before_training(trained, tmp_path, capsys, monkeypatch):
    import prismrec.api

    run = tmp_path / "run"
    shutil.copytree(trained, run)

    def broken(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(prismrec.api.Trainer, "fit", broken)
    assert main(["train", "--quiet", "--output-dir", str(run), "--overwrite", *sets(ONE_EPOCH)]) == 130
    assert not any((run / f).exists() for f in ("summary.json", "model.safetensors", "ranks.npz", "resume"))


def test_new_output_dir_needs_no_overwrite(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--quiet", "--output-dir", str(tmp_path / "empty"), *sets(ONE_EPOCH)]) == 0


# ----------------------------------------------------------------------------- 19: runs used from elsewhere


def test_saved_run_from_another_directory_takes_data(tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    write_seq(work / "data" / "good.txt", [[u, u % 7 + 1, u % 5 + 2, u % 3 + 8, u % 4 + 12] for u in range(1, 41)])
    monkeypatch.chdir(work)
    assert main(["train", "--quiet", "--data", "data/good.txt", "--output-dir", "run", *sets(ONE_EPOCH)]) == 0
    assert "path: data/good.txt" in (work / "run" / "config.yaml").read_text()  # saved as typed (portable)
    monkeypatch.chdir(tmp_path)
    run, data = str(work / "run"), str(work / "data" / "good.txt")
    for argv in (["evaluate", "--run", run], ["recommend", "--run", run, "--history", "1,2"],
                 ["inspect", "--run", run]):
        fails(argv, capsys, "data/good.txt does not exist", "--data PATH")
    capsys.readouterr()
    assert main(["evaluate", "--run", run, "--data", data]) == 0
    assert main(["recommend", "--run", run, "--history", "1,2", "-k", "3", "--json", "--data", data]) == 0
    out = capsys.readouterr().out
    assert len(json.loads(out[out.index("["):])) == 3
    fails(["inspect", "--run", run, "--data", data], capsys, "no multimodal item input")  # loaded: past the data


# ----------------------------------------------------------------------------- 22: modality names


def _prepared_with_attributes(path: Path) -> Path:
    seqs = Sequences.from_lists([[1, 2, 3], [2, 4, 1, 3], [4, 3, 2]], num_items=4)
    attrs = ItemAttributes.from_lists([["OPI", "Nails"], ["Nails"], [], ["OPI", "Nails"]])
    ds = RecDataset("tiny", seqs, item_raw_ids=["X1", "X2", "X3", "X4"], item_text=["a", "b", "", "d"],
                    extras={"item_attributes": attrs})
    return write_prepared(path, ds)


@pytest.mark.parametrize("force", [[], ["--force"]])
@pytest.mark.parametrize("kind", ["attributes", "text"])
def test_bad_modality_name_writes_nothing(tmp_path, capsys, monkeypatch, force, kind):
    import prismrec.features.text

    loaded = []

    class NoEncoding:
        version = "test"

        def encode(self, texts, batch_size=64):
            pytest.fail("items were encoded before the modality name was checked")

    monkeypatch.setattr(prismrec.features.text, "load_text_encoder", lambda *a, **k: loaded.append(1) or NoEncoding())
    prep = _prepared_with_attributes(tmp_path / "a" / "b" / "c" / "prep")
    before = sorted(p for p in tmp_path.rglob("*"))
    extra = ["--dim", "2"] if kind == "attributes" else []
    fails(["features", kind, "--data", str(prep), "--name", "../../../evil2", "--no-progress", *extra, *force],
          capsys, "invalid modality name '../../../evil2'")
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert not loaded or force  # without --force the name is checked before the encoder is even loaded


# ----------------------------------------------------------------------------- 23, 24: import messages


def test_empty_review_file_says_so(tmp_path, capsys):
    empty = tmp_path / "empty.json"
    empty.write_text("")
    line = fails(["data", "prepare", "amazon2014", "--reviews", str(empty), "--out", str(tmp_path / "p"),
                  "--no-progress"], capsys, str(empty), "no reviews", "empty")
    assert "no review files given" not in line


def _reviews(tmp_path: Path, rating: float = 1.0) -> Path:
    path = tmp_path / "rev.json"
    path.write_text("".join(json.dumps({"reviewerID": f"u{u}", "asin": f"i{i}", "unixReviewTime": u * 10 + i,
                                        "overall": rating}) + "\n" for u in range(3) for i in range(3)))
    return path


def test_min_rating_that_removes_everything_is_blamed(tmp_path, capsys):
    line = fails(["data", "prepare", "amazon2014", "--reviews", str(_reviews(tmp_path)), "--out",
                  str(tmp_path / "p"), "--min-rating", "4", "--no-progress"], capsys,
                 "read 9", "0 rated >= 4 (--min-rating)", "lower --min-rating")
    assert "k-core" not in line


def test_k_core_that_removes_everything_is_blamed(tmp_path, capsys):
    fails(["data", "prepare", "amazon2014", "--reviews", str(_reviews(tmp_path, 5.0)), "--out",
           str(tmp_path / "p"), "--min-rating", "4", "--k-core", "5", "--no-progress"], capsys,
          "read 9", "9 rated >= 4", "0 in the 5-core", "smaller --k-core")


def test_source_without_interactions_says_so():
    import polars as pl

    from prismrec.data import DataError
    from prismrec.data.importers import PipelineConfig, build_dataset

    empty = pl.DataFrame(schema={"user": pl.String, "item": pl.String, "ts": pl.Float64, "order": pl.Int64})
    with pytest.raises(DataError, match="the source has no interactions"):
        build_dataset(empty, name="t", source="t", config=PipelineConfig())


# ----------------------------------------------------------------------------- 26: inspect --json shape


def test_inspect_json_is_always_an_object(tmp_path, capsys):
    run = tmp_path / "p"
    assert main(["train", "--quiet", "--output-dir", str(run), *sets(ONE_EPOCH + ["model.prism.enabled=true"])]) == 0
    capsys.readouterr()
    assert main(["inspect", "--run", str(run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out, dict)
    assert list(out) == ["fusion_weights", "fusion_layer", "expert_agreement", "content_variation"]
    assert [r["expert"] for r in out["fusion_weights"]] == ["unique_image", "unique_text", "synergy", "redundancy"]
    assert np.isclose(sum(r["mean"] for r in out["fusion_weights"]), 1.0, atol=1e-5)
