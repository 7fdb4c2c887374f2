"""Paired comparison of runs from their saved ranks (prismrec.evaluation.compare, `prismrec compare`)."""
import json
import re

import numpy as np
import pytest
import torch
from scipy import stats

from prismrec.cli import main
from prismrec.data.sequences import DataError
from prismrec.evaluation import metrics_from_ranks
from prismrec.evaluation.compare import (compare_by_group, compare_in_groups, compare_runs, group_masks, paired_test,
                                         parse_metric, per_user_metric, user_groups)


def write_run(path, test, valid=None, user_ids=None, fingerprint=None):
    path.mkdir(parents=True)
    test = np.asarray(test, dtype=np.int64)
    valid = test if valid is None else np.asarray(valid, dtype=np.int64)
    ids = np.arange(1, len(test) + 1) if user_ids is None else np.asarray(user_ids)
    np.savez_compressed(path / "ranks.npz", test=test, valid=valid, user_ids=ids)
    if fingerprint:
        (path / "summary.json").write_text(json.dumps({"item_map_fingerprint": fingerprint}))
    return path


def test_per_user_metric_means_are_the_reported_metrics():
    ranks = np.random.default_rng(0).integers(1, 60, size=500)
    reported = metrics_from_ranks(torch.from_numpy(ranks), (1, 5, 10, 20))
    for name, value in reported.items():
        assert per_user_metric(ranks, name).mean() == pytest.approx(value, abs=1e-12)
    assert per_user_metric(np.array([1, 3, 11]), "Recall@10").tolist() == [1.0, 1.0, 0.0]
    assert per_user_metric(np.array([1, 3, 11]), "ndcg@10")[1] == pytest.approx(0.5)  # 1 / log2(4)


@pytest.mark.parametrize("bad", ["AUC", "NDCG@0", "NDCG10", "HR@-1", "MRR@k"])
def test_unknown_metrics_are_refused(bad):
    with pytest.raises(ValueError, match="expected HR@K"):
        parse_metric(bad)


def test_paired_test_matches_scipy_and_handles_identical_values():
    rng = np.random.default_rng(1)
    b = rng.random(300)
    a = b + rng.normal(0.05, 0.2, size=300)
    t = paired_test(a, b)
    assert t.t_pvalue == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert t.wilcoxon_pvalue == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert t.relative == pytest.approx((a.mean() - b.mean()) / b.mean())
    same = paired_test(b, b.copy())
    assert (same.t_pvalue, same.wilcoxon_pvalue, same.relative, same.t_stat) == (1.0, 1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="one length"):
        paired_test(a, b[:10])


def test_seeds_are_averaged_per_user_before_the_test(tmp_path):
    rng = np.random.default_rng(2)
    a1, a2, b1 = (rng.integers(1, 30, size=200) for _ in range(3))
    runs_a = [write_run(tmp_path / "a1", a1), write_run(tmp_path / "a2", a2)]
    (res,) = compare_runs(runs_a, [write_run(tmp_path / "b1", b1)], metrics=["NDCG@10"])
    va = (per_user_metric(a1, "NDCG@10") + per_user_metric(a2, "NDCG@10")) / 2
    expected = paired_test(va, per_user_metric(b1, "NDCG@10"))
    assert res == expected and res.users == 200  # seeds reduce noise, they are not extra users
    # the valid split is read when asked for
    write_run(tmp_path / "v", a1, valid=np.ones(200))
    (v,) = compare_runs([tmp_path / "v"], [tmp_path / "b1"], split="valid", metrics=["HR@1"])
    assert v.mean_a == 1.0


def test_runs_of_different_datasets_are_refused(tmp_path):
    base = write_run(tmp_path / "base", [1, 2, 3, 4], fingerprint="aaaa")
    with pytest.raises(DataError, match=r"base/ranks.npz holds 4 users but .*short/ranks.npz 3: were the runs trained on one"):
        compare_runs([write_run(tmp_path / "short", [1, 2, 3])], [base])
    with pytest.raises(DataError, match="different item maps"):
        compare_runs([write_run(tmp_path / "other", [1, 2, 3, 4], fingerprint="bbbb")], [base])
    with pytest.raises(DataError, match=r"different orders \(row 1: user 2 vs 3\)"):
        compare_runs([write_run(tmp_path / "order", [1, 2, 3, 4], user_ids=[1, 3, 2, 4])], [base])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty/ranks.npz: not found; expected a finished run directory"):
        compare_runs([tmp_path / "empty"], [base])
    bad = tmp_path / "bad"
    bad.mkdir()
    np.savez(bad / "ranks.npz", test=np.array([0.5, 2.0]))
    with pytest.raises(DataError, match="integer ranks >= 1"):
        compare_runs([bad], [base])


def test_compare_cli_prints_the_table(tmp_path, capsys):
    better = write_run(tmp_path / "better", [1] * 50 + [5] * 50)
    worse = write_run(tmp_path / "worse", [3] * 50 + [50] * 50)
    assert main(["compare", "--run", str(better), "--against", str(worse)]) == 0
    out = capsys.readouterr().out
    assert "100 users" in out
    ndcg = next(l for l in out.splitlines() if l.startswith("NDCG@10")).split()
    assert float(ndcg[1]) > float(ndcg[2]) and ndcg[3].startswith("+") and float(ndcg[4]) < 1e-6
    assert any(l.startswith("HR@10") for l in out.splitlines())


# ---------------------------------------------------------------------------- by groups of users
SEQS = [[1, 2, 3, 4, 5], [2, 2, 6, 1, 3, 7], [6, 1, 1, 3, 2], [5, 4, 3, 2, 1, 6, 7, 2]]


def sequences():
    from prismrec.data.sequences import Sequences
    return Sequences.from_lists([np.array(s) for s in SEQS], user_ids=[11, 12, 13, 14], num_items=7)


def test_user_groups_are_the_targets_training_counts_and_the_history_lengths():
    counts = np.zeros(8, dtype=int)
    for s in SEQS:
        for item in s[:-2]:  # what the model trained on
            counts[item] += 1
    test, valid = user_groups(sequences(), "test"), user_groups(sequences(), "valid")
    assert test["target-count"].tolist() == [counts[s[-1]] for s in SEQS] == [1, 0, 4, 4]
    assert valid["target-count"].tolist() == [counts[s[-2]] for s in SEQS] == [1, 2, 2, 0]
    assert test["history-length"].tolist() == [len(s) - 1 for s in SEQS] == [4, 5, 4, 7]
    assert valid["history-length"].tolist() == [len(s) - 2 for s in SEQS] == [3, 4, 3, 6]
    with pytest.raises(ValueError, match="split"):
        user_groups(sequences(), "train")


def test_group_masks_label_half_open_groups_and_skip_empty_ones():
    values = np.array([0, 4, 5, 9, 10, 19, 250, 3])
    groups = group_masks(values, (0, 5, 10, 20, 50, 100))
    assert [g for g, _ in groups] == ["0-4", "5-9", "10-19", "100+"]  # 20-49 and 50-99 are empty
    assert [np.flatnonzero(m).tolist() for _, m in groups] == [[0, 1, 7], [2, 3], [4, 5], [6]]
    assert [g for g, _ in group_masks(np.array([1, 2]), (0, 1, 2))] == ["1", "2+"]


@pytest.mark.filterwarnings("ignore:Precision loss")  # groups of two users
def test_compare_by_group_is_compare_runs_on_each_groups_users(tmp_path):
    rng = np.random.default_rng(3)
    a1, a2, b = (rng.integers(1, 15, size=4) for _ in range(3))
    ids = [11, 12, 13, 14]
    runs_a = [write_run(tmp_path / "a1", a1, user_ids=ids), write_run(tmp_path / "a2", a2, user_ids=ids)]
    run_b = write_run(tmp_path / "b", b, user_ids=ids)
    groups = compare_by_group(runs_a, [run_b], sequences(), "target-count", metrics=["NDCG@10", "HR@5"])
    assert [(g.group, g.users) for g in groups] == [("0-4", 4)]  # training counts 1, 0, 4, 4
    by_length = compare_by_group(runs_a, [run_b], sequences(), "history-length", metrics=["NDCG@10", "HR@5"])
    assert [(g.group, g.users) for g in by_length] == [("0-4", 2), ("5-7", 2)]  # lengths 4, 5, 4, 7
    sel = np.array([True, False, True, False])
    for g, mask in ((groups[0], np.ones(4, bool)), (by_length[0], sel), (by_length[1], ~sel)):
        for t, m in zip(g.tests, ["NDCG@10", "HR@5"]):
            va = (per_user_metric(a1, m) + per_user_metric(a2, m)) / 2
            assert t == paired_test(va[mask], per_user_metric(b, m)[mask], m)
    with pytest.raises(ValueError, match="unknown grouping"):
        compare_by_group(runs_a, [run_b], sequences(), "item-price")


def test_compare_in_groups_tests_each_callers_group_on_its_own_users(tmp_path):
    rng = np.random.default_rng(4)
    a1, a2, b = (rng.integers(1, 15, size=40) for _ in range(3))
    runs_a = [write_run(tmp_path / "a1", a1), write_run(tmp_path / "a2", a2)]
    run_b = write_run(tmp_path / "b", b)
    kind = np.arange(40) % 3  # e.g. planted user types
    groups = [(name, kind == k) for k, name in enumerate(["x", "y", "z"])]
    out = compare_in_groups(runs_a, [run_b], groups, metrics=["NDCG@10", "HR@5"])
    assert [(g.group, g.users) for g in out] == [("x", 14), ("y", 13), ("z", 13)]
    for g, (_, mask) in zip(out, groups):
        for t, m in zip(g.tests, ["NDCG@10", "HR@5"]):
            va = (per_user_metric(a1, m) + per_user_metric(a2, m)) / 2
            assert t == paired_test(va[mask], per_user_metric(b, m)[mask], m)
    as_lists = compare_in_groups(runs_a, [run_b], [(n, m.tolist()) for n, m in groups], metrics=["NDCG@10", "HR@5"])
    assert as_lists == out  # masks given as lists of bools are read the same way
    with pytest.raises(ValueError, match="group 'x': expected a boolean mask of 40 users"):
        compare_in_groups(runs_a, [run_b], [("x", np.ones(39, bool))])
    with pytest.raises(ValueError, match="got dtype int64"):
        compare_in_groups(runs_a, [run_b], [("x", kind)])


def test_compare_by_group_refuses_ranks_of_other_users(tmp_path):
    base = write_run(tmp_path / "base", [1, 2, 3, 4], user_ids=[11, 12, 13, 14])
    with pytest.raises(DataError, match="holds 3 users but the dataset 4"):
        compare_by_group([write_run(tmp_path / "a", [1, 2, 3], user_ids=[11, 12, 13])],
                         [write_run(tmp_path / "b", [1, 2, 3], user_ids=[11, 12, 13])], sequences(), "target-count")
    with pytest.raises(DataError, match=r"another order than the dataset \(row 0: user 1 vs 11\)"):
        compare_by_group([write_run(tmp_path / "c", [1, 2, 3, 4])], [write_run(tmp_path / "d", [1, 2, 3, 4])],
                         sequences(), "target-count")
    same = write_run(tmp_path / "same", [1, 2, 3, 4], user_ids=[11, 12, 13, 14])
    assert compare_by_group([base], [same], sequences(), "target-count")[0].tests[0].t_pvalue == 1.0


def test_a_run_given_twice_is_refused(tmp_path):
    """A run against itself says nothing (p = 1), and a run twice on one side would count double in the
    side's average over seeds: both are errors that name the run, whichever way its path is spelt."""
    a, b = write_run(tmp_path / "a", [1, 2, 3, 4]), write_run(tmp_path / "b", [2, 2, 3, 4])
    with pytest.raises(DataError, match=r"/a: the same run is given on both sides"):
        compare_runs([a], [tmp_path / "." / "a"])
    with pytest.raises(DataError, match=r"/a: the same run is given twice on side A"):
        compare_runs([a, f"{a}/"], [b])
    with pytest.raises(DataError, match=r"/b: the same run is given twice on side B"):
        compare_by_group([a], [b, b], sequences(), "target-count")


@pytest.mark.filterwarnings("ignore:Precision loss")  # groups of two users
def test_compare_cli_by_group_reads_the_runs_dataset(tmp_path, capsys):
    data = tmp_path / "seqs.txt"
    data.write_text("".join(f"{u} {' '.join(map(str, s))}\n" for u, s in zip([11, 12, 13, 14], SEQS)))
    runs = []
    for name, ranks in (("a", [1, 2, 30, 1]), ("b", [3, 9, 1, 20])):
        run = write_run(tmp_path / name, ranks, user_ids=[11, 12, 13, 14])
        (run / "config.yaml").write_text(f"data:\n  path: {data}\n  min_seq_len: 3\n")
        runs.append(run)
    assert main(["compare", "--run", str(runs[0]), "--against", str(runs[1]), "--by", "history-length",
                 "--json", "--metric", "HR@5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["by"] == "history-length"
    assert [(g["group"], g["users"]) for g in out["groups"]] == [("0-4", 2), ("5-7", 2)]
    assert [g["tests"][0]["mean_a"] for g in out["groups"]] == [0.5, 1.0]  # ranks 1, 30 | 2, 1
    assert [g["tests"][0]["mean_b"] for g in out["groups"]] == [1.0, 0.0]  # ranks 3, 1 | 9, 20
    # --data replaces the run's data path; the table names the grouping
    (runs[0] / "config.yaml").write_text("data:\n  path: /nonexistent/seqs.txt\n  min_seq_len: 3\n")
    assert main(["compare", "--run", str(runs[0]), "--against", str(runs[1]), "--by", "target-count",
                 "--data", str(data)]) == 0
    table = capsys.readouterr().out
    assert "by target-count (training occurrences of the target item)" in table
    assert re.search(r"^0-4\s+4\s+NDCG@10", table, re.M)
    # without --data the missing path is one clear error
    assert main(["compare", "--run", str(runs[0]), "--against", str(runs[1]), "--by", "target-count"]) == 2
    assert "data path /nonexistent/seqs.txt does not exist" in capsys.readouterr().err


def test_compare_cli_by_group_reads_the_dataset_of_a_save_ranks_folders_run(tmp_path, capsys):
    data = tmp_path / "seqs.txt"
    data.write_text("".join(f"{u} {' '.join(map(str, s))}\n" for u, s in zip([11, 12, 13, 14], SEQS)))
    run = write_run(tmp_path / "run", [3, 9, 1, 20], user_ids=[11, 12, 13, 14])
    (run / "config.yaml").write_text(f"data:\n  path: {data}\n  min_seq_len: 3\n")
    # as `evaluate --run RUN --popularity-prior auto --save-ranks DIR` writes it: ranks and a summary, no config
    saved = write_run(tmp_path / "saved", [1, 2, 30, 1], user_ids=[11, 12, 13, 14])
    (saved / "summary.json").write_text(json.dumps({"derived_from": str(run), "popularity_beta": 0.5}))
    expected = [("0-4", 2), ("5-7", 2)]
    for extra in ([], ["--data", str(data)]):
        assert main(["compare", "--run", str(saved), "--against", str(run), "--by", "history-length", "--json",
                     *extra]) == 0
        assert [(g["group"], g["users"]) for g in json.loads(capsys.readouterr().out)["groups"]] == expected
    # neither side a run: one error that says what --by needs
    other = write_run(tmp_path / "other", [1, 1, 1, 1], user_ids=[11, 12, 13, 14])
    other2 = write_run(tmp_path / "other2", [2, 1, 1, 1], user_ids=[11, 12, 13, 14])
    assert main(["compare", "--run", str(other), "--against", str(other2), "--by", "target-count"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --by needs the dataset") and "put a trained run on one side" in err


def test_cli_groupings_are_the_librarys():
    from prismrec.cli.run import COMPARE_GROUPINGS
    from prismrec.evaluation.compare import GROUPINGS
    assert set(COMPARE_GROUPINGS) == set(GROUPINGS)
