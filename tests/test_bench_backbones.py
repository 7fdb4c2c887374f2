"""benchmarks/bench_backbones.py end to end on a tiny sequence file (two backbones, one epoch)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def test_bench_backbones_records_runs_and_skips_prism_without_features(tmp_path):
    rng = np.random.default_rng(0)
    lines = [" ".join(map(str, [u, *rng.choice(np.arange(1, 51), size=int(rng.integers(5, 12)), replace=False)]))
             for u in range(1, 61)]
    data = tmp_path / "Tiny.txt"
    data.write_text("\n".join(lines) + "\n")
    sets = ["train.epochs=1", "train.batch_size=32", "data.max_seq_len=10", "model.hidden_dim=16",
            "model.num_layers=1", "model.num_heads=2", "model.indirec.num_intents=4",
            "model.indirec.diffusion_steps=20", "model.indirec.sample_steps=2"]
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_backbones.py"), "--data", str(data),
           "--prism-data", str(data), "--backbones", "stosa", "indirec", "--name", "tiny",
           "--out", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results")]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads((tmp_path / "results" / "tiny.json").read_text())
    assert "PRISM needs >= 2" in res["skipped_arms"]["prism"]
    assert [r["backbone"] for r in res["runs"]] == ["stosa", "indirec"]
    assert not any(r["failed"] for r in res["runs"])
    stosa = res["runs"][0]
    assert "--config" in stosa["command"] and "stosa_beauty.yaml" in stosa["command"]
    assert stosa["epochs_run"] == 1 and stosa["seconds_per_epoch"] > 0 and stosa["peak_memory_mb"] > 0
    assert set(res["table"]) == {"stosa/vanilla", "indirec/vanilla"}
    assert {"command", "date", "machine", "git_commit"} <= set(res)
