"""Bad input gives one clear ``error: ...`` line (file, line or key, and what was expected), never a
Python traceback and never silently wrong results."""
import json

import pytest
import torch

import prismrec.cli.run
from prismrec.cli import main
from prismrec.config import ConfigError, build_config
from prismrec.training.trainer import Trainer

from conftest import TINY, sets


def one_error_line(capsys, needle):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and "Traceback" not in err, err
    return err


# ----------------------------------------------------------------------------- input files


@pytest.mark.parametrize("bad_line", [7, 3000])  # 3000: far beyond the first block the reader decodes
def test_sequence_file_not_utf8_names_file_and_line(bad_line, tmp_path, capsys):
    path = tmp_path / "seq.txt"
    good = b"".join(b"%d %d %d %d\n" % (u, u, u + 1, u + 2) for u in range(1, bad_line))
    path.write_bytes(good + b"%d 7 8 \xe9 9\n" % bad_line + b"%d 1 2 3\n" % (bad_line + 1))
    assert main(["data", "stats", "--data", str(path)]) == 2
    one_error_line(capsys, f"{path}:{bad_line}: not valid UTF-8 (byte 0xe9")


def test_recipes_ship_in_the_package_and_are_found_by_name(tmp_path, monkeypatch, capsys):
    """The recipes live in prismrec/recipes/ (package data: a pip-installed prismrec has them) and
    recipes/ in the checkout points there; --config takes a bare name, and a missing file lists them."""
    from pathlib import Path

    from prismrec.config import packaged_recipes

    root = Path(__file__).resolve().parents[1]
    recipes = packaged_recipes()
    assert set(recipes) == {"sasrec_beauty", "prism_beauty", "stosa_beauty", "indirec_beauty"}
    assert {p.resolve() for p in (root / "recipes").glob("*.yaml")} == {p.resolve() for p in recipes.values()}
    assert 'prismrec = ["recipes/*.yaml"]' in (root / "pyproject.toml").read_text()  # shipped as package data
    monkeypatch.chdir(tmp_path)  # no recipes/ folder here: the names resolve to the packaged files
    by_file = build_config(root / "recipes" / "stosa_beauty.yaml")
    assert build_config("stosa_beauty") == by_file == build_config("stosa_beauty.yaml")
    assert by_file.model.backbone == "stosa" and by_file.data.max_seq_len == 100
    assert main(["config", "--config", "stosa_beuaty"]) == 2
    one_error_line(capsys, "cannot read config stosa_beuaty: no such file (packaged recipes, usable by name alone: "
                           "indirec_beauty, prism_beauty, sasrec_beauty, stosa_beauty)")
    (tmp_path / "stosa_beauty.yaml").write_text("model:\n  num_layers: 3\n")  # a file of that name wins
    assert build_config("stosa_beauty.yaml").model.num_layers == 3


def test_config_file_not_utf8_names_file(tmp_path, capsys):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\x00\xff\xfe")
    assert main(["config", "--config", str(path)]) == 2
    one_error_line(capsys, f"cannot read config {path}: not valid UTF-8")


# ----------------------------------------------------------------------------- config values


@pytest.mark.parametrize("item,needle", [
    ("train.weight_decay=-1", "train.weight_decay must be a finite number >= 0"),
    ("train.weight_decay=.nan", "train.weight_decay must be a finite number >= 0"),
    ("train.lr=.inf", "train.lr must be a finite number > 0"),
    ("train.lr=.nan", "train.lr must be a finite number > 0"),
    ("data.synthetic.feature_noise=-1", "data.synthetic.feature_noise must be a finite number >= 0"),
    ("model.ffn_mult=0", "model.ffn_mult must be >= 1"),
    ("model.ffn_mult=-1", "model.ffn_mult must be >= 1"),
    ("model.prism.lambda_unique_per_modality={image: abc}",
     "model.prism.lambda_unique_per_modality.image: expected a number, got 'abc'"),
    ("model.prism.lambda_unique_per_modality={~: 0.1}", "(key None): expected a string"),
    ("model.prism.lambda_unique_per_modality={image: -0.1}",
     "model.prism.lambda_unique_per_modality.image must be a finite number >= 0"),
    ("model.prism.lambda_unique=-1", "model.prism.lambda_unique must be a finite number >= 0"),
    ("model.prism.lambda_synergy=-0.5", "model.prism.lambda_synergy must be a finite number >= 0"),
    ("model.prism.lambda_redundancy=.nan", "model.prism.lambda_redundancy must be a finite number >= 0"),
])
def test_invalid_values_are_config_errors(item, needle):
    with pytest.raises(ConfigError) as exc:
        build_config(overrides=[item])
    assert needle in str(exc.value)


def test_invalid_value_on_the_command_line(capsys):
    assert main(["config", "--set", "train.weight_decay=-1"]) == 2
    one_error_line(capsys, "train.weight_decay must be a finite number >= 0")


def test_mapping_values_are_coerced():
    cfg = build_config(overrides=["model.prism.lambda_unique_per_modality={image: 1, text: '0.5'}"])
    assert cfg.model.prism.lambda_unique_per_modality == {"image": 1.0, "text": 0.5}
    assert all(type(v) is float for v in cfg.model.prism.lambda_unique_per_modality.values())


def test_unknown_modality_in_per_modality_lambda(tmp_path, capsys):
    argv = ["train", "--quiet", "--output-dir", str(tmp_path / "run"),
            *sets(TINY + ["model.prism.enabled=true", "model.prism.lambda_unique_per_modality={foo: 0.3}"])]
    assert main(argv) == 2
    one_error_line(capsys, "model.prism.lambda_unique_per_modality: no modality 'foo'; "
                           "this dataset's modalities are image, text")


def test_cuda_requested_without_cuda(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    tiny = [s for s in TINY if not s.startswith("train.device=")]  # --set would override --device
    assert main(["train", "--quiet", "--device", "cuda", "--output-dir", str(tmp_path / "run"), *sets(tiny)]) == 2
    one_error_line(capsys, "CUDA is not available on this machine; use --device cpu")


# ----------------------------------------------------------------------------- divergence


def test_divergence_mid_epoch_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--quiet", "--output-dir", str(run), *sets(TINY + ["train.lr=1e10"])]) == 1
    one_error_line(capsys, "try a lower train.lr or train.grad_clip")
    assert not (run / "model.safetensors").exists()


def test_divergence_on_the_last_step_of_an_epoch_is_reported(tmp_path, capsys):
    # one batch per epoch: the loss check before each step never sees the update of the last one; the
    # weights stay finite (~1e10) but the attention logits overflow, so every score is nan
    run = tmp_path / "run"
    argv = ["train", "--quiet", "--output-dir", str(run),
            *sets(TINY + ["train.lr=1e10", "train.epochs=1", "train.batch_size=256"])]
    assert main(argv) == 1
    one_error_line(capsys, "training diverged at epoch 1: after its last step the model's scores became non-finite")
    assert not (run / "model.safetensors").exists() and not (run / "summary.json").exists()


def test_non_finite_weight_is_named(tiny_cfg):
    from prismrec.api import build

    run = build(tiny_cfg)
    trainer = Trainer(run.model, run.data, tiny_cfg.train, tiny_cfg.eval, run.device, progress=False)
    users = trainer.train_users[:8]
    trainer._check_finite(1, users)  # a fresh model passes
    assert trainer.model.training
    with torch.no_grad():
        run.model.position.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="the model's weight position.weight became non-finite"):
        trainer._check_finite(1, users)


def test_divergence_check_leaves_the_run_unchanged(tmp_path, monkeypatch, capsys):
    """The check draws from no generator: with or without it, training gives the same numbers."""
    tiny = sets(TINY + ["model.prism.enabled=true", "train.loss=bce"])
    assert main(["train", "--quiet", "--json", "--output-dir", str(tmp_path / "a"), *tiny]) == 0
    checked = capsys.readouterr().out
    monkeypatch.setattr(Trainer, "_check_finite", lambda self, epoch, users: None)
    assert main(["train", "--quiet", "--json", "--output-dir", str(tmp_path / "b"), *tiny]) == 0
    unchecked = capsys.readouterr().out
    assert json.loads(checked)["test"] == json.loads(unchecked)["test"]


# ----------------------------------------------------------------------------- features


@pytest.mark.parametrize("kind", ["text", "clip"])
def test_features_unknown_device(kind, tmp_path, capsys):
    assert main(["features", kind, "--data", str(tmp_path), "--device", "foo"]) == 2
    one_error_line(capsys, "--device 'foo' is not a torch device")


def test_features_unavailable_device(tmp_path, monkeypatch, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["features", "text", "--data", str(tmp_path), "--device", "cuda"]) == 2
    one_error_line(capsys, "--device 'cuda' is not available on this machine; use --device cpu")


@pytest.mark.parametrize("kind", ["text", "clip", "attributes"])
@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_features_batch_size_must_be_positive(kind, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["features", kind, "--data", str(tmp_path), "--batch-size", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --batch-size:" in err and ">= 1" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- generic handler


@pytest.mark.parametrize("exc,needle", [
    (PermissionError(13, "Permission denied", "/data/x.txt"), "error: /data/x.txt: Permission denied"),
    (IsADirectoryError(21, "Is a directory", "out.csv"), "error: out.csv: Is a directory"),
    (OSError(28, "No space left on device"), "error: No space left on device"),
    (OSError("model foo is not a local folder"), "error: model foo is not a local folder"),
])
def test_os_errors_are_one_line(exc, needle, monkeypatch, capsys):
    def cmd(args):
        raise exc

    monkeypatch.setattr(prismrec.cli.run, "cmd_evaluate", cmd)
    assert main(["evaluate", "--run", "somewhere"]) == 2
    assert capsys.readouterr().err == needle + "\n"


def test_undecodable_text_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(prismrec.cli.run, "cmd_evaluate", lambda args: b"ok \xff".decode("utf-8"))
    assert main(["evaluate", "--run", "somewhere"]) == 2
    one_error_line(capsys, "not valid UTF-8")


@pytest.mark.parametrize("bug", [KeyError("k"), TypeError("t"), ValueError("v")])
def test_programming_errors_still_raise(bug, monkeypatch):
    def cmd(args):
        raise bug

    monkeypatch.setattr(prismrec.cli.run, "cmd_evaluate", cmd)
    with pytest.raises(type(bug)):
        main(["evaluate", "--run", "somewhere"])


def test_inspect_per_position_needs_export_weights(tmp_path, capsys):
    from prismrec.cli import main

    assert main(["inspect", "--run", str(tmp_path / "no_run"), "--per-position"]) == 2
    assert "--per-position" in capsys.readouterr().err  # refused before the (missing) run is loaded


def test_histories_too_short_to_train_on_name_the_file(tmp_path, capsys):
    """Every history has 3 items: valid and test take two, so nothing is left to train on (this once
    ended in a traceback from the batch split). The error names the file, and no run folder is made."""
    path = tmp_path / "seq.txt"
    path.write_text("1 1 2 3\n2 2 3 4\n3 4 5\n")
    out = tmp_path / "run"
    assert main(["train", "--quiet", "--data", str(path), "--output-dir", str(out), "--set", "train.epochs=1"]) == 2
    err = one_error_line(capsys, f"{path}: no history is long enough to train on")
    assert "at least one user with 4 or more items (the longest history here has 3)" in err
    assert not out.exists()


def test_item_ids_that_no_sequence_holds_are_warned_of(tmp_path):
    """Ids run 1..max: ids no sequence holds are still ranked in every evaluation. Training says so
    (with the count and the file); a file whose ids are all used trains without the warning."""
    import re
    import warnings

    path = tmp_path / "gaps.txt"
    path.write_text("1 2 4 8 10\n2 4 8 10 2\n3 10 8 4 2\n")  # ids 1, 3, 5, 6, 7 and 9 unused
    args = ["train", "--quiet", "--set", "train.epochs=1", "--set", "model.hidden_dim=8"]
    with pytest.warns(UserWarning, match=re.escape(f"{path}: 6 of the 10 item ids (1..10) occur in no sequence")):
        assert main([*args, "--data", str(path), "--output-dir", str(tmp_path / "a")]) == 0
    full = tmp_path / "full.txt"
    full.write_text("1 1 2 3 4\n2 2 3 4 1\n3 4 3 2 1\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([*args, "--data", str(full), "--output-dir", str(tmp_path / "b")]) == 0
    assert not any("occur in no sequence" in str(w.message) for w in caught)
