"""`prismrec runs` and prismrec.runlist: run folders found, and each one's state read right."""
import json
import os

import pytest

from prismrec.cli import main
from prismrec.runlist import best_epoch, find_runs, read_epochs, run_status

from conftest import TINY, sets


def epoch(n, ndcg, hr=0.1):
    return {"epoch": n, "loss": 1.0, "train_seconds": 2.0, "valid": {"NDCG@10": ndcg, "HR@10": hr}}


def fake_run(path, records, summary=None, config="data:\n  path: /data/amazon_toys\nmodel:\n  backbone: stosa\n"
             "  prism:\n    enabled: true\n    method: concat\ntrain:\n  loss: bce\n  seed: 3\n", tail=""):
    """A run folder as `prismrec train` leaves it, written by hand; ``tail`` is a half-written last line."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(config)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    if summary is not None:
        (path / "summary.json").write_text(json.dumps(summary))
        t = os.stat(path / "metrics.jsonl").st_mtime
        os.utime(path / "summary.json", (t + 5, t + 5))  # written after the last epoch, as train does
    return path


def test_a_trained_run_is_listed_with_its_summary(tmp_path, capsys):
    out = tmp_path / "runs" / "tiny"
    assert main(["train", "--quiet", "--output-dir", str(out), *sets(TINY)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    capsys.readouterr()
    assert main(["runs", str(tmp_path / "runs"), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["run"] == str(out) and row["dataset"] == "synthetic" and row["model"] == "sasrec"
    assert row["loss"] == "ce" and row["seed"] == 42 and row["epochs"] == 2
    assert row["state"] == "done: epoch limit"  # train.epochs=2 ended it, not early stopping
    assert row["best_epoch"] == summary["best_epoch"]
    assert row["best_valid"] == summary["valid"]["NDCG@10"] and row["test"] == summary["test"]["NDCG@10"]
    assert main(["runs", str(tmp_path / "runs"), "--metric", "hr@5"]) == 0
    text = capsys.readouterr().out
    assert f"{summary['test']['HR@5']:.4f}" in text and "HR@5 at the best epoch (1 run(s))" in text


def test_states_and_best_epochs_of_unfinished_stopped_and_resumed_runs(tmp_path):
    recs = [epoch(1, 0.01), epoch(2, 0.03), epoch(3, 0.02)]
    running = fake_run(tmp_path / "a" / "running", recs, tail='{"epoch": 4, "lo')
    st = run_status(running)
    assert (st.state, st.epochs, st.best_epoch, st.best_valid, st.test) == ("unfinished", 3, 2, 0.03, None)
    assert (st.dataset, st.model, st.loss, st.seed) == ("amazon_toys", "stosa+concat", "bce", 3)
    assert st.last_epoch_age_s is not None and st.last_epoch_age_s < 60 and st.seconds_per_epoch == 2.0

    stopped_summary = {"stop_reason": "interrupted", "best_epoch": 2, "valid": {"NDCG@10": 0.03},
                       "test": {"NDCG@10": 0.025}}
    stopped = fake_run(tmp_path / "a" / "stopped", recs, stopped_summary)
    assert (run_status(stopped).state, run_status(stopped).test) == ("stopped", 0.025)
    # resumed since: epochs written after the summary, which no longer says where the run stands
    resumed = fake_run(tmp_path / "b" / "resumed", recs, stopped_summary)
    with (resumed / "metrics.jsonl").open("a") as fh:
        fh.write(json.dumps(epoch(4, 0.05)) + "\n")
    t = os.stat(resumed / "summary.json").st_mtime
    os.utime(resumed / "metrics.jsonl", (t + 5, t + 5))
    st = run_status(resumed)
    assert (st.state, st.epochs, st.best_epoch, st.best_valid, st.test) == ("unfinished", 4, 4, 0.05, None)

    done = fake_run(tmp_path / "b" / "done", recs, {"stop_reason": "early_stopping", "best_epoch": 2,
                                                    "valid": {"NDCG@10": 0.03}, "test": {"NDCG@10": 0.02}})
    assert run_status(done).state == "done: early stop"
    assert run_status(done, "HR@10").best_valid == 0.1  # from the epochs when the summary lacks the metric
    (done / "summary.json").write_text('{"stop_reason": "early_st')  # damaged after the run ended
    st = run_status(done)
    assert (st.state, st.epochs, st.best_epoch, st.test) == ("summary.json unreadable", 3, 2, None)


def test_find_runs_searches_below_but_not_inside_runs(tmp_path):
    a = fake_run(tmp_path / "plan" / "x-s1", [epoch(1, 0.1)])
    b = fake_run(tmp_path / "plan" / "deeper" / "y-s2", [])
    (a / "resume").mkdir()
    (a / "resume" / "config.yaml").write_text("a copy, not a run\n")
    (a / "resume" / "metrics.jsonl").write_text("")
    fake_run(tmp_path / "plan" / ".venv" / "hidden", [epoch(1, 0.1)])  # hidden folders are not searched
    (tmp_path / "plan" / "notes").mkdir()
    (tmp_path / "plan" / "notes" / "config.yaml").write_text("no epochs, no summary: not a run\n")
    assert find_runs([tmp_path / "plan", a]) == [b, a]  # sorted, each once
    assert run_status(b).state == "no epoch yet" and run_status(b).seconds_per_epoch is None
    (b / "metrics.jsonl").unlink()  # cut off before its first epoch: config and resume/ only
    (b / "resume").mkdir()
    assert run_status(b).state == "no epoch yet"
    with pytest.raises(FileNotFoundError, match="no such folder"):
        find_runs([tmp_path / "missing"])


def test_epoch_readers_skip_what_is_not_an_epoch(tmp_path):
    fake_run(tmp_path / "r", [epoch(1, 0.02), epoch(2, 0.02)], tail="garbage\n[1, 2]\n")
    recs = read_epochs(tmp_path / "r")
    assert [r["epoch"] for r in recs] == [1, 2]
    assert best_epoch(recs, "NDCG@10")["epoch"] == 1  # the first of equal scores, as early stopping keeps
    assert best_epoch(recs, "MRR@5") is None and read_epochs(tmp_path / "none") == []


def test_runs_cli_errors_and_empty_folders(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'missing'}: no such folder")
    assert main(["runs", str(tmp_path), "--metric", "AUC"]) == 2
    assert "error: --metric: unknown metric 'AUC'" in capsys.readouterr().err
    assert main(["runs", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("no run folders under")
