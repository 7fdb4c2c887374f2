"""SASRec- and seam-specific checks on tiny configs (the per-backbone contract checks -- shapes,
causality, padding invariance, training, save/load, ranking -- live in test_conformance.py)."""
import pytest
import torch

from prismrec.config import ModelConfig
from prismrec.models import IDEmbedding, TrainBatch, build_model

N_ITEMS, L = 30, 8


def make(backbone="sasrec", loss="ce"):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone=backbone, hidden_dim=16, num_layers=2, num_heads=2, dropout=0.0)
    return build_model(cfg, N_ITEMS, L, loss).eval()


def batch():
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(1, N_ITEMS + 1, (4, L), generator=g)
    seq[0, :5] = 0
    seq[1, :2] = 0
    return seq


def test_padding_item_contributes_nothing():
    emb = make().item_input.output_embeddings()
    assert torch.count_nonzero(emb[0]) == 0


def test_losses_are_finite_and_backprop():
    for loss in ("ce", "bce"):
        m = make(loss=loss).train()
        seq = batch()
        targets = torch.roll(seq, -1, 1)
        targets[:, -1] = 1
        targets[seq == 0] = 0
        neg = torch.randint(1, N_ITEMS + 1, seq.shape) if loss == "bce" else None
        out = m.training_loss(TrainBatch(seq, targets, neg))
        assert torch.isfinite(out.total)
        out.total.backward()
        assert m.item_input.embedding.weight.grad is not None


def test_ce_loss_matches_reference():
    m = make()
    seq = batch()
    targets = torch.randint(1, N_ITEMS + 1, seq.shape)
    targets[seq == 0] = 0
    out = m.training_loss(TrainBatch(seq, targets))
    h = m(seq)
    mask = targets != 0
    logits = m.score(h[mask])  # (P, N + 1)
    ref = torch.nn.functional.cross_entropy(logits[:, 1:], targets[mask] - 1)
    assert torch.allclose(out.total, ref, atol=1e-6)


def test_item_input_is_swappable_without_touching_backbone():
    class Doubled(IDEmbedding):
        def forward(self, item_seq):
            return 2 * super().forward(item_seq)

    m = make()
    before = m(batch())
    doubled = Doubled(N_ITEMS, 16)
    doubled.embedding.weight.data.copy_(m.item_input.embedding.weight.data)
    m.item_input = doubled
    assert not torch.allclose(before, m(batch()))


def test_unknown_backbone_is_config_error():
    from prismrec.config import ConfigError
    with pytest.raises(ConfigError, match="registered: .*sasrec"):
        build_model(ModelConfig(backbone="nope"), N_ITEMS, L)


def test_input_scale_auto_follows_the_loss():
    from dataclasses import replace
    cfg = ModelConfig(hidden_dim=16, num_layers=1, num_heads=2, dropout=0.0)
    assert build_model(cfg, N_ITEMS, L, "ce").input_scale == 4.0  # default sqrt_dim
    auto = replace(cfg, input_scale="auto")
    assert build_model(auto, N_ITEMS, L, "ce").input_scale == 1.0
    assert build_model(auto, N_ITEMS, L, "bce").input_scale == 4.0
    assert build_model(replace(cfg, input_scale="none"), N_ITEMS, L, "bce").input_scale == 1.0
    assert build_model(replace(cfg, input_scale="sqrt_dim"), N_ITEMS, L, "ce").input_scale == 4.0


def make_biased(loss="ce", backbone="sasrec"):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone=backbone, hidden_dim=16, num_layers=2, num_heads=2, dropout=0.0, item_bias=True)
    m = build_model(cfg, N_ITEMS, L, loss).eval()
    with torch.no_grad():
        m.item_bias.copy_(torch.randn(N_ITEMS + 1, generator=torch.Generator().manual_seed(3)))
    return m


def test_item_bias_shifts_every_score_by_the_items_offset():
    m = make_biased()
    seq = batch()
    h = m.last_hidden(seq)
    with_bias = m.full_sort_scores(seq)
    bias = m.item_bias.detach().clone()
    with torch.no_grad():
        m.item_bias.zero_()
    without = m.full_sort_scores(seq)
    assert torch.allclose(with_bias - without, bias.expand_as(without), atol=1e-5)
    assert not torch.allclose(with_bias, without)  # the offsets are not zero: the check above can fail
    with torch.no_grad():
        m.item_bias.copy_(bias)
    items = torch.tensor([5, 1, 30, 5])
    assert torch.allclose(m.real_item_scores(h), with_bias[:, 1:], atol=1e-5)
    assert torch.allclose(m.candidate_scores(h, items), with_bias[:, items], atol=1e-5)
    assert torch.allclose(m.score_items(h, items), with_bias[torch.arange(4), items], atol=1e-5)


def test_item_bias_enters_the_bce_loss_and_learns_from_its_items_only():
    m = make_biased(loss="bce")
    seq = batch()
    targets = torch.roll(seq, -1, 1)
    targets[:, -1] = 1
    targets[seq == 0] = 0
    neg = torch.randint(1, N_ITEMS + 1, seq.shape, generator=torch.Generator().manual_seed(5))
    out = m.training_loss(TrainBatch(seq, targets, neg))
    mask = targets != 0
    h = m(seq)[mask]
    pos, negs = m.score_items(h, targets[mask]), m.score_items(h, neg[mask])
    ref = -(torch.nn.functional.logsigmoid(pos).sum() + torch.nn.functional.logsigmoid(-negs).sum()) / pos.numel()
    assert torch.allclose(out.total, ref, atol=1e-5)
    out.total.backward()
    grad = m.item_bias.grad
    touched = torch.zeros(N_ITEMS + 1, dtype=torch.bool)
    touched[targets[mask]] = True
    touched[neg[mask]] = True
    assert bool((grad[~touched] == 0).all()) and bool((grad[touched] != 0).any())


def test_item_bias_is_refused_by_stosa():
    from prismrec.config import ConfigError

    with pytest.raises(ConfigError, match="model.item_bias"):
        make_biased(backbone="stosa")


def test_item_bias_can_start_from_the_log_training_count():
    from prismrec.api import build
    from prismrec.config import ConfigError, build_config
    from prismrec.data.split import train_item_counts

    cfg = build_config(overrides=["model.item_bias=true", "model.item_bias_init=log_count", "model.hidden_dim=16",
                                  "model.num_heads=2", "data.synthetic.num_users=60", "data.synthetic.num_items=64"])
    run = build(cfg)
    counts = torch.from_numpy(train_item_counts(run.dataset.sequences)).double()
    assert counts[1:].max() > counts[1:].min()  # the check below can tell the counts apart
    expected = torch.log1p(counts).float()
    expected[0] = 0
    assert torch.allclose(run.model.item_bias.detach(), expected)
    with pytest.raises(ConfigError, match="needs the items' training counts"):
        build_model(cfg.model, 64, L, "bce")  # no counts given
    with pytest.raises(ConfigError, match="model.item_bias=true"):
        build_config(overrides=["model.item_bias_init=log_count"])
