"""Backbone checks on tiny configs: shapes, causality, padding invariance, losses."""
import pytest
import torch

from prismrec.config import ModelConfig
from prismrec.models import IDEmbedding, TrainBatch, build_model, registered_backbones
from prismrec.models.base import SequentialRecommender

N_ITEMS, L = 30, 8


def make(backbone="sasrec", loss="ce"):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone=backbone, hidden_dim=16, num_layers=2, num_heads=2, dropout=0.0)
    return build_model(cfg, N_ITEMS, L, loss).eval()


@pytest.fixture(params=registered_backbones())
def model(request) -> SequentialRecommender:
    return make(request.param)


def batch():
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(1, N_ITEMS + 1, (4, L), generator=g)
    seq[0, :5] = 0
    seq[1, :2] = 0
    return seq


def test_shapes(model):
    seq = batch()
    assert model(seq).shape == (4, L, 16)
    assert model.full_sort_scores(seq).shape == (4, N_ITEMS + 1)


def test_causality(model):
    """Changing the item at position t+1 leaves outputs at positions <= t unchanged."""
    seq = batch()
    out = model(seq)
    for t in range(3, L - 1):
        seq2 = seq.clone()
        seq2[:, t + 1] = (seq2[:, t + 1] % N_ITEMS) + 1
        out2 = model(seq2)
        assert torch.allclose(out[:, :t + 1], out2[:, :t + 1], atol=1e-6)
        assert not torch.allclose(out[2:, t + 1], out2[2:, t + 1])


def test_padding_invariance(model):
    """More left padding does not change outputs at real positions."""
    seq = batch()
    padded = torch.cat([torch.zeros(4, 5, dtype=torch.long), seq], dim=1)
    # a model built for longer inputs, with the same weights for everything but positions
    longer = build_model(ModelConfig(hidden_dim=16, num_layers=2, num_heads=2, dropout=0.0,
                                     backbone=type(model).__name__.lower()), N_ITEMS, L + 5, "ce").eval()
    state = model.state_dict()
    lstate = longer.state_dict()
    for k, v in state.items():
        if lstate[k].shape == v.shape:
            lstate[k] = v
        else:  # positional tables: copy the shared rows
            lstate[k][:v.shape[0]] = v
    longer.load_state_dict(lstate)
    real = seq != 0
    assert torch.allclose(model(seq)[real], longer(padded)[:, 5:][real], atol=1e-5)


def test_padding_item_contributes_nothing(model):
    seq = batch()
    emb = model.item_input.output_embeddings()
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
