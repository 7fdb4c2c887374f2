"""Benchmark scripts: suite.py end to end on the tiny smoke plan (aggregation, a cut-off run resumed),
planted_world.py on the tiny planted plan, ensemble.py on two tiny runs, and the helpers of planted_world.py
and breakdown.py; list_popularity.py on a tiny run."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _suite(out: Path, results: Path, only: str = "-s1", *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "suite.py"), "--plan", str(ROOT / "benchmarks/plans/smoke.yaml"),
           "--out", str(out), "--results-dir", str(results), f"--only={only}", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_suite_runs_aggregates_and_resumes_a_cut_off_run(tmp_path):
    out, results = tmp_path / "runs", tmp_path / "results"
    _suite(out, results)
    agg = json.loads((results / "smoke.json").read_text())
    assert {(r["arm"], tuple(r["seeds"])) for r in agg["table"].values()} == {("sasrec", (1,)), ("prism", (1,))}
    (cmp,) = agg["comparisons"]
    assert (cmp["arm"], cmp["vs"], cmp["users"]) == ("prism", "sasrec", 60) and 0.0 <= cmp["t_pvalue"] <= 1.0
    # where the runs trained, from their summaries (not the aggregating machine)
    from prismrec.training.checkpoint import hardware

    assert agg["trained_on"] == {f"cpu: {hardware('cpu')['cpu']}": 2}

    run = out / "synthetic-ce-prism-s1"
    first = json.loads((run / "summary.json").read_text())
    # cut the run off after its last epoch: no summary or final weights, only the per-epoch resume state
    (run / "summary.json").unlink()
    for f in ("model.safetensors", "ranks.npz"):
        (run / f).unlink(missing_ok=True)
    assert (run / "resume").is_dir()
    proc = _suite(out, results)
    assert "resuming synthetic-ce-prism-s1" in proc.stderr
    assert "resuming synthetic-ce-sasrec-s1" not in proc.stderr  # finished runs are not touched
    again = json.loads((run / "summary.json").read_text())
    assert again["epochs_run"] == first["epochs_run"] and again["best_epoch"] == first["best_epoch"]
    assert again["test"] == first["test"]  # the resumed run ends where the uninterrupted one did


def test_suite_starts_over_a_run_without_resume_state(tmp_path):
    out, results = tmp_path / "runs", tmp_path / "results"
    _suite(out, results, only="sasrec-s1")
    run = out / "synthetic-ce-sasrec-s1"
    (run / "summary.json").unlink()
    shutil.rmtree(run / "resume")
    proc = _suite(out, results, only="sasrec-s1")
    assert "resuming" not in proc.stderr and (run / "summary.json").is_file()


def test_suite_aggregates_the_whole_plan_after_an_only_run(tmp_path):
    """--only picks the runs to start; the aggregate written after them covers every finished run of the
    plan, so a plan run one arm at a time does not leave a table of the last arm alone."""
    out, results = tmp_path / "runs", tmp_path / "results"
    _suite(out, results, only="sasrec-s1")
    first = json.loads((results / "smoke.json").read_text())
    assert [r["arm"] for r in first["table"].values()] == ["sasrec"] and not first["comparisons"]
    proc = _suite(out, results, only="prism-s1")
    assert "resuming" not in proc.stderr and "1 runs of the plan's 4" in proc.stderr
    agg = json.loads((results / "smoke.json").read_text())
    assert {r["arm"] for r in agg["table"].values()} == {"sasrec", "prism"}
    assert agg["table"]["synthetic/ce/sasrec"] == first["table"]["synthetic/ce/sasrec"]  # read, not retrained
    (cmp,) = agg["comparisons"]
    assert (cmp["arm"], cmp["vs"]) == ("prism", "sasrec")
    # a second seed of the baseline alone: the table averages both, the paired test stays on seed 1 vs seed 1
    _suite(out, results, only="sasrec-s2")
    agg = json.loads((results / "smoke.json").read_text())
    assert agg["table"]["synthetic/ce/sasrec"]["seeds"] == [1, 2]
    (again,) = agg["comparisons"]
    assert (again["seeds"], again["vs_seeds"]) == ([1], [1])
    assert again["t_pvalue"] == cmp["t_pvalue"] and again["mean_diff"] == cmp["mean_diff"]
    # an --out folder without those runs (a fresh machine) never erases their aggregate
    before = (results / "smoke.json").read_text()
    proc = _suite(tmp_path / "fresh", results, "aggregate-only-nothing-selected", "--aggregate-only")
    assert (results / "smoke.json").read_text() == before
    assert "holds finished runs this aggregate lacks (synthetic/ce/sasrec seed 1" in proc.stderr
    assert json.loads((results / "smoke.partial.json").read_text())["table"] == {}
    _suite(tmp_path / "fresh", results, "aggregate-only-nothing-selected", "--aggregate-only", "--replace-aggregate")
    assert json.loads((results / "smoke.json").read_text())["table"] == {}


def test_suite_continues_a_run_that_sigterm_interrupted(tmp_path):
    """A run stopped by SIGTERM / Ctrl-C writes a summary of its best epoch so far ("stop_reason":
    "interrupted"); the suite must continue it from its resume state, not take it as finished."""
    out, results = tmp_path / "runs", tmp_path / "results"
    _suite(out, results, only="prism-s1")
    run = out / "synthetic-ce-prism-s1"
    first = json.loads((run / "summary.json").read_text())
    # what an interrupt after epoch 1 of 2 leaves: the epoch-1 resume state and a summary saying so
    cut = tmp_path / "cut"
    subprocess.run([sys.executable, "-m", "prismrec", "train", "--quiet", "--output-dir", str(cut),
                    *sum((["--set", s] for s in ("data.synthetic.num_users=60", "data.synthetic.num_items=80",
                                                  "data.max_seq_len=10", "model.hidden_dim=16", "model.num_layers=1",
                                                  "train.epochs=1", "train.batch_size=32", "train.seed=1",
                                                  "model.prism.enabled=true")), [])],
                   check=True, capture_output=True, timeout=300)
    shutil.rmtree(run / "resume")
    shutil.copytree(cut / "resume", run / "resume")
    (run / "metrics.jsonl").write_text((cut / "metrics.jsonl").read_text())
    interrupted = dict(json.loads((cut / "summary.json").read_text()), stop_reason="interrupted", stopped_early=True)
    (run / "summary.json").write_text(json.dumps(interrupted))

    agg_only = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "suite.py"), "--plan",
                               str(ROOT / "benchmarks/plans/smoke.yaml"), "--out", str(out), "--results-dir",
                               str(results), "--only=prism-s1", "--aggregate-only"],
                              capture_output=True, text=True, timeout=300)
    assert agg_only.returncode == 0, agg_only.stderr[-3000:]
    assert "resuming" not in agg_only.stderr  # --aggregate-only starts nothing ...
    assert json.loads((run / "summary.json").read_text())["stop_reason"] == "interrupted"
    # ... nor counts the interrupted run (so the aggregate of its finished state is kept, this one set aside)
    assert not json.loads((results / "smoke.partial.json").read_text())["table"]
    assert json.loads((results / "smoke.json").read_text())["table"]["synthetic/ce/prism"]["seeds"] == [1]

    proc = _suite(out, results, only="prism-s1")
    assert "resuming synthetic-ce-prism-s1" in proc.stderr
    again = json.loads((run / "summary.json").read_text())
    assert again["stop_reason"] != "interrupted" and again["epochs_run"] == first["epochs_run"] == 2
    assert again["test"] == first["test"]  # continued from epoch 1, it ends where the uninterrupted run did


def test_progress_line_reads_the_best_epoch_so_far_and_skips_a_line_being_written(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from suite import progress_line

    job = {"id": "d-ce-a-s1", "dir": str(tmp_path), "sets": ["train.metric=HR@10"]}
    assert progress_line(job) == "d-ce-a-s1: no epoch finished yet"
    rows = [{"epoch": 1, "train_seconds": 10.4, "valid": {"HR@10": 0.2, "NDCG@10": 0.9}},
            {"epoch": 2, "train_seconds": 11.6, "valid": {"HR@10": 0.3, "NDCG@10": 0.1}},
            {"epoch": 3, "train_seconds": 9.0, "valid": {"HR@10": 0.25, "NDCG@10": 0.1}}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"epoch": 4, "tra')
    assert progress_line(job) == ("d-ce-a-s1: epoch 3 done in 9 s, best valid HR@10 0.3000 at epoch 2 "
                                  "(1 epoch(s) since)")


def _kill_processes_mentioning(text: str) -> None:
    """Test cleanup: SIGKILL every process whose command line contains ``text`` (Linux /proc)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            pass


@pytest.mark.skipif(not Path("/proc/self/cmdline").is_file(), reason="needs Linux /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_suite_stops_its_trainings_cleanly(tmp_path, sig):
    """SIGTERM or Ctrl-C to the suite alone: its running training saves an interrupted summary and its resume
    state (it is not left running unseen), no further run starts, the aggregate is written, and the suite
    exits with 128 + the signal's number."""
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: stoptest\ndatasets: {synthetic: null}\nlosses: [ce]\nseeds: [1, 2]\n"
                    "base: [data.synthetic.num_users=60, data.synthetic.num_items=80, data.max_seq_len=10, "
                    "model.hidden_dim=16, model.num_layers=1, train.epochs=100000, train.patience=100000, "
                    "train.batch_size=32]\narms: {sasrec: []}\n")
    out, results = tmp_path / "runs", tmp_path / "results"
    suite = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "suite.py"), "--plan", str(plan),
                              "--out", str(out), "--results-dir", str(results), "--progress-every", "0.2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    first, second = out / "synthetic-ce-sasrec-s1", out / "synthetic-ce-sasrec-s2"
    try:
        deadline = time.time() + 180
        while not ((first / "metrics.jsonl").is_file() and (first / "metrics.jsonl").read_text().count("\n") >= 2):
            assert time.time() < deadline and suite.poll() is None, "the first run never finished two epochs"
            time.sleep(0.5)
        suite.send_signal(sig)  # the suite only, as a job scheduler or a terminal's Ctrl-C now reach it
        _, stderr = suite.communicate(timeout=180)
    finally:
        if suite.poll() is None:
            suite.kill()
        _kill_processes_mentioning(str(tmp_path))  # a training left running would outlive the test
    assert suite.returncode == 128 + sig, stderr[-3000:]
    assert f"{sig.name}: stopping 1 running training(s)" in stderr
    assert re.search(r"\] synthetic-ce-sasrec-s1: epoch \d+ done in \d+ s, best valid NDCG@10 0\.\d{4} at "
                     r"epoch \d+ \(\d+ epoch\(s\) since\)", stderr)  # progress while it ran
    assert f"stopped by {sig.name}: 2 selected run(s) not finished" in stderr
    summary = json.loads((first / "summary.json").read_text())
    assert summary["stop_reason"] == "interrupted" and summary["epochs_run"] >= 2
    assert (first / "resume" / "state.json").is_file()  # the same command continues it
    assert not second.exists()  # nothing started after the signal
    assert json.loads((results / "stoptest.json").read_text())["table"] == {}  # written, counting no unfinished run


def test_planted_world_analysis_end_to_end(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "planted_world.py"), "--plan",
           str(ROOT / "benchmarks/plans/planted_tiny.yaml"), "--out", str(tmp_path / "runs"),
           "--results-dir", str(tmp_path / "results"), "--ceiling-epochs", "30"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "results" / "planted_world_planted_tiny.json").read_text())
    props = {"unique_image", "unique_text", "redundant", "synergy"}
    assert set(res["ndcg10_by_planted_type"]) == {"sasrec", "prism"}
    assert set(res["id_embedding_probes"]) == {"sasrec", "prism"}  # the ID table of every arm is probed
    assert set(res["id_embedding_probes"]["sasrec"]) == props
    layer = res["fusion_weights"]["prism"][0]["fusion_layer"]  # the fusion MLP's state is recorded per run
    assert layer["hidden_units"] == 32 and 0 <= layer["live_units"] <= 32
    agreement = res["expert_probes"]["prism"][0]["expert_agreement"]
    assert set(agreement) == {"unique_image", "unique_text", "synergy", "redundancy"}
    assert all(-1 <= v <= 1 for a in agreement.values() for v in a.values())
    assert 0 < res["expert_probes"]["prism"][0]["content_variation"]["varying_share"] <= 1
    (row,) = res["per_type_comparisons"]  # the plan's one comparison, tested inside each planted type
    assert (row["arm"], row["vs"]) == ("prism", "sasrec") and set(row["by_type"]) == props
    assert sum(t["users"] for t in row["by_type"].values()) == 60
    for kind, t in row["by_type"].items():  # one seed: each side's mean is that arm's NDCG@10 on the type
        assert t["mean_a"] == pytest.approx(res["ndcg10_by_planted_type"]["prism"][kind]["mean"])
        assert t["mean_b"] == pytest.approx(res["ndcg10_by_planted_type"]["sasrec"][kind]["mean"])
    ceiling = res["supervised_ceiling"]
    assert set(ceiling["accuracy"]) == props and all(0.0 <= v <= 1.0 for v in ceiling["accuracy"].values())


def test_supervised_ceiling_reads_what_the_features_carry():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import numpy as np
    from planted_world import supervised_ceiling

    rng = np.random.default_rng(0)
    n = 240
    a, b = rng.integers(0, 4, n), rng.integers(0, 4, n)
    feats = [np.eye(4)[a] + 0.1 * rng.normal(size=(n, 4)), np.eye(4)[b] + 0.1 * rng.normal(size=(n, 4))]
    acc = supervised_ceiling(feats, {"a": a, "xor": (a + b) % 4, "noise": rng.integers(0, 4, n)},
                             hidden=32, layers=2, epochs=200)
    assert acc["a"] > 0.95  # visible in one feature block
    assert acc["xor"] > 0.8  # needs both blocks together: an MLP reads it, a linear probe could not
    assert acc["noise"] < 0.4  # unrelated labels stay near chance (0.25)


def test_cold_target_outrankers_on_a_known_score_table():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch
    from cold_targets import outrankers

    n_items = 12  # ids 1..12, score = id (item 12 highest); item popularity = id as well
    counts = torch.arange(n_items + 1)
    scores = lambda seq: torch.arange(n_items + 1, dtype=torch.float).expand(len(seq), -1).clone()  # noqa: E731
    inputs = torch.zeros(2, 3, dtype=torch.long)
    targets = torch.tensor([3, 10])
    history = torch.tensor([[12, 0], [11, 12]])  # excluded from ranking (0 = padding)
    r = outrankers(scores, inputs, targets, history, counts, cold_max=4)
    # user 0: above item 3 are 4..11 (12 excluded) -> rank 9, outrankers' median count 7 (lower median of 4..11)
    # user 1: nothing above item 10 (11, 12 excluded) -> rank 1, no outrankers (skipped in the median)
    assert r["median_rank"] == 1.0 and r["users"] == 2  # ranks 9 and 1; torch.median takes the lower middle
    assert r["outrankers_median_train_count"] == 7.0
    # top 10 of user 0: items 11..2 -> 3 of them (2, 3, 4) have count <= 4; user 1: 10..1 -> 4 cold
    assert abs(r["top10_cold_share"] - (3 / 10 + 4 / 10) / 2) < 1e-6
    assert abs(r["top10_mean_train_count"] - (sum(range(2, 12)) / 10 + sum(range(1, 11)) / 10) / 2) < 1e-6


def test_every_committed_plan_builds_a_valid_config_for_every_run():
    """A plan names the exact settings of a documented result: each of its runs must still be a valid
    configuration (keys renamed or removed since would make the documented command fail)."""
    import pytest

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from suite import load_plan, plan_jobs

    from prismrec.config import build_config

    plans = sorted((ROOT / "benchmarks" / "plans").glob("*.yaml"))
    assert len(plans) > 10
    for path in plans:
        plan = load_plan(str(path))
        arms = set(plan["arms"])
        for arm, versus in (plan.get("compare") or {}).items():
            assert {arm, *versus} <= arms, f"{path.name}: compare names an arm the plan lacks"
        if plan.get("baseline") is not None:
            assert plan["baseline"] in arms, f"{path.name}: baseline {plan['baseline']!r} is not an arm"
        jobs = plan_jobs(plan, "runs")
        assert jobs, f"{path.name}: no runs"
        for job in jobs:  # exactly the --set lists suite.py passes to `prismrec train`
            try:
                build_config(overrides=job["sets"])
            except Exception as e:  # noqa: BLE001 - report which plan and run
                pytest.fail(f"{path.name}: {job['id']}: {e}")


def test_breakdown_rebuilds_the_runs_dataset_from_their_config(tmp_path):
    """Without --data the runs' own data settings are used (the synthetic world here); a --data whose
    item map differs from the runs' is refused with a message naming the run."""
    run = tmp_path / "run"
    train = [sys.executable, "-m", "prismrec", "train", "--quiet", "--output-dir", str(run),
             "--set", "data.synthetic.num_users=60", "--set", "data.synthetic.num_items=64",
             "--set", "train.epochs=1", "--set", "model.hidden_dim=16"]
    assert subprocess.run(train, capture_output=True, text=True, timeout=600).returncode == 0
    cmd = [sys.executable, str(ROOT / "benchmarks" / "breakdown.py"), "--arm", f"a={run}", "--arm", f"b={run}",
           "--baseline", "a", "--name", str(tmp_path / "bd")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "bd.json").read_text())
    assert sum(g["users"] for g in report["groups"]["history_length"]) == 60

    other = tmp_path / "other.txt"  # another dataset: 60 users over different items
    other.write_text("".join(f"{u + 1} " + " ".join(str((u + k) % 7 + 1) for k in range(4)) + "\n" for u in range(60)))
    proc = subprocess.run(cmd + ["--data", str(other)], capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "trained on another dataset" in proc.stderr


def test_ensemble_of_two_runs_reproduces_each_member_and_picks_the_weight_on_validation(tmp_path):
    from prismrec.api import train
    from prismrec.config import build_config

    from conftest import TINY

    train(build_config(overrides=TINY), tmp_path / "a", progress=False)
    train(build_config(overrides=TINY + ["model.prism.enabled=true"]), tmp_path / "b", progress=False)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "ensemble.py"), "--member", f"ids={tmp_path / 'a'}",
           "--member", f"content={tmp_path / 'b'}", "--grid", "0.25,0.5,0.75", "--name", "ens",
           "--results-dir", str(tmp_path / "res"), "--out", str(tmp_path / "ab")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "res" / "ens.json").read_text())
    assert res["grid"] == [0.0, 0.25, 0.5, 0.75, 1.0]  # the members alone are always tried
    for name, w in (("a", 1.0), ("b", 0.0)):  # w = 1: the first member alone, w = 0: the second
        saved = json.loads((tmp_path / name / "summary.json").read_text())["test"]
        assert res["test"][res["grid"].index(w)]["NDCG@10"] == pytest.approx(saved["NDCG@10"], abs=1e-9)
    best = max(row["NDCG@10"] for row in res["valid"])
    assert res["chosen_valid"]["NDCG@10"] == best and res["chosen_w"] in res["grid"]
    ranks = np.load(tmp_path / "ab" / "ranks.npz")["test"]
    hits = ranks <= 10
    assert np.where(hits, 1 / np.log2(ranks + 1.0), 0).mean() == pytest.approx(res["chosen_test"]["NDCG@10"])
    assert set(res["paired_test_ndcg10"]) == {"ids", "content"}

    again = cmd + ["--compare", f"earlier={tmp_path / 'ab'}", "--name", "ens2"]
    proc = subprocess.run(again, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    same = json.loads((tmp_path / "res" / "ens2.json").read_text())["paired_test_ndcg10"]["earlier"]
    assert same["mean_a"] == same["mean_b"] and same["t_pvalue"] == 1.0  # the same ensemble again

    train(build_config(overrides=TINY + ["data.max_seq_len=8"]), tmp_path / "c", progress=False)
    cmd[cmd.index("--member") + 1] = f"ids={tmp_path / 'c'}"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "data.max_seq_len" in proc.stderr and "Traceback" not in proc.stderr


def test_list_popularity_describes_each_runs_lists(tmp_path):
    from prismrec.api import train
    from prismrec.config import build_config

    from conftest import TINY

    train(build_config(overrides=TINY), tmp_path / "a", progress=False)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "list_popularity.py"), "--run", f"ids={tmp_path / 'a'}",
           "--run", f"again={tmp_path / 'a'}", "--k", "5", "--name", str(tmp_path / "lp")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "lp.json").read_text())
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert [r["name"] for r in res["runs"]] == ["ids", "again"] and res["k"] == 5
    assert res["runs"][0]["NDCG@10"] == summary["test"]["NDCG@10"]  # the reloaded model reproduces the run
    assert res["runs"][0]["lists"] == res["runs"][1]["lists"]
    assert "| ids |" in res["markdown"] and res["runs"][0]["lists"]["users"] == 80


def test_every_benchmark_script_is_listed_in_the_benchmarks_doc():
    """docs/benchmarks.md's table of scripts names every script in benchmarks/ (each answers one question)."""
    doc = (ROOT / "docs" / "benchmarks.md").read_text()
    scripts = [p for p in sorted((ROOT / "benchmarks").glob("*.py")) if p.name != "common.py"]
    assert len(scripts) > 10
    missing = [p.name for p in scripts if f"| `benchmarks/{p.name}` |" not in doc]
    assert not missing, f"not in docs/benchmarks.md's table of scripts: {missing}"


def test_the_paper_experiments_page_names_only_plans_scripts_and_options_that_exist():
    """docs/paper_experiments.md maps the paper's experiments to plans, scripts and config keys: each one it
    names must exist, so the page cannot drift from the repository unnoticed."""
    from prismrec.config import to_dict
    from prismrec.prism.config import PRISMConfig

    doc = (ROOT / "docs" / "paper_experiments.md").read_text()
    plans = set(re.findall(r"`(?:benchmarks/plans/)?([\w.]+\.yaml)`", doc))
    scripts = set(re.findall(r"benchmarks/(\w+\.py)", doc))
    keys = set(re.findall(r"model\.prism\.(\w+)", doc)) | set(re.findall(r"`(lambda_\w+|loss_\w+|fusion_\w+)[`=]", doc))
    assert len(plans) >= 10 and len(scripts) >= 4 and len(keys) >= 8
    assert not [p for p in plans if not (ROOT / "benchmarks" / "plans" / p).is_file()]
    assert not [p for p in scripts if not (ROOT / "benchmarks" / p).is_file()]
    assert not sorted(keys - set(to_dict(PRISMConfig())))


def test_inspect_epoch_reads_the_latest_epochs_weights(tmp_path):
    """benchmarks/inspect_epoch.py looks at a run through resume/model.safetensors, the weights of its last
    finished epoch, and refuses a folder without them."""
    from prismrec.cli import main
    from conftest import TINY, sets
    run = tmp_path / "run"
    assert main(["train", "--quiet", "--output-dir", str(run), *sets(TINY + ["model.prism.enabled=true"])]) == 0
    cmd = [sys.executable, str(ROOT / "benchmarks" / "inspect_epoch.py"), "--run", str(run), "--name", "e",
           "--results-dir", str(tmp_path / "res")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "res" / "e.json").read_text())
    assert res["epoch"] == 2 and res["fusion_layer"]["hidden_units"] == 32
    assert set(res["expert_agreement"]) == {"unique_image", "unique_text", "synergy", "redundancy"}
    assert 0 < res["content_variation"]["varying_share"] <= 1
    bad = subprocess.run(cmd[:3] + [str(tmp_path)] + cmd[4:], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "resume/model.safetensors" in bad.stderr


def test_headline_table_reads_every_row_from_its_committed_aggregate(tmp_path):
    """benchmarks/headline.yaml names sources, arms and comparisons that exist in benchmarks/results, and
    the table repeats their numbers; a spec with an unknown key or an arm without a run is refused."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from headline import RESULTS, build_rows, load_spec, markdown

    rows = build_rows(load_spec(ROOT / "benchmarks" / "headline.yaml"), RESULTS)
    for r in rows:
        agg = json.loads((RESULTS / r["source"]).read_text())
        entry = agg["table"][f"{r['dataset']}/{r['loss']}/{r['arm']}"]
        assert r["NDCG@10"] == entry["NDCG@10"] and r["seeds"] == entry["seeds"]
        for key, vs in (("vs_vanilla", r["vanilla"]), ("vs_naive", r["naive"])):
            if r[key] is not None:
                (c,) = [c for c in agg["comparisons"]
                        if (c["dataset"], c["loss"], c["arm"], c["vs"]) == (r["dataset"], r["loss"], r["arm"], vs)]
                assert (r[key]["relative_ndcg10"], r[key]["t_pvalue"]) == (c["relative_ndcg10"], c["t_pvalue"])
    assert any(r["vs_vanilla"] is not None for r in rows)
    assert markdown(rows).count("\n") == len(rows) + 1
    # the cell says which seeds a test ran on when they are not the rows' own
    from headline import _cell

    base = {"relative_ndcg10": 0.01, "t_pvalue": 0.5}
    assert _cell({**base, "seeds": [1, 2], "vs_seeds": [1, 2]}) == "+1.0% (p = 0.5)"
    assert _cell({**base, "seeds": [1], "vs_seeds": [1, 2, 3]}) == "+1.0% (p = 0.5; seed 1 vs the mean of seeds 1,2,3)"
    assert _cell({**base, "seeds": [1], "vs_seeds": [1], "cut_to_shared_seeds": True}) == "+1.0% (p = 0.5; seed 1 of both)"

    bad = tmp_path / "bad.yaml"
    bad.write_text("rows:\n  - {source: beauty_ce_table.json, dataset: amazon_beauty, loss: ce, backbone: SASRec,"
                   " vanilla: sasrec, arms: {PRISM: prism}, seed: 1}\n")
    with pytest.raises(SystemExit, match="row 1: unknown keys \\['seed'\\]"):
        load_spec(bad)
    bad.write_text("rows:\n  - {source: beauty_ce_table.json, dataset: amazon_beauty, loss: ce, backbone: SASRec,"
                   " vanilla: sasrec, arms: {PRISM: noSuchArm}}\n")
    with pytest.raises(SystemExit, match="no finished run of amazon_beauty/ce/noSuchArm"):
        build_rows(load_spec(bad), RESULTS)
