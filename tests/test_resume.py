"""Resumable training: stopping after some epochs and resuming gives exactly the uninterrupted run
(weights, per-epoch metrics, best epoch) for the ID, PRISM and InDiRec paths; refusals are clear."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
import torch
from conftest import TINY
from safetensors.torch import load_file

from prismrec.api import load_run, resume, train
from prismrec.cli import main
from prismrec.config import ConfigError, build_config
from prismrec.training import Trainer

VARIANTS = {
    "sasrec-bce": ["train.loss=bce"],  # negatives from the trainer's generator, dropout from the global one
    "prism": ["model.prism.enabled=true"],  # random masking draws every step
    "indirec": ["model.backbone=indirec", "model.indirec.num_intents=3", "model.indirec.diffusion_steps=20",
                "model.indirec.sample_steps=4", "model.indirec.cl_max_samples=16"],  # per-epoch k-means
    "stosa-prism": ["model.backbone=stosa", "model.prism.enabled=true"],  # streams share PRISM's tensors
    "prism-fusion-warmup": ["model.prism.enabled=true", "model.prism.fusion_warmup_epochs=3",  # per-epoch alpha
                            "model.prism.output_content=true", "model.prism.output_fusion=user"],
}


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def same_records(a: list[dict], b: list[dict]) -> None:
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b]
    for ra, rb in zip(a, b):
        assert ra["loss"] == rb["loss"] and ra["valid"] == rb["valid"]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_stop_and_resume_equals_the_uninterrupted_run(variant, tmp_path):
    sets = TINY + VARIANTS[variant] + ["train.patience=100", "train.seed=5"]
    straight = train(build_config(overrides=sets + ["train.epochs=4"]), tmp_path / "a", progress=False)
    train(build_config(overrides=sets + ["train.epochs=2"]), tmp_path / "b", progress=False)
    resumed = resume(tmp_path / "b", ["train.epochs=4"], progress=False)
    same_records(metrics(tmp_path / "a"), metrics(tmp_path / "b"))
    assert len(metrics(tmp_path / "b")) == 4
    wa, wb = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    for key in ("best_epoch", "epochs_run", "valid", "test"):
        assert straight.summary[key] == resumed.summary[key]
    assert not (tmp_path / "b" / "resume.tmp").exists() and (tmp_path / "b" / "resume" / "state.json").is_file()


def test_a_resumed_run_records_which_code_trained_which_epochs(tmp_path, monkeypatch):
    """Each epoch logs the code revision that trained it; the summary groups them into spans, so a run
    continued after a commit says so (``source_revision`` alone names only the process that finished it)."""
    import prismrec.api as api

    sets = TINY + ["train.patience=100", "train.seed=5"]
    monkeypatch.setattr(api, "source_revision", lambda: "aaaa111")
    train(build_config(overrides=sets + ["train.epochs=2"]), tmp_path / "r", progress=False)
    monkeypatch.setattr(api, "source_revision", lambda: "bbbb222+dirty")
    summary = resume(tmp_path / "r", ["train.epochs=3"], progress=False).summary
    assert [r["source_revision"] for r in metrics(tmp_path / "r")] == ["aaaa111", "aaaa111", "bbbb222+dirty"]
    assert summary["source_revision"] == "bbbb222+dirty"
    assert summary["source_revisions"] == [{"revision": "aaaa111", "first_epoch": 1, "last_epoch": 2},
                                           {"revision": "bbbb222+dirty", "first_epoch": 3, "last_epoch": 3}]
    # epochs logged before revisions were (or outside a checkout) form a span of their own
    assert api.revision_spans([{"epoch": 1}, {"epoch": 2}, {"epoch": 3, "source_revision": "c"}]) == [
        {"revision": None, "first_epoch": 1, "last_epoch": 2}, {"revision": "c", "first_epoch": 3, "last_epoch": 3}]


def test_resume_after_an_interrupt_continues_from_the_last_finished_epoch(tmp_path, monkeypatch):
    sets = TINY + ["train.epochs=5", "train.patience=100"]
    train(build_config(overrides=sets), tmp_path / "a", progress=False)
    real_epoch = Trainer.train_epoch

    def crash_in_epoch_3(self, epoch):
        if epoch == 3:
            raise KeyboardInterrupt
        return real_epoch(self, epoch)

    monkeypatch.setattr(Trainer, "train_epoch", crash_in_epoch_3)
    assert train(build_config(overrides=sets), tmp_path / "b", progress=False).summary["epochs_run"] == 2
    monkeypatch.setattr(Trainer, "train_epoch", real_epoch)
    assert resume(tmp_path / "b", progress=False).summary["epochs_run"] == 5
    same_records(metrics(tmp_path / "a"), metrics(tmp_path / "b"))


def test_resume_refuses_changed_settings_finished_runs_and_missing_state(tmp_path):
    run_dir = tmp_path / "r"
    train(build_config(overrides=TINY + ["train.epochs=2"]), run_dir, progress=False)
    with pytest.raises(ConfigError, match="cannot change model.hidden_dim"):
        resume(run_dir, ["model.hidden_dim=32"], progress=False)
    with pytest.raises(ConfigError, match="raise train.epochs"):
        resume(run_dir, progress=False)
    stopped = tmp_path / "s"
    s = train(build_config(overrides=TINY + ["train.epochs=40", "train.patience=1", "train.lr=0.05"]), stopped,
              progress=False).summary
    assert s["stop_reason"] == "early_stopping"
    with pytest.raises(ConfigError, match="raise train.patience"):
        resume(stopped, ["train.epochs=80"], progress=False)
    off = tmp_path / "off"
    train(build_config(overrides=TINY + ["train.resume_state=false"]), off, progress=False)
    assert not (off / "resume").exists()
    with pytest.raises(FileNotFoundError, match="no saved training state"):
        resume(off, ["train.epochs=3"], progress=False)


@pytest.mark.parametrize("left", ["no summary", "interrupted summary"])
def test_resume_finishes_a_run_cut_off_after_its_last_epoch(left, tmp_path):
    # killed while finishing (no summary.json yet), or interrupted after its last saved epoch (a summary
    # of the best epoch so far, "stop_reason": "interrupted"): resuming restores the best epoch and
    # writes the summary, the same as the uninterrupted run's, without training further
    stopped = tmp_path / "s"
    first = train(build_config(overrides=TINY + ["train.epochs=40", "train.patience=1", "train.lr=0.05"]), stopped,
                  progress=False).summary
    assert first["stop_reason"] == "early_stopping"
    if left == "no summary":
        (stopped / "summary.json").unlink()
    else:
        (stopped / "summary.json").write_text(json.dumps(dict(first, stop_reason="interrupted")))
    again = resume(stopped, progress=False).summary
    for key in ("stop_reason", "best_epoch", "epochs_run", "test", "valid"):
        assert again[key] == first[key], key
    assert len((stopped / "metrics.jsonl").read_text().splitlines()) == first["epochs_run"]


def test_a_fresh_run_in_the_same_directory_discards_the_old_state(tmp_path):
    run_dir = tmp_path / "r"
    train(build_config(overrides=TINY + ["train.epochs=3"]), run_dir, progress=False)
    train(build_config(overrides=TINY + ["train.epochs=1"]), run_dir, progress=False)
    assert json.loads((run_dir / "resume" / "state.json").read_text())["epoch"] == 1


def test_cli_resume(tmp_path, capsys):
    run_dir = tmp_path / "cli"
    assert main(["train", "--quiet", "--output-dir", str(run_dir), *sum((["--set", s] for s in TINY), [])]) == 0
    # 2 epochs with patience left: the run is told it may not have converged and how to continue it
    err = capsys.readouterr().err
    assert "note: training reached train.epochs = 2 before early stopping" in err
    suggested = err[err.index("prismrec train --resume"):].split()
    assert suggested == ["prismrec", "train", "--resume", str(run_dir), "--set", "train.epochs=4"]
    assert main(["train", "--quiet", "--json", "--resume", str(run_dir), "--set", "train.epochs=3"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["epochs_run"] == 3
    assert main(["train", "--resume", str(run_dir), "--set", "model.num_layers=2"]) != 0
    assert "cannot change model.num_layers" in capsys.readouterr().err


def test_resuming_a_config_saved_before_a_key_existed_warns(tmp_path):
    import yaml
    run_dir = tmp_path / "old"
    train(build_config(overrides=TINY + ["train.epochs=2"]), run_dir, progress=False)
    raw = yaml.safe_load((run_dir / "config.yaml").read_text())
    del raw["train"]["micro_batches"]  # as written by a prismrec without that key
    del raw["data"]["synthetic"]["synergy_categories"]  # a key whose default is the old behaviour: no warning
    (run_dir / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.warns(UserWarning, match="predates config key.*train.micro_batches=4"):
        assert resume(run_dir, ["train.epochs=3"], progress=False).summary["epochs_run"] == 3
    # loading the run, and training anew from its config.yaml, warn the same way; a partial recipe does not
    (run_dir / "config.yaml").write_text(yaml.safe_dump(raw))  # the resumed run saved the resolved config
    with pytest.warns(UserWarning, match="predates config key.*train.micro_batches=4"):
        load_run(run_dir)
    with pytest.warns(UserWarning, match="predates config key.*train.micro_batches=4"):
        assert main(["train", "--quiet", "--config", str(run_dir / "config.yaml"), "--set", "train.epochs=1",
                     "--output-dir", str(tmp_path / "again")]) == 0
    proc = subprocess.run([sys.executable, "-m", "prismrec", "train", "--quiet", "--config", str(run_dir / "config.yaml"),
                           "--set", "train.epochs=1", "--output-dir", str(tmp_path / "again2")],
                          capture_output=True, text=True, check=True)
    warning_lines = [x for x in proc.stderr.splitlines() if "predates config key" in x]
    assert len(warning_lines) == 1 and warning_lines[0].startswith("warning: ")  # one line, no source excerpt
    assert "synergy_categories" not in warning_lines[0]
    assert "job = lambda" not in proc.stderr
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"train": raw["train"], "data": raw["data"], "model": raw["model"]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["train", "--quiet", "--config", str(recipe), "--set", "train.epochs=1",
                     "--output-dir", str(tmp_path / "recipe_run")]) == 0


def test_unchanged_best_weights_are_linked_not_rewritten(tmp_path):
    from prismrec.training.resume import TrainingState, load_training_state, save_training_state

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    gens = {"trainer": torch.Generator().manual_seed(0)}
    st = TrainingState(epoch=1, best_score=0.1, best_epoch=1,
                       best_state={k: v.clone() for k, v in model.state_dict().items()})
    d = tmp_path / "resume"
    save_training_state(d, st, model, opt, gens, torch.device("cpu"), {})
    first = (d / "best.safetensors").stat().st_ino
    st.epoch = 2  # no improvement: the same file is carried over (a hard link keeps its inode)
    save_training_state(d, st, model, opt, gens, torch.device("cpu"), {})
    assert (d / "best.safetensors").stat().st_ino == first
    with torch.no_grad():
        model.weight.add_(1.0)
    st.epoch, st.best_epoch = 3, 3
    st.best_state = {k: v.clone() for k, v in model.state_dict().items()}
    save_training_state(d, st, model, opt, gens, torch.device("cpu"), {})
    assert (d / "best.safetensors").stat().st_ino != first  # a new best is written
    back = load_training_state(d, model, opt, gens, torch.device("cpu"))
    assert back.best_epoch == 3 and torch.equal(back.best_state["weight"], model.weight.detach())


def test_unfinished_training_note_only_for_runs_cut_off_before_early_stopping(tmp_path):
    from prismrec.api import unfinished_training_note
    from prismrec.config import TrainConfig

    cfg = TrainConfig(epochs=200, time_limit_minutes=45)
    base = {"best_epoch": 192, "epochs_run": 200, "patience": 30}
    note = unfinished_training_note({**base, "stop_reason": "max_epochs"}, tmp_path, cfg)
    assert "reached train.epochs = 200" in note and "best epoch 192, then 8 epoch(s) without improvement; patience 30" in note
    assert note.endswith(f"prismrec train --resume {tmp_path} --set train.epochs=400")
    note = unfinished_training_note({**base, "epochs_run": 61, "stop_reason": "time_limit"}, tmp_path, cfg)
    assert "hit train.time_limit_minutes = 45 after 61 epochs" in note
    assert note.endswith("--set train.time_limit_minutes=90")
    for reason in ("early_stopping", "interrupted"):  # judged by early stopping, or stopped on purpose
        assert unfinished_training_note({**base, "stop_reason": reason}, tmp_path, cfg) is None
