"""The popularity prior at ranking time (evaluation.popularity, Run.choose_popularity_beta, evaluate CLI)."""
import json
import math

import numpy as np
import pytest
import torch

from prismrec.cli import main
from prismrec.data.split import SplitTensors, observed_item_counts, train_item_counts
from prismrec.evaluation import evaluate
from prismrec.evaluation.compare import load_ranks, per_user_metric
from prismrec.evaluation.popularity import (DEFAULT_BETAS, check_betas, choose_beta, popularity_prior,
                                            ranks_for_betas, with_prior)

from conftest import TINY, sets


def random_split(seed=0, n_users=37, n_items=25, L=5):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randint(1, n_items + 1, (n_users, L), generator=g)
    inputs[:9, :2] = 0  # some short histories
    history = torch.stack([torch.cat([r[r != 0], r[r == 0]]) for r in inputs])
    targets = torch.randint(1, n_items + 1, (n_users,), generator=g)
    table = torch.randn(n_items + 1, 4, generator=g)
    counts = torch.randint(0, 50, (n_items + 1,), generator=g)
    counts[0] = 0
    split = SplitTensors(inputs=inputs, targets=targets, history=history)
    return split, (lambda seq: table[seq[:, -1]] @ table.T), counts


def test_observed_counts_stop_before_each_splits_targets():
    from prismrec.data.sequences import Sequences

    # user 0: 1 2 3 4 (valid 3, test 4); user 1: 2 5 2 (valid 5, test 2)
    seqs = Sequences(items=np.array([1, 2, 3, 4, 2, 5, 2]), offsets=np.array([0, 4, 7]), num_items=5,
                     user_ids=np.array([0, 1]))
    assert observed_item_counts(seqs, "valid").tolist() == [0, 1, 2, 0, 0, 0]  # 1 2 | 2
    assert observed_item_counts(seqs, "test").tolist() == [0, 1, 2, 1, 0, 1]  # 1 2 3 | 2 5
    assert np.array_equal(train_item_counts(seqs), observed_item_counts(seqs, "valid"))
    assert observed_item_counts(seqs, "all").tolist() == [0, 1, 3, 1, 1, 1]  # every interaction (serving)
    with pytest.raises(ValueError, match="'valid', 'test' or 'all'"):
        observed_item_counts(seqs, "train")


def test_prior_is_log1p_of_the_counts():
    prior = popularity_prior(np.array([0, 0, 1, 9]))
    assert prior.dtype == torch.float32
    assert torch.allclose(prior, torch.tensor([0.0, 0.0, math.log(2), math.log(10)]))
    with pytest.raises(ValueError, match="counts >= 0"):
        popularity_prior(np.array([0, -1]))
    with pytest.raises(ValueError, match="finite number >= 0"):
        check_betas([0.5, -1])
    with pytest.raises(ValueError, match="empty"):
        check_betas([])
    assert check_betas(["0", "1.5"]) == (0.0, 1.5)


def test_one_pass_over_the_grid_gives_the_ranks_of_each_beta_evaluated_alone():
    split, score_fn, counts = random_split()
    prior = popularity_prior(counts)
    calls = []

    def counted(seq):
        calls.append(len(seq))
        return score_fn(seq)

    grid = (0.0, 0.3, 2.0)
    ranks = ranks_for_betas(counted, split, prior, grid, batch_size=8)
    assert sum(calls) == len(split.targets)  # the model scored every user once for the whole grid
    for b in grid:
        alone = evaluate(with_prior(score_fn, prior, b), split, (10,), batch_size=5).ranks
        assert torch.equal(ranks[b], alone)
    assert torch.equal(ranks[0.0], evaluate(score_fn, split, (10,)).ranks)  # beta 0: the model as it is
    assert not torch.equal(ranks[0.0], ranks[2.0])  # the prior does move targets


def test_a_large_beta_ranks_by_popularity():
    # constant scores: the prior alone orders the items, the most frequent first
    counts = torch.tensor([0, 5, 50, 1, 20])
    split = SplitTensors(inputs=torch.tensor([[3], [3]]), targets=torch.tensor([2, 4]),
                         history=torch.tensor([[3], [3]]))
    ranks = ranks_for_betas(lambda seq: torch.zeros(len(seq), 5), split, popularity_prior(counts), (0.0, 1.0))
    assert ranks[1.0].tolist() == [1, 2]  # item 2 (50) first, item 4 (20) second; item 3 is in the history
    assert ranks[0.0].tolist() == [3, 3]  # ties count against the target: last of the 3 rankable items


def test_choose_beta_takes_the_best_validation_metric_and_the_smallest_on_ties():
    r = {0.0: np.array([3, 20]), 0.5: np.array([1, 20]), 1.0: np.array([1, 20]), 2.0: np.array([20, 20])}
    c = choose_beta(r, "NDCG@10")
    assert c.beta == 0.5 and c.metric == "NDCG@10"
    assert c.valid[0.0] == pytest.approx(per_user_metric(r[0.0], "NDCG@10").mean())
    assert choose_beta({0.0: np.array([1]), 1.0: np.array([1])}).beta == 0.0  # no gain: keep the model as it is
    assert choose_beta(r, "HR@2").beta == 0.5
    with pytest.raises(ValueError, match="unknown metric"):
        choose_beta(r, "AUC")
    assert json.loads(json.dumps(c.to_dict()))["valid"]["0.5"] == c.valid[0.5]


def test_choosing_beta_reads_only_the_validation_split(tmp_path):
    from prismrec.api import train

    from prismrec.config import build_config

    run = train(build_config(overrides=TINY), tmp_path / "run", progress=False)
    asked = []
    split = run.data.split
    run.data.split = lambda name: asked.append(name) or split(name)
    choice = run.choose_popularity_beta((0.0, 1.0))
    assert asked == ["valid"] and set(choice.valid) == {0.0, 1.0}
    # the saved beta reproduces the metrics the grid reported for it
    prior_valid = run.evaluate("valid", popularity_beta=choice.beta).metrics["NDCG@10"]
    assert prior_valid == pytest.approx(choice.valid[choice.beta])
    # the prior counts what was observed before each split's targets: the training sequences for valid,
    # and also every user's validation item for test
    seqs = run.dataset.sequences
    assert torch.allclose(run.popularity_prior("valid"), popularity_prior(train_item_counts(seqs)))
    valid_items = np.bincount(seqs.items[seqs.offsets[1:] - 2], minlength=seqs.num_items + 1)
    assert torch.allclose(run.popularity_prior("test"), popularity_prior(train_item_counts(seqs) + valid_items))


def test_cli_evaluate_with_the_prior_saves_ranks_that_compare_reads(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--quiet", "--json", "--output-dir", str(run), *sets(TINY)]) == 0
    trained = json.loads(capsys.readouterr().out)
    # beta 0 is the model as trained
    assert main(["evaluate", "--run", str(run), "--popularity-prior", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["NDCG@10"] == trained["test"]["NDCG@10"]

    saved = tmp_path / "prior"
    assert main(["evaluate", "--run", str(run), "--popularity-prior", "auto", "--prior-betas", "0,0.5,3",
                 "--save-ranks", str(saved), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    choice = out["popularity_prior"]["choice"]
    assert set(choice["valid"]) == {"0.0", "0.5", "3.0"} and out["popularity_prior"]["beta"] == choice["beta"]
    summary = json.loads((saved / "summary.json").read_text())
    assert summary["popularity_beta"] == choice["beta"] and summary["test"]["NDCG@10"] == out["NDCG@10"]
    assert summary["valid"]["NDCG@10"] == pytest.approx(choice["valid"][str(choice["beta"])])
    ranks = load_ranks(saved, "test")
    assert ranks.fingerprint == trained["item_map_fingerprint"]
    assert per_user_metric(ranks.ranks, "NDCG@10").mean() == pytest.approx(out["NDCG@10"])
    assert main(["compare", "--run", str(saved), "--against", str(run), "--json"]) == 0
    ndcg = json.loads(capsys.readouterr().out)["tests"][0]  # the saved ranks, user by user, against the run's
    assert ndcg["metric"] == "NDCG@10" and ndcg["users"] == 80
    assert ndcg["mean_a"] == pytest.approx(out["NDCG@10"]) and ndcg["mean_b"] == pytest.approx(trained["test"]["NDCG@10"])

    assert main(["evaluate", "--run", str(run), "--popularity-prior", "auto", "--prior-betas", "0,1"]) == 0
    text = capsys.readouterr().out
    assert "validation NDCG@10 per beta" in text and "<- chosen" in text


@pytest.mark.parametrize("args, message", [
    (["--save-ranks", "X"], "only apply with --popularity-prior"),
    (["--prior-betas", "0,1"], "only apply with --popularity-prior"),
    (["--popularity-prior", "-1"], "expected 'auto' or a number >= 0"),
    (["--popularity-prior", "high"], "expected 'auto' or a number >= 0"),
    (["--popularity-prior", "0.5", "--prior-betas", "0,1"], "only apply with --popularity-prior auto"),
    (["--popularity-prior", "auto", "--prior-betas", "0,x"], "--prior-betas"),
    (["--popularity-prior", "auto", "--prior-betas", "1,,2"],
     "--prior-betas '1,,2': entry 2 is empty; expected comma-separated numbers >= 0"),
    (["--popularity-prior", "auto", "--prior-metric", "AUC@3"], "unknown metric"),
])
def test_cli_prior_options_are_checked_before_loading_the_run(tmp_path, capsys, args, message):
    # the run folder does not exist: a message about the options proves they were checked first
    assert main(["evaluate", "--run", str(tmp_path / "missing"), *args]) != 0
    assert message in capsys.readouterr().err


def test_cli_save_ranks_refuses_a_folder_that_holds_a_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--quiet", "--output-dir", str(run), *sets(TINY)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--popularity-prior", "1", "--save-ranks", str(run)]) != 0
    err = capsys.readouterr().err
    assert "--save-ranks" in err and "already holds a run" in err and "--overwrite" not in err


def test_cli_default_grid_is_the_librarys():
    from prismrec.cli.run import DEFAULT_BETAS as CLI_BETAS

    assert CLI_BETAS == DEFAULT_BETAS


def test_recommend_with_the_prior_adds_it_to_every_score(tmp_path, capsys):
    from prismrec.api import load_run
    from prismrec.config import ConfigError

    path = tmp_path / "run"
    assert main(["train", "--quiet", "--output-dir", str(path), *sets(TINY)]) == 0
    capsys.readouterr()
    run = load_run(path)
    seqs = run.dataset.sequences
    counts = np.bincount(seqs.items, minlength=seqs.num_items + 1)  # every interaction of the dataset
    n = seqs.num_items
    history = [3, 5, 7]
    plain = dict(run.recommend(history, k=n))
    assert dict(run.recommend(history, k=n, popularity_beta=0)) == plain
    with_prior = run.recommend(history, k=n, popularity_beta=0.5)
    assert len(with_prior) == len(plain) == n - len(history)
    for item, score in with_prior:  # each score is the model's plus 0.5 * log(1 + count)
        assert score == pytest.approx(plain[item] + 0.5 * math.log1p(counts[item]), abs=1e-4)
    # a huge beta ranks the items that are not in the history by their count
    top = [i for i, _ in run.recommend(history, k=5, popularity_beta=1e4)]
    ranked = [i for i in np.argsort(-counts[1:], kind="stable") + 1 if i not in history]
    assert counts[top].tolist() == counts[ranked[:5]].tolist()
    with pytest.raises(ConfigError, match="finite number >= 0"):
        run.recommend(history, popularity_beta=-1)

    # CLI: a fixed beta, and auto (chosen on validation, as evaluate --popularity-prior auto)
    assert main(["recommend", "--run", str(path), "--history", "3,5,7", "-k", "4", "--popularity-prior", "0.5",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["popularity_prior"] == {"beta": 0.5, "choice": None}
    assert [(r["item"], r["score"]) for r in out["items"]] == [(i, round(s, 4)) for i, s in with_prior[:4]]
    assert [r["prior"] for r in out["items"]] == [round(0.5 * math.log1p(counts[r["item"]]), 4) for r in out["items"]]
    assert main(["recommend", "--run", str(path), "--history", "3,5,7", "-k", "3", "--popularity-prior", "auto",
                 "--prior-betas", "0,1,3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    choice = run.choose_popularity_beta((0.0, 1.0, 3.0))
    assert out["popularity_prior"] == {"beta": choice.beta, "choice": json.loads(json.dumps(choice.to_dict()))}
    expected = run.recommend(history, k=3, popularity_beta=choice.beta)
    assert [r["item"] for r in out["items"]] == [i for i, _ in expected]
    assert main(["recommend", "--run", str(path), "--history", "3,5,7", "--popularity-prior", "auto",
                 "--prior-betas", "0,1"]) == 0
    assert capsys.readouterr().out.startswith("popularity prior: beta ")
    # without the option the JSON stays a plain list of items
    assert main(["recommend", "--run", str(path), "--history", "3,5,7", "-k", "2", "--json"]) == 0
    assert [r["item"] for r in json.loads(capsys.readouterr().out)] == [i for i, _ in run.recommend(history, k=2)]


@pytest.mark.parametrize("args, message", [
    (["--prior-betas", "0,1"], "only apply with --popularity-prior"),
    (["--popularity-prior", "-1"], "expected 'auto' or a number >= 0"),
    (["--popularity-prior", "1", "--prior-metric", "HR@5"], "only apply with --popularity-prior auto"),
])
def test_cli_recommend_prior_options_are_checked_before_loading_the_run(tmp_path, capsys, args, message):
    assert main(["recommend", "--run", str(tmp_path / "missing"), "--history", "1,2", *args]) != 0
    assert message in capsys.readouterr().err
