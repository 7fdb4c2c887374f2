"""docs/python_api.md: its code blocks run as written, in order, and do what the page says."""
import re

import numpy as np

from conftest import REPO


def test_the_python_api_page_runs_as_written(tmp_path, monkeypatch, capsys):
    page = (REPO / "docs" / "python_api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    assert len(blocks) == 4
    monkeypatch.chdir(tmp_path)  # the page writes runs/ in the working directory
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/python_api.md", "exec"), namespace)
    out = capsys.readouterr().out.splitlines()
    run_dir = tmp_path / "runs" / "demo-prism"
    assert {"config.yaml", "model.safetensors", "summary.json", "ranks.npz"} <= {p.name for p in run_dir.iterdir()}
    run, result = namespace["run"], namespace["result"]
    assert out[0] == f"{run.summary['test']['NDCG@10']} {run.summary['best_epoch']}"
    assert result.ranks.shape == (run.dataset.num_users,)
    recs = [int(line.split()[0]) for line in out[2:7]]
    assert len(set(recs)) == 5 and not set(recs) & {3, 5, 7}  # the history is excluded
    weights, emb = namespace["weights"], namespace["emb"]
    assert weights.experts == ["unique_image", "unique_text", "synergy", "redundancy"]
    np.testing.assert_allclose(weights.last.sum(axis=1), 1.0, rtol=1e-5)  # softmax weights per user
    assert emb.shape == (run.dataset.num_items, 4, run.config.model.hidden_dim)
    (listed,) = [line.split() for line in out if line.startswith("runs/demo-prism ")]  # the run listing
    assert listed[1] == "sasrec+prism" and listed[2:4] == ["done:", "epoch"]  # train.epochs ended it
    assert float(listed[-1]) == run.summary["test"]["NDCG@10"] and int(listed[-3]) == run.summary["best_epoch"]
    metric, mean_a, mean_b = out[-1].split()[:3]
    assert metric == "NDCG@10" and float(mean_a) == run.summary["test"]["NDCG@10"]
    assert float(mean_b) == namespace["plain"].summary["test"]["NDCG@10"]
