"""Paired comparison of runs from their saved ranks (prismrec.evaluation.compare, `prismrec compare`)."""
import json

import numpy as np
import pytest
import torch
from scipy import stats

from prismrec.cli import main
from prismrec.data.sequences import DataError
from prismrec.evaluation import metrics_from_ranks
from prismrec.evaluation.compare import compare_runs, paired_test, parse_metric, per_user_metric


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
