"""model.prism.output_popularity_buckets: the prediction layer's ID and content parts scaled per
popularity bucket of the item's training count."""
import json

import numpy as np
import pytest
import torch

from conftest import TINY, sets
from prismrec.cli import main
from prismrec.config import ConfigError, ModelConfig, build_config
from prismrec.data.sequences import Sequences
from prismrec.data.split import train_item_counts
from prismrec.models import build_model
from prismrec.prism.config import PRISMConfig
from prismrec.prism.item_input import popularity_buckets

N, L, D = 40, 8, 16
COUNTS = torch.tensor([0] + [0, 1, 2, 3, 4, 7, 8, 15, 16, 100] * 4)  # (N + 1,), padding row first


def features():
    g = torch.Generator().manual_seed(0)
    out = {}
    for i, name in enumerate(["image", "text"]):
        present = torch.ones(N + 1, dtype=torch.bool)
        present[0] = False
        out[name] = (torch.randn(N + 1, 6 + i, generator=g), present)
    return out


def make(buckets: int, counts=COUNTS, **prism):
    torch.manual_seed(0)
    cfg = ModelConfig(hidden_dim=D, num_layers=1, num_heads=2, dropout=0.0,
                      prism=PRISMConfig(enabled=True, expert_dropout=0.0, fusion_dropout=0.0, output_content=True,
                                        output_popularity_buckets=buckets, **prism))
    return build_model(cfg, N, L, "ce", features(), counts)


def test_train_item_counts_count_only_the_training_part_of_each_sequence():
    seqs = [[1, 2, 3, 4, 5], [2, 2, 6], [6, 1, 1, 3]]
    s = Sequences(items=np.array(sum(seqs, []), dtype=np.int64), offsets=np.array([0, 5, 8, 12]),
                  user_ids=np.arange(1, 4), num_items=7)
    expected = np.zeros(8, dtype=np.int64)
    for seq in seqs:
        for item in seq[:-2]:  # the last two are the validation and test targets
            expected[item] += 1
    assert train_item_counts(s).tolist() == expected.tolist() == [0, 2, 2, 1, 0, 0, 1, 0]


def test_buckets_are_zero_then_powers_of_two_capped():
    counts = torch.tensor([0, 1, 2, 3, 4, 7, 8, 15, 16, 100, 10**6])
    assert popularity_buckets(counts, 6).tolist() == [0, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5]
    assert popularity_buckets(counts, 2).tolist() == [0] + [1] * 10


@pytest.mark.parametrize("fusion", ["items", "user"])
def test_at_initialisation_the_model_is_plain_output_content(fusion):
    h = torch.randn(3, D)
    with_scales, without = make(8, output_fusion=fusion).eval(), make(0, output_fusion=fusion).eval()
    assert torch.equal(with_scales.score(h), without.score(h))


def test_a_bucket_scale_moves_only_the_items_in_that_bucket():
    model = make(6).eval()
    mm = model.item_input
    ids = mm.id_input.output_embeddings()
    before = mm.output_keys()
    content = before - ids  # (N + 1, D): the content part of every key (0 on padding)
    bucket = popularity_buckets(COUNTS, 6)
    cold = (bucket == 1) & (torch.arange(N + 1) > 0)  # items seen once in training
    with torch.no_grad():
        mm.popularity.scale[1] = torch.tensor([0.5, 3.0])  # bucket 1: half the ID embedding, 3x the content
    after = mm.output_keys()
    assert torch.allclose(after[cold], 0.5 * ids[cold] + 3.0 * content[cold], atol=1e-6)
    assert torch.equal(after[~cold], before[~cold])
    assert torch.count_nonzero(after[0]) == 0


def test_user_fusion_scales_the_id_and_every_expert_column():
    model = make(6, output_fusion="user").eval()
    mm = model.item_input
    before = mm.output_keys()  # (N + 1, (E + 1) D)
    item = int(torch.nonzero(popularity_buckets(COUNTS, 6) == 5)[0])
    with torch.no_grad():
        mm.popularity.scale[5] = torch.tensor([2.0, 0.0])
    after = mm.output_keys()
    assert torch.allclose(after[item, :D], 2.0 * before[item, :D])
    assert torch.count_nonzero(after[item, D:]) == 0  # no content left for that item


def test_scales_learn_from_the_recommendation_loss():
    from prismrec.models import TrainBatch
    model = make(8)
    seq = torch.randint(1, N + 1, (4, L), generator=torch.Generator().manual_seed(1))
    targets = torch.roll(seq, -1, 1)
    model.training_loss(TrainBatch(seq, targets, None)).total.backward()
    grad = model.item_input.popularity.scale.grad
    assert grad is not None and torch.count_nonzero(grad) > 0


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="needs model.prism.output_content"):
        build_config(overrides=["model.prism.enabled=true", "model.prism.output_popularity_buckets=8"])
    with pytest.raises(ConfigError, match="0 \\(off\\) or >= 2"):
        build_config(overrides=["model.prism.output_content=true", "model.prism.output_popularity_buckets=1"])
    with pytest.raises(ConfigError, match="training count"):
        make(8, counts=None)
    with pytest.raises(ConfigError, match="training count"):
        make(8, counts=COUNTS[:-1])


def test_train_save_load_and_inspect(tmp_path, capsys):
    run = tmp_path / "pop"
    assert main(["train", "--quiet", "--output-dir", str(run),
                 *sets(TINY + ["model.prism.enabled=true", "model.prism.method=concat",
                               "model.prism.output_content=true", "model.prism.output_popularity_buckets=5"])]) == 0
    capsys.readouterr()
    assert main(["inspect", "--run", str(run), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["output_popularity_scales"]
    assert [r["train_count"] for r in rows] == ["0", "1", "2-3", "4-7", "8+"]
    assert sum(r["items"] for r in rows) == 96  # every real item in exactly one bucket
    assert any(abs(r["a_id"] - 1.0) > 1e-6 or abs(r["a_content"] - 1.0) > 1e-6 for r in rows)  # trained
    from prismrec.api import load_run
    loaded = load_run(run)
    assert [r["a_content"] for r in rows] == loaded.model.item_input.popularity.scale[:, 1].tolist()
    summary = json.loads((run / "summary.json").read_text())
    assert loaded.evaluate("test").metrics["NDCG@10"] == pytest.approx(summary["test"]["NDCG@10"], abs=1e-6)
    assert main(["inspect", "--run", str(run)]) == 0
    assert "prediction-layer scales per popularity bucket" in capsys.readouterr().out
