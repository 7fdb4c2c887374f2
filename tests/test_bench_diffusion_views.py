"""benchmarks/diffusion_views.py on a tiny trained InDiRec run."""
import json
import sys
from pathlib import Path

import pytest

from prismrec.api import train
from prismrec.config import build_config

from conftest import TINY

REPO = Path(__file__).resolve().parents[1]


def test_diffusion_views_reports_every_guidance_and_start(tmp_path):
    cfg = build_config(overrides=TINY + ["train.epochs=1", "model.backbone=indirec", "model.indirec.num_intents=4",
                                         "model.indirec.diffusion_steps=20", "model.indirec.sample_steps=4"])
    train(cfg, tmp_path / "run", progress=False)
    sys.path.insert(0, str(REPO / "benchmarks"))
    from diffusion_views import main

    main(["--run", str(tmp_path / "run"), "--prefixes", "64", "--cl-group", "16", "--name", "views",
          "--results-dir", str(tmp_path / "results")])
    res = json.loads((tmp_path / "results" / "views.json").read_text())
    rows = res["results"]
    assert set(rows) == {"partner", "shuffled", "null", "partner, start ~ q(x_T | x_0)",
                         "prefix representation itself"}
    assert res["prefixes"] == 64 and 0 < res["alpha_bar_T"] < 1
    for r in rows.values():
        assert -1 <= r["cos_to_target"] <= 1 and 0 <= r["HR@10"] <= 1 and 0 < r["MRR"] <= 1
    # every arm samples with the same noise, so the guidance alone sets them apart: a guidance that did
    # not reach the sampler (or one arm reusing another's) would give equal rows
    cos = {k: rows[k]["cos_to_target"] for k in ("partner", "shuffled", "null")}
    assert len({round(v, 6) for v in cos.values()}) == 3, cos
    # a prefix's own representation retrieves itself among 16 (the InfoNCE positive), barring duplicates
    assert rows["prefix representation itself"]["cl_retrieval_accuracy"] > 0.8


def test_diffusion_views_refuses_another_backbone(tmp_path):
    train(build_config(overrides=TINY + ["train.epochs=1"]), tmp_path / "run", progress=False)
    sys.path.insert(0, str(REPO / "benchmarks"))
    from diffusion_views import main

    with pytest.raises(SystemExit):
        main(["--run", str(tmp_path / "run"), "--results-dir", str(tmp_path)])
