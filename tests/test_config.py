import re

import pytest

from prismrec.config import ConfigError, ExperimentConfig, build_config, parse_set, to_dict, from_dict


def test_defaults_match_documented_keys():
    cfg = build_config()
    assert cfg.model.backbone == "sasrec" and cfg.train.loss == "ce" and cfg.eval.ks == (5, 10, 20)
    assert cfg.data.max_seq_len == 50 and cfg.data.path is None


def test_set_overrides_are_typed():
    cfg = build_config(overrides=["train.lr=0.01", "eval.ks=[1,10]", "train.metric=HR@10",
                                  "model.dropout=0.2", "train.loss=bce", "eval.exclude_history=false"])
    assert cfg.train.lr == 0.01 and cfg.eval.ks == (1, 10) and cfg.model.dropout == 0.2
    assert cfg.train.loss == "bce" and cfg.eval.exclude_history is False


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as exc:
        build_config(overrides=["train.learning_rate=0.1"])
    msg = str(exc.value)
    assert "train.learning_rate" in msg and "lr" in msg and "batch_size" in msg


def test_unknown_section():
    with pytest.raises(ConfigError, match="valid keys: data, eval, model, train"):
        build_config(overrides=["optim.lr=1"])


@pytest.mark.parametrize("item,needle", [
    ("train.loss=mse", "not one of"),
    ("train.epochs=1.5", "expected an integer"),
    ("model.num_heads=3", "must divide"),
    ("train.metric=NDCG@7", "K in eval.ks"),
    ("train.lr=abc", "expected a number"),
])
def test_invalid_values(item, needle):
    with pytest.raises(ConfigError, match=needle):
        build_config(overrides=[item])


def test_yaml_round_trip(tmp_path):
    cfg = build_config(overrides=["train.seed=7", "data.modalities=[text,attributes]"])
    p = tmp_path / "c.yaml"
    from prismrec.config import save_config
    save_config(cfg, p)
    assert build_config(p) == cfg
    assert from_dict(ExperimentConfig, to_dict(cfg)) == cfg


def test_yaml_is_never_executed(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("train: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_config(p)


def test_a_config_file_mistake_names_the_file_and_a_syntax_error_its_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(p))}: unknown key\(s\) train.epoch"):
        build_config(p)
    p.write_text("train:\n  epochs: abc\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(p))}: train.epochs: expected an integer"):
        build_config(p, overrides=["train.lr=0.01"])
    ok = tmp_path / "ok.yaml"
    ok.write_text("train:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=r"^unknown key\(s\) train.lr_typo"):  # the --set's, not the file's
        build_config(ok, overrides=["train.lr_typo=1"])
    p.write_text("train:\n  epochs: [3\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(p))}:3:1: not valid YAML: .*starts at line 2, column 11"):
        build_config(p)


def test_parse_set_rejects_malformed():
    with pytest.raises(ConfigError):
        parse_set(["train.lr"])


def test_every_recipe_is_a_valid_config():
    from conftest import REPO
    recipes = sorted((REPO / "recipes").glob("*.yaml"))
    assert recipes
    for path in recipes:
        build_config(path)  # raises ConfigError on an unknown key or bad value


def test_neutral_additions_name_real_keys():
    """Keys exempt from the "predates config key" warning must exist (a renamed key would silently
    lose its exemption, or exempt nothing)."""
    import dataclasses

    from prismrec.config import NEUTRAL_ADDITIONS, ExperimentConfig

    def leaves(cls, prefix=""):
        for f in dataclasses.fields(cls):
            t = f.default_factory if f.default_factory is not dataclasses.MISSING else None
            if t is not None and dataclasses.is_dataclass(t):
                yield from leaves(t, f"{prefix}{f.name}.")
            else:
                yield f"{prefix}{f.name}"

    keys = set(leaves(ExperimentConfig))
    assert "model.item_bias" in keys
    assert NEUTRAL_ADDITIONS <= keys, sorted(NEUTRAL_ADDITIONS - keys)


@pytest.mark.parametrize("override,message", [
    ("train.time_limit_minutes=-5", "train.time_limit_minutes must be a finite number >= 0"),
    ("train.time_limit_minutes=nan", "train.time_limit_minutes must be a finite number >= 0"),
    ("train.grad_clip=-1", "train.grad_clip must be a finite number >= 0"),
    ("train.num_threads=-2", "train.num_threads must be >= 0"),
    ("eval.ks=[10,5,10]", r"eval.ks \[10, 5, 10\] repeats a cut-off"),
])
def test_values_that_would_be_silently_misread_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        build_config(overrides=[override])


def test_an_empty_set_value_is_refused_not_read_as_null():
    with pytest.raises(ConfigError, match=r"--set 'data.path=': empty value; .*data.path=null"):
        parse_set(["data.path="])
    assert parse_set(["data.path=null"]) == {"data": {"path": None}}
