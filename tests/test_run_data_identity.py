"""A saved run stays tied to the data it was trained on: the feature matrices it read (named in its
config) and its interactions (a fingerprint in its summary), so adding a matrix to the dataset does not
break it, and evaluating, resuming or comparing it on other interactions is refused."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from prismrec.api import ignored_prism_keys
from prismrec.cli import main
from prismrec.config import ConfigError, SyntheticConfig, build_config
from prismrec.data.dataset import load_dataset
from prismrec.data.prepared import write_feature, write_prepared

from conftest import TINY, sets

ONE_EPOCH = TINY + ["train.epochs=1"]


def error_line(argv, capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    return err


def prepared_world(path: Path) -> Path:
    """The tiny synthetic world (its two SYNTHETIC modalities, image and text) as a prepared folder."""
    ds = load_dataset(None, synthetic=SyntheticConfig(num_users=80, num_items=96, min_len=4, max_len=12, feature_dim=8))
    ds.item_raw_ids = [f"i{i}" for i in range(1, ds.num_items + 1)]
    return write_prepared(path, ds)


def test_a_prism_run_names_its_matrices_and_survives_a_matrix_added_later(tmp_path, capsys):
    prep = prepared_world(tmp_path / "prep")
    run = tmp_path / "run"
    assert main(["train", "--quiet", "--json", "--data", str(prep), "--output-dir", str(run),
                 *sets(ONE_EPOCH + ["model.prism.enabled=true"])]) == 0
    trained = json.loads(capsys.readouterr().out)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["modalities"] == ["image", "text"]  # "all available" resolved at training time
    n = 96
    values = np.zeros((n + 1, 3), dtype=np.float32)
    values[1:] = 1.0
    present = np.arange(n + 1) > 0
    write_feature(prep, "extra", values, present, encoder="test", encoder_version="1",
                  fingerprint=load_dataset(prep).item_map_fingerprint())
    assert set(load_dataset(prep).features) == {"image", "text", "extra"}
    assert main(["evaluate", "--run", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["NDCG@10"] == trained["test"]["NDCG@10"]
    # a run saved before configs named their matrices ("all available") now reads three: say so
    config["data"]["modalities"] = []
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    err = error_line(["evaluate", "--run", str(run)], capsys)
    assert "data.modalities: []" in err and "['extra', 'image', 'text']" in err and "gained or rebuilt" in err


def test_a_plain_run_keeps_all_available(tmp_path, capsys):
    """An ID-only run reads no matrix, so its config does not pin any."""
    run = tmp_path / "run"
    assert main(["train", "--quiet", "--output-dir", str(run), *sets(ONE_EPOCH)]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["modalities"] == []


def write_seq(path: Path, rows: list[list[int]]) -> Path:
    path.write_text("".join(" ".join(map(str, r)) + "\n" for r in rows))
    return path


def two_sequence_files(tmp_path: Path) -> tuple[Path, Path]:
    """Same users and items 1..30, different histories: the item maps (identity) agree."""
    g = np.random.default_rng(0)
    rows = [[u, *g.choice(np.arange(1, 31), size=6, replace=False)] for u in range(1, 41)]
    rows[0][1:] = list(range(1, 31))  # every item occurs in the first file
    other = [r[:1] + r[1:][::-1] for r in rows]  # each history reversed
    return write_seq(tmp_path / "a.txt", rows), write_seq(tmp_path / "b.txt", other)


def test_other_interactions_with_the_same_items_are_refused(tmp_path, capsys):
    a, b = two_sequence_files(tmp_path)
    run = tmp_path / "run"
    argv = ["train", "--quiet", "--data", str(a), "--output-dir", str(run), *sets(ONE_EPOCH)]
    assert main(argv) == 0
    assert load_dataset(a).item_map_fingerprint() == load_dataset(b).item_map_fingerprint()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["sequences_fingerprint"] == load_dataset(a).sequences_fingerprint()
    assert load_dataset(a).sequences_fingerprint() != load_dataset(b).sequences_fingerprint()
    assert main(["evaluate", "--run", str(run), "--data", str(a)]) == 0  # its own data, from elsewhere: fine
    for argv in (["evaluate", "--run", str(run), "--data", str(b)],
                 ["recommend", "--run", str(run), "--data", str(b), "--history", "1,2"]):
        assert "trained on other interactions" in error_line(argv, capsys)
    # resuming may move the data (data.path is a resumable change) but not change it
    (run / "summary.json").unlink()
    err = error_line(["train", "--quiet", "--resume", str(run), "--set", f"data.path={b}", "--set", "train.epochs=2"],
                     capsys)
    assert "sequences_fingerprint" in err and "a different dataset" in err


def test_compare_refuses_runs_trained_on_other_interactions(tmp_path, capsys):
    for seed in (0, 7):  # two synthetic worlds of the same size: same users, same item ids
        assert main(["train", "--quiet", "--output-dir", str(tmp_path / f"s{seed}"),
                     *sets(ONE_EPOCH + [f"data.synthetic.seed={seed}"])]) == 0
    err = error_line(["compare", "--run", str(tmp_path / "s7"), "--against", str(tmp_path / "s0")], capsys)
    assert "different interactions" in err and "not paired" in err
    assert main(["train", "--quiet", "--output-dir", str(tmp_path / "again"), *sets(ONE_EPOCH)]) == 0
    assert main(["compare", "--run", str(tmp_path / "again"), "--against", str(tmp_path / "s0")]) == 0


def test_negative_synthetic_seed_is_a_config_error():
    with pytest.raises(ConfigError, match="data.synthetic.seed must be >= 0"):
        build_config(overrides=["data.synthetic.seed=-1"])


def test_prism_keys_set_while_prism_is_off_are_named():
    off = build_config(overrides=["model.prism.content_gate=true", "model.prism.lambda_synergy=5"])
    assert ignored_prism_keys(off) == ["model.prism.lambda_synergy=5.0", "model.prism.content_gate=True"]
    assert ignored_prism_keys(build_config(overrides=["model.prism.enabled=true", "model.prism.lambda_synergy=5"])) == []
    assert ignored_prism_keys(build_config()) == []


def test_training_warns_about_prism_keys_while_prism_is_off(tmp_path):
    from prismrec.api import train

    cfg = build_config(overrides=ONE_EPOCH + ["model.prism.lambda_synergy=5"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cfg, tmp_path / "run", progress=False)
    assert any("model.prism.lambda_synergy=5.0 set, but model.prism.enabled=false" in str(w.message) for w in caught)


def test_resuming_after_a_matrix_was_rebuilt_says_what_changed_not_damaged(tmp_path, capsys):
    prep = prepared_world(tmp_path / "prep")
    run = tmp_path / "run"
    assert main(["train", "--quiet", "--data", str(prep), "--output-dir", str(run),
                 *sets(ONE_EPOCH + ["model.prism.enabled=true"])]) == 0
    n = 96
    values = np.zeros((n + 1, 5), dtype=np.float32)  # "text" rebuilt with another dimension
    values[1:] = np.random.default_rng(0).normal(size=(n, 5))
    write_feature(prep, "text", values, np.arange(n + 1) > 0, encoder="test", encoder_version="2",
                  fingerprint=load_dataset(prep).item_map_fingerprint())
    err = error_line(["train", "--quiet", "--resume", str(run), "--set", "train.epochs=2"], capsys)
    assert "does not fit the model built from the run's config.yaml and dataset" in err
    assert "feature matrices" in err and "damaged" not in err and "--overwrite" not in err
