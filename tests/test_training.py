import json
import math

import numpy as np
import pytest
import torch

from prismrec.api import build, load_run, train
from prismrec.config import build_config
from prismrec.models import LossOutput
from prismrec.training import Trainer
from prismrec.training.sampling import sample_negatives

from conftest import TINY


def test_loss_falls_on_tiny_problem():
    cfg = build_config(overrides=TINY + ["train.epochs=8", "train.patience=100", "train.lr=0.01"])
    r = build(cfg)
    t = Trainer(r.model, r.data, cfg.train, cfg.eval, r.device, progress=False)
    losses = [t.train_epoch(e)["loss"] for e in range(1, 9)]
    assert losses[-1] < losses[0] * 0.9


def test_same_seed_same_metrics(tiny_cfg, tmp_path):
    a = train(tiny_cfg, tmp_path / "a", progress=False).summary
    b = train(tiny_cfg, tmp_path / "b", progress=False).summary
    assert a["test"] == b["test"] and a["valid"] == b["valid"]
    c = train(build_config(overrides=TINY + ["train.seed=3"]), tmp_path / "c", progress=False).summary
    assert c["test"] != a["test"]


def test_run_directory_and_reload_reproduce_summary(tiny_cfg, tmp_path):
    run = train(tiny_cfg, tmp_path / "run", progress=False)
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.yaml", "model.safetensors", "metrics.jsonl", "summary.json"} <= files
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    for key in ("valid", "test", "best_epoch", "epochs_run", "seconds_per_epoch", "eval_seconds",
                "prismrec_version", "source_revision", "source_revisions"):
        assert key in summary
    assert "NDCG@10" in summary["valid"] and "HR@10" in summary["test"]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == summary["epochs_run"]
    again = load_run(tmp_path / "run")
    assert again.evaluate("test").metrics == summary["test"]
    assert again.evaluate("valid").metrics == summary["valid"]
    assert run.recommend([1, 2, 3], k=5)[0][0] not in (1, 2, 3)


def test_source_revision_names_the_commit_and_uncommitted_code(tmp_path):
    import shutil
    import subprocess

    from prismrec.training.checkpoint import source_revision

    if shutil.which("git") is None:
        pytest.skip("git not installed")
    assert source_revision.__wrapped__(tmp_path) is None  # not a checkout: no revision
    pkg = tmp_path / "repo" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "mod.py").write_text("x = 1\n")
    git = ["git", "-C", str(tmp_path / "repo"), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "c"], check=True)
    head = subprocess.run(git[:3] + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert source_revision.__wrapped__(pkg) == head
    (tmp_path / "repo" / "elsewhere.txt").write_text("outside the package\n")
    assert source_revision.__wrapped__(pkg) == head  # only the package's own files count
    (pkg / "mod.py").write_text("x = 2\n")
    assert source_revision.__wrapped__(pkg) == head + "+dirty"


def test_early_stopping_restores_best(tmp_path):
    cfg = build_config(overrides=TINY + ["train.epochs=30", "train.patience=2", "train.lr=0.05"])
    run = train(cfg, tmp_path / "r", progress=False)
    s = run.summary
    assert s["epochs_run"] <= 30 and s["patience"] == 2
    records = [json.loads(l) for l in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    best = max(records, key=lambda r: r["valid"]["NDCG@10"])
    assert s["best_epoch"] == best["epoch"]
    assert abs(s["valid"]["NDCG@10"] - best["valid"]["NDCG@10"]) < 1e-9
    assert s["stopped_early"] and s["epochs_run"] - s["best_epoch"] == 2


def test_negative_sampling_avoids_history_and_padding():
    g = torch.Generator().manual_seed(0)
    history = torch.tensor([[1, 2, 3, 4, 0], [5, 6, 0, 0, 0]])
    neg = sample_negatives(history, (2, 500), num_items=8, generator=g)
    assert neg.min() >= 1 and neg.max() <= 8
    assert not np.isin(neg[0].numpy(), [1, 2, 3, 4]).any()
    assert not np.isin(neg[1].numpy(), [5, 6]).any()
    assert set(neg[1].tolist()) == {1, 2, 3, 4, 7, 8}  # every allowed id can be drawn


def test_bce_training_runs(tmp_path):
    cfg = build_config(overrides=TINY + ["train.loss=bce"])
    run = train(cfg, tmp_path / "bce", progress=False)
    s = run.summary
    assert s["loss"] == "bce" and 0 <= s["test"]["NDCG@10"] <= 1
    assert run.model.needs_negatives  # BCE scores each target against a sampled negative


def test_checkpoint_loading_never_unpickles(tiny_cfg, tmp_path):
    train(tiny_cfg, tmp_path / "run", progress=False)
    raw = (tmp_path / "run" / "model.safetensors").read_bytes()
    assert raw[8:9] == b"{"  # safetensors: 8-byte header length, then a JSON header


def test_time_limit_stops_and_finishes_normally(tmp_path):
    cfg = build_config(overrides=TINY + ["train.epochs=50", "train.patience=100", "train.time_limit_minutes=0.0001"])
    s = train(cfg, tmp_path / "t", progress=False).summary
    assert s["stop_reason"] == "time_limit" and s["epochs_run"] == 1 and "NDCG@10" in s["test"]


def test_interrupt_keeps_the_best_epoch_and_still_tests_and_saves(tmp_path, monkeypatch):
    cfg = build_config(overrides=TINY + ["train.epochs=50", "train.patience=100"])
    real_epoch = Trainer.train_epoch

    def epoch_then_ctrl_c(self, epoch):
        if epoch == 4:
            raise KeyboardInterrupt  # as if Ctrl-C arrived during the 4th epoch
        return real_epoch(self, epoch)

    monkeypatch.setattr(Trainer, "train_epoch", epoch_then_ctrl_c)
    run = train(cfg, tmp_path / "i", progress=False)
    s = run.summary
    assert s["stop_reason"] == "interrupted" and s["epochs_run"] == 3 and 1 <= s["best_epoch"] <= 3
    assert "NDCG@10" in s["test"] and (tmp_path / "i" / "model.safetensors").is_file()
    lines = (tmp_path / "i" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3
    best = json.loads(lines[s["best_epoch"] - 1])["valid"]["NDCG@10"]
    assert best == max(json.loads(x)["valid"]["NDCG@10"] for x in lines)
    assert abs(s["valid"]["NDCG@10"] - best) < 1e-9  # the restored state is the best epoch's


def test_epoch_loss_normalization_weighs_every_target_position_equally(monkeypatch):
    """With loss_normalization=epoch a batch's recommendation loss is weighted by its targets over the
    epoch's mean targets per batch: the weights average to 1 over an epoch and are proportional to
    the batch's targets."""
    cfg = build_config(overrides=TINY + ["train.loss_normalization=epoch"])
    run = build(cfg)
    trainer = Trainer(run.model, run.data, cfg.train, cfg.eval, run.device, progress=False)
    seen: list[tuple[int, float]] = []
    real = trainer.accumulate_gradients
    monkeypatch.setattr(trainer, "accumulate_gradients", lambda users, w: (
        seen.append((int(trainer.targets_per_user[users].sum()), w)), real(users, w))[1])
    trainer.train_epoch(1)
    counts = torch.tensor([c for c, _ in seen], dtype=torch.float64)
    weights = torch.tensor([w for _, w in seen], dtype=torch.float64)
    assert len(set(counts.tolist())) > 1  # batches differ in targets, so the weights must too
    torch.testing.assert_close(weights.mean(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(weights / weights[0], counts / counts[0])


@pytest.mark.parametrize("extra", [[], ["model.prism.enabled=true", "model.prism.lambda_unique=0",
                                        "model.prism.lambda_synergy=0", "model.prism.lambda_redundancy=0"],
                                   ["model.prism.enabled=true", "model.prism.masking=mean"],
                                   ["model.prism.enabled=true", "model.prism.masking=mean",
                                    "model.prism.lambda_transition=0.2", "model.prism.synergy_contrast=true"],
                                   ["model.prism.enabled=true", "model.prism.masking=zero",
                                    "model.prism.method=concat"],
                                   ["model.prism.enabled=true", "model.prism.masking=mean",
                                    "model.prism.output_content=true"],
                                   ["model.prism.enabled=true", "model.prism.masking=mean",
                                    "model.prism.output_content=true", "model.prism.output_fusion=user"],
                                   ["model.prism.enabled=true", "model.prism.method=concat",
                                    "model.prism.output_content=true"]])
def test_micro_batches_give_the_whole_batch_gradient(extra):
    """Length-sorted parts with accumulated, share-weighted gradients = the batch's gradient (dropout
    off, CE, deterministic masking: nothing random in the step), with less padding per part. With
    PRISM the experts run once for the batch (begin_batch/finish_batch), and the interaction losses
    over the batch's distinct items are the whole batch's; content in the prediction layer
    (``output_content``) is computed for every item once per step and its gradient carried back."""
    sets = TINY + ["model.dropout=0.0", "model.prism.expert_dropout=0.0", "model.prism.fusion_dropout=0.0", *extra]
    grads, losses = [], []
    for micro in (1, 4):
        cfg = build_config(overrides=sets + [f"train.micro_batches={micro}"])
        run = build(cfg)  # same seed: same initial weights
        trainer = Trainer(run.model, run.data, cfg.train, cfg.eval, run.device, progress=False)
        run.model.train()
        real_loss, first = run.model.training_loss, next(run.model.parameters())

        def with_user_mean_term(batch, real_loss=real_loss, first=first):
            """An auxiliary term that is a mean over the batch's users, as PRISM's and InDiRec's are."""
            out = real_loss(batch)
            aux = 0.01 * batch.user_index.double().mean().float() * first.sum()
            return LossOutput(total=out.total + aux, parts=out.parts, rec=out.rec)

        run.model.training_loss = with_user_mean_term
        trainer.optimizer.zero_grad(set_to_none=True)
        loss, parts = trainer.accumulate_gradients(torch.arange(run.data.num_users))
        losses.append((loss, parts["rec"]))
        grads.append({n: p.grad.clone() for n, p in run.model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6)
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)


OUTPUT_ITEMS = ["model.prism.output_content=true"]
OUTPUT_USER = OUTPUT_ITEMS + ["model.prism.output_fusion=user"]


@pytest.mark.parametrize("backbone,extra", [("sasrec", []), ("stosa", []), ("sasrec", OUTPUT_ITEMS),
                                            ("sasrec", OUTPUT_USER), ("stosa", OUTPUT_ITEMS)])
def test_micro_batches_run_the_prism_experts_once_per_step(backbone, extra):
    """Parts read the step's expert table instead of running the experts again: no more expert calls
    for 4 micro-batches than for 1 (per stream, the full input once; the masked views once; with
    ``output_content`` the prediction layer's table of every item once; without the tables 4 parts
    would make 4 times as many)."""
    calls = []
    for micro in (1, 4):
        cfg = build_config(overrides=TINY + ["model.prism.enabled=true", f"model.backbone={backbone}",
                                             f"train.micro_batches={micro}", *extra])
        run = build(cfg)
        trainer = Trainer(run.model, run.data, cfg.train, cfg.eval, run.device, progress=False)
        run.model.train()
        rows = []  # leading size of each expert call's input
        run.model.item_input.fuser.experts.register_forward_hook(lambda _m, args, _out: rows.append(args[0].shape[0]))
        trainer.optimizer.zero_grad(set_to_none=True)
        loss, parts = trainer.accumulate_gradients(torch.arange(run.data.num_users))
        # every item (N + 1 rows) once per step and stream with content in the prediction layer (STOSA's loss
        # asks for the table several times: with one part each time), else never
        streams, tables = 2 if backbone == "stosa" else 1, rows.count(run.data.num_items + 1)
        assert (tables == streams if micro > 1 else tables >= streams) if extra else tables == 0
        assert {"L_synergy", "L_redundancy"} <= parts.keys() and math.isfinite(loss)
        assert run.model.item_input._step is None and not run.model.item_input._step_keys  # released
        expert_grad = next(run.model.item_input.fuser.experts.parameters()).grad
        assert expert_grad is not None and expert_grad.abs().sum() > 0
        calls.append(len(rows))
    assert calls[1] <= calls[0]


@pytest.mark.parametrize("value,loss,expected", [(None, "ce", False), (None, "bce", True), ("true", "ce", True),
                                                 ("false", "bce", False), ("auto", "bce", True)])
def test_length_bucketing_auto_follows_the_loss(value, loss, expected):
    sets = TINY + [f"train.loss={loss}"] + ([f"train.length_bucketing={value}"] if value else [])
    cfg = build_config(overrides=sets)
    run = build(cfg)
    trainer = Trainer(run.model, run.data, cfg.train, cfg.eval, run.device, progress=False)
    assert trainer.length_bucketing is expected
    spans = sorted((min(x), max(x)) for x in (trainer.train_lengths[b].tolist() for b in trainer.user_batches()))
    disjoint = all(hi <= nxt_lo for (_, hi), (nxt_lo, _) in zip(spans, spans[1:]))
    assert disjoint is expected  # bucketed batches cut the length-sorted users into consecutive ranges


def test_length_bucketing_rejects_other_values():
    from prismrec.config import ConfigError
    with pytest.raises(ConfigError, match="length_bucketing"):
        build_config(overrides=["train.length_bucketing=sometimes"])


@pytest.mark.parametrize("value,loss,expected", [(None, "ce", 20), (None, "bce", 30), ("auto", "bce", 30),
                                                 ("7", "ce", 7), ("3", "bce", 3)])
def test_patience_auto_follows_the_loss(value, loss, expected, monkeypatch):
    sets = TINY + [f"train.loss={loss}", "train.epochs=200"] + ([f"train.patience={value}"] if value else [])
    cfg = build_config(overrides=sets)
    run = build(cfg)
    trainer = Trainer(run.model, run.data, cfg.train, cfg.eval, run.device, progress=False)
    assert trainer.patience == expected
    # and the loop uses it: with validation never improving after epoch 1, training stops after 1 + patience
    scores = iter([0.5] + [0.1] * 300)
    real_evaluate = Trainer.evaluate

    def flat_valid(self, split):
        res = real_evaluate(self, split)
        res.metrics["NDCG@10"] = next(scores)
        return res

    monkeypatch.setattr(Trainer, "train_epoch", lambda self, epoch: {"loss": 0.0})
    monkeypatch.setattr(Trainer, "evaluate", flat_valid)
    result = trainer.fit()
    assert result.best_epoch == 1 and result.epochs_run == 1 + expected and result.stop_reason == "early_stopping"


@pytest.mark.parametrize("stosa_loss,train_loss,sampled", [("bpr_pvn", "ce", True), ("ce", "bce", False)])
def test_auto_batching_and_patience_follow_the_loss_the_model_trains_with(stosa_loss, train_loss, sampled):
    # STOSA ignores train.loss: its BPR samples negatives (bce's auto values), its CE option does not
    cfg = build_config(overrides=TINY + ["model.backbone=stosa", f"model.stosa.loss={stosa_loss}",
                                         f"train.loss={train_loss}"])
    run = build(cfg)
    trainer = Trainer(run.model, run.data, cfg.train, cfg.eval, run.device, progress=False)
    assert run.model.needs_negatives is sampled
    assert trainer.length_bucketing is sampled
    assert trainer.patience == (30 if sampled else 20)


def test_fusion_balance_loss_in_micro_batches(tmp_path):
    """The balance term is each part's (on its own fusion weights), weighted by its share of the
    step's users, while the item-level interaction losses are the step's, computed once."""
    from prismrec.prism.losses import fusion_balance_loss

    cfg = build_config(overrides=TINY + ["model.prism.enabled=true", "model.prism.lambda_fusion_balance=0.5",
                                         "train.micro_batches=2", "train.epochs=1"])
    run = build(cfg)
    trainer = Trainer(run.model, run.data, cfg.train, cfg.eval, run.device, progress=False)
    run.model.train()
    fuser, seen = run.model.item_input.fuser, []
    real = fuser.balance_loss

    def record(weights, padding_mask):
        seen.append(float(fusion_balance_loss(weights.detach(), padding_mask)) * weights.shape[0] / run.data.num_users)
        return real(weights, padding_mask)

    fuser.balance_loss = record
    _, parts = trainer.accumulate_gradients(torch.arange(run.data.num_users))
    assert len(seen) == 2 and min(seen) > 0  # one term per part
    assert parts["L_fusion_balance"] == pytest.approx(0.5 * sum(seen), rel=1e-5)
    train(cfg, tmp_path / "run", progress=False)
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert record["L_fusion_balance"] > 0 and "L_synergy" in record


@pytest.mark.parametrize("extra", [OUTPUT_ITEMS, OUTPUT_USER])
def test_evaluation_computes_the_content_item_table_once(extra):
    """With content in the prediction layer, one full-ranking evaluation computes every item's content
    once (not once per user batch) and ranks exactly as scoring each batch afresh; the cached table is
    released after the evaluation and never used in training."""
    from prismrec.evaluation import evaluate

    cfg = build_config(overrides=TINY + ["model.prism.enabled=true", "eval.batch_size=8", *extra])
    run = build(cfg)
    trainer = Trainer(run.model, run.data, cfg.train, cfg.eval, run.device, progress=False)
    trainer.train_epoch(1)  # weights away from their initial values
    rows = []  # leading size of each expert call's input
    run.model.item_input.fuser.experts.register_forward_hook(lambda _m, args, _out: rows.append(args[0].shape[0]))
    cached = trainer.evaluate("valid")
    assert rows.count(run.data.num_items + 1) == 1
    assert run.model.item_input._table_cache is None
    run.model.eval()
    rows.clear()
    fresh = evaluate(run.model.full_sort_scores, run.data.split("valid"), cfg.eval.ks, batch_size=8)
    assert rows.count(run.data.num_items + 1) == len(range(0, run.data.num_users, 8)) > 1
    assert torch.equal(cached.ranks, fresh.ranks) and cached.metrics == fresh.metrics
    run.model.train()
    with run.model.cached_item_tables():
        a = run.model.item_input.output_keys()
        b = run.model.item_input.output_keys()
    assert a is not b and a.requires_grad  # training: computed every time, in the graph


def test_training_with_sequence_fusion_scope_warns_of_the_future_leak(tmp_path):
    leak = "fusion_scope=sequence pools the fusion weights"
    cfg = build_config(overrides=TINY + ["train.epochs=1", "model.prism.enabled=true",
                                         "model.prism.fusion_scope=sequence"])
    with pytest.warns(UserWarning, match=leak):
        train(cfg, tmp_path / "seq", progress=False)
    import warnings
    with warnings.catch_warnings(record=True) as caught:  # the causal default trains without it
        warnings.simplefilter("always")
        train(build_config(overrides=TINY + ["train.epochs=1", "model.prism.enabled=true"]), tmp_path / "causal",
              progress=False)
    assert not any(leak in str(w.message) for w in caught)
