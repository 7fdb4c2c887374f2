"""`recommend --all-users` / Run.recommend_all: every user's next items, batched, equal to one-at-a-time."""
from __future__ import annotations

import csv
import io

import pytest
import torch

from prismrec.api import load_run
from prismrec.cli import main

from conftest import TINY, sets


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("rec") / "run"
    assert main(["train", "--quiet", "--output-dir", str(run), *sets(TINY + ["train.epochs=1"])]) == 0
    return run


def test_batched_lists_equal_one_history_at_a_time(run_dir):
    run = load_run(run_dir, device="cpu")
    items, scores = run.recommend_all(k=5)
    seqs = run.dataset.sequences
    assert items.shape == scores.shape == (seqs.num_users, 5)
    for u in (0, 7, seqs.num_users - 1):  # users of different lengths, so of different batches
        history = seqs.items[seqs.offsets[u]:seqs.offsets[u + 1]].tolist()  # the whole sequence
        one = run.recommend(history, k=5)
        assert items[u].tolist() == [i for i, _ in one]
        torch.testing.assert_close(scores[u], torch.tensor([s for _, s in one]), rtol=1e-5, atol=1e-5)
        assert not set(items[u].tolist()) & set(history)  # the history is excluded
    items_b, scores_b = run.recommend_all(k=5, popularity_beta=0.5)
    history = seqs.items[seqs.offsets[3]:seqs.offsets[4]].tolist()
    assert items_b[3].tolist() == [i for i, _ in run.recommend(history, k=5, popularity_beta=0.5)]


def test_short_catalogue_rows_end_in_padding(run_dir):
    run = load_run(run_dir, device="cpu")
    n = run.dataset.num_items
    items, scores = run.recommend_all(k=n + 10)  # more than the catalogue: k is cut to it
    assert items.shape[1] == n
    seqs = run.dataset.sequences
    left = n - len(set(seqs.items[seqs.offsets[0]:seqs.offsets[1]].tolist()))  # items not in user 0's history
    assert (items[0, :left] > 0).all() and (items[0, left:] == 0).all()
    assert torch.isinf(scores[0, left:]).all() and torch.isfinite(scores[0, :left]).all()
    items_all, _ = run.recommend_all(k=3, exclude_history=False)
    assert (items_all > 0).all()


def test_cli_writes_every_users_list_as_csv(run_dir, tmp_path, capsys):
    out = tmp_path / "recs.csv"
    assert main(["recommend", "--run", str(run_dir), "--all-users", "-k", "4", "--out", str(out)]) == 0
    assert "wrote top-4 items for 80 users" in capsys.readouterr().err
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["user_id", "rank", "item", "score"]  # the synthetic world has no raw ids
    assert len(rows) == 80 * 4 and [r["rank"] for r in rows[:5]] == ["1", "2", "3", "4", "1"]
    run = load_run(run_dir, device="cpu")
    items, _ = run.recommend_all(k=4)
    assert [int(r["item"]) for r in rows[-4:]] == items[-1].tolist()
    assert rows[-1]["user_id"] == str(int(run.dataset.sequences.user_ids[-1]))
    # with a prior: its part of each score in its own column; to stdout without --out
    assert main(["recommend", "--run", str(run_dir), "--all-users", "-k", "1", "--popularity-prior", "0.5"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(table) == 80 and list(table[0])[-1] == "prior" and all(float(r["prior"]) >= 0 for r in table)


@pytest.mark.parametrize("args,needle", [
    (["--all-users", "--history", "1,2"], "it takes no --history"),
    (["--all-users", "--json"], "it takes no --json"),
    (["--history", "1,2", "--out", "x.csv"], "--out is only read with --all-users"),
    ([], "give --history ID,ID,... (one history) or --all-users"),
    (["--all-users", "--out", "/nonexistent/recs.csv"], "folder /nonexistent does not exist"),
])
def test_cli_option_errors(run_dir, capsys, args, needle):
    assert main(["recommend", "--run", str(run_dir), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err, err
