"""STOSA specifics: Wasserstein distances, distance-based scoring, BPR + PvN loss, both streams attend,
PRISM reaching the covariance stream. (The shared contract is in test_conformance.py.)"""
import pytest
import torch
import torch.nn.functional as F

from prismrec.config import build_config
from prismrec.models import TrainBatch, build_model
from prismrec.models.stochastic_attention import (elu_plus_one, pairwise_wasserstein_distance,
                                                  wasserstein_distance)
from prismrec.models.stosa import split_gaussian
from prismrec.prism.losses import fusion_balance_loss

N, L, D = 25, 7, 8


def make(*overrides, features=None):
    cfg = build_config(overrides=["model.backbone=stosa", f"model.hidden_dim={D}", "model.num_layers=1",
                                  "model.num_heads=2", "model.dropout=0.0", *overrides])
    torch.manual_seed(0)
    return build_model(cfg.model, N, L, cfg.train.loss, features).eval(), cfg


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(1, N + 1, (3, L), generator=g)
    seq[0, :3] = 0
    targets = torch.roll(seq, -1, 1)
    targets[:, -1] = 5
    targets[seq == 0] = 0
    return TrainBatch(seq, targets, torch.randint(1, N + 1, seq.shape, generator=g))


def test_closed_form_w2_of_diagonal_gaussians():
    # 1-d: N(0, 1) vs N(3, 4): (0 - 3)^2 + (sqrt(1) - sqrt(4))^2 = 10
    d = wasserstein_distance(torch.tensor([[0.0]]), torch.tensor([[1.0]]), torch.tensor([[3.0]]), torch.tensor([[4.0]]))
    assert torch.allclose(d, torch.tensor([10.0]))
    g = torch.Generator().manual_seed(0)
    ma, mb = torch.randn(2, 5, 4, generator=g), torch.randn(2, 6, 4, generator=g)
    ca, cb = torch.rand(2, 5, 4, generator=g) + 0.1, torch.rand(2, 6, 4, generator=g) + 0.1
    pair = pairwise_wasserstein_distance(ma, ca, mb, cb)  # (2, 5, 6)
    brute = torch.stack([torch.stack([torch.stack([
        ((ma[b, i] - mb[b, j]) ** 2).sum() + ((ca[b, i].sqrt() - cb[b, j].sqrt()) ** 2).sum()
        for j in range(6)]) for i in range(5)]) for b in range(2)])
    assert torch.allclose(pair, brute, atol=1e-5)
    assert torch.allclose(pairwise_wasserstein_distance(ma, ca, ma, ca).diagonal(dim1=-2, dim2=-1),
                          torch.zeros(2, 5), atol=1e-5)


def test_scores_are_negative_w2_to_every_item_gaussian():
    model, _ = make()
    seq = batch().item_seq
    hidden = model(seq)  # (B, L, 2D)
    assert hidden.shape == (3, L, 2 * D)
    mean, cov = split_gaussian(hidden[:, -1])
    assert (cov > 0).all()
    item_mean = model.item_input.output_embeddings()
    item_cov = elu_plus_one(model.cov_input.output_embeddings())
    assert (item_cov > 0).all()
    expected = torch.stack([-wasserstein_distance(mean, cov, item_mean[i].expand_as(mean), item_cov[i].expand_as(cov))
                            for i in range(N + 1)], dim=1)  # (B, N + 1), one item at a time
    assert torch.allclose(model.full_sort_scores(seq), expected, atol=1e-4)


def test_both_streams_go_through_attention():
    """The public code's typo makes the mean stream skip attention; here an earlier item must move
    both the mean and the covariance of the user state at the last position."""
    model, _ = make()
    seq = batch().item_seq
    seq2 = seq.clone()
    seq2[:, 3] = seq2[:, 3] % N + 1
    m1, c1 = split_gaussian(model(seq)[:, -1])
    m2, c2 = split_gaussian(model(seq2)[:, -1])
    assert ((m1 - m2).abs().amax(-1) > 1e-4).all()
    assert ((c1 - c2).abs().amax(-1) > 1e-4).all()


def test_bpr_pvn_loss_matches_formula_and_ignores_train_loss():
    for train_loss in ("ce", "bce"):
        model, cfg = make(f"train.loss={train_loss}", "model.stosa.pvn_weight=0.5")
        assert model.needs_negatives  # STOSA's own loss, whatever train.loss says
        b = batch()
        out = model.training_loss(b)
        m = b.targets != 0
        mean, cov = split_gaussian(model(b.item_seq)[m])
        im, ic = model.item_input.output_embeddings(), elu_plus_one(model.cov_input.output_embeddings())
        pos, neg = b.targets[m], b.negatives[m]
        d_pos = ((mean - im[pos]) ** 2).sum(-1) + ((cov.sqrt() - ic[pos].sqrt()) ** 2).sum(-1)
        d_neg = ((mean - im[neg]) ** 2).sum(-1) + ((cov.sqrt() - ic[neg].sqrt()) ** 2).sum(-1)
        d_pn = ((im[pos] - im[neg]) ** 2).sum(-1) + ((ic[pos].sqrt() - ic[neg].sqrt()) ** 2).sum(-1)
        ref = -torch.log(torch.sigmoid(d_neg - d_pos)).mean() + 0.5 * torch.relu(d_pos - d_pn).mean()
        assert torch.allclose(out.total, ref, atol=1e-5)


def test_ce_variant_is_softmax_over_negative_distances():
    model, _ = make("model.stosa.loss=ce")
    assert not model.needs_negatives
    b = batch()
    b.negatives = None
    out = model.training_loss(b)
    m = b.targets != 0
    ref = F.cross_entropy(model.score(model(b.item_seq)[m])[:, 1:], b.targets[m] - 1)
    assert torch.allclose(out.total, ref, atol=1e-5)


def test_prism_reaches_both_streams_with_shared_experts():
    from test_conformance import features

    feats = {k: (v[0][:N + 1], v[1][:N + 1]) for k, v in features().items()}
    model, _ = make("model.prism.enabled=true", features=feats)
    model.train()
    assert model.cov_input.fuser is model.item_input.fuser  # experts and fusion shared
    assert model.cov_input.id_input is not model.item_input.id_input  # separate ID tables
    out = model.training_loss(batch())
    assert set(out.parts) > {"rec"}  # interaction losses present
    out.total.backward()
    assert model.cov_input.id_input.embedding.weight.grad.abs().sum() > 0
    fuser_grads = [p.grad for p in model.item_input.fuser.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in fuser_grads)
    # averaged over streams vs the mean stream's only: different numbers, same keys
    torch.manual_seed(3)
    avg = model.training_loss(batch()).parts
    mean_only, _ = make("model.prism.enabled=true", "model.stosa.aux_streams=mean", features=feats)
    mean_only.load_state_dict(model.state_dict())
    mean_only.train()
    torch.manual_seed(3)
    one = mean_only.training_loss(batch()).parts
    assert set(avg) == set(one)
    assert any(not torch.allclose(avg[k], one[k]) for k in avg if k != "rec")


def test_content_on_the_mean_stream_only():
    from test_conformance import features

    from prismrec.models.item_input import IDEmbedding

    feats = {k: (v[0][:N + 1], v[1][:N + 1]) for k, v in features().items()}
    model, _ = make("model.prism.enabled=true", "model.stosa.content_streams=mean", features=feats)
    assert type(model.cov_input) is IDEmbedding  # no content, no shared PRISM parts on the cov stream
    both, _ = make("model.prism.enabled=true", features=feats)
    seq = batch().item_seq

    def cov_depends_on_fusion(m) -> bool:
        params = [p for p in m.item_input.fuser.parameters() if p.requires_grad]
        grads = torch.autograd.grad(m.cov_input(seq).sum(), params, allow_unused=True)
        return any(g is not None and g.abs().sum() > 0 for g in grads)

    assert not cov_depends_on_fusion(model) and cov_depends_on_fusion(both)
    # it trains: the mean stream's interaction losses, gradients into the cov ID table and the fusion
    model.train()
    out = model.training_loss(batch())
    assert set(out.parts) > {"rec"}
    out.total.backward()
    assert model.cov_input.embedding.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.item_input.fuser.parameters())
    # the shared sibling adds only its own ID table, as does the plain one: same parameter count
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in both.parameters())


def test_auxiliary_predictions_are_centred_distances_so_their_cosines_carry_ranking_signal():
    model, _ = make()
    b = batch()
    items = torch.arange(1, N + 1)
    with torch.no_grad():
        h = model(b.item_seq)[:, -1]  # (3, 2D): three users' last positions
        raw = model.candidate_scores(h, items)  # (3, N) = -W2^2
        centred = model.aux_candidate_scores(h, items)
    offset = raw - centred
    assert torch.allclose(offset, offset[:, :1].expand_as(offset), atol=1e-5)  # one constant per row: same ranking
    assert torch.allclose(centred.mean(-1), torch.zeros(3), atol=1e-5)
    pairs = [(0, 1), (0, 2), (1, 2)]
    raw_cos = torch.stack([F.cosine_similarity(raw[i], raw[j], dim=0) for i, j in pairs])
    centred_cos = torch.stack([F.cosine_similarity(centred[i], centred[j], dim=0) for i, j in pairs])
    assert bool((raw_cos > 0.99).all())  # the shared offset hides how differently the users rank the items
    assert bool((centred_cos < 0.9).all())


def test_fusion_balance_loss_comes_from_both_streams():
    from test_conformance import features

    feats = {k: (v[0][:N + 1], v[1][:N + 1]) for k, v in features().items()}
    model, _ = make("model.prism.enabled=true", "model.prism.lambda_fusion_balance=1.0", features=feats)
    model.train()
    fuser, seen = model.item_input.fuser, []  # one fuser, shared by the two streams' item inputs
    real = fuser.balance_loss

    def record(weights, padding_mask):
        seen.append((weights.detach(), padding_mask))
        return real(weights, padding_mask)

    fuser.balance_loss = record
    parts = model.training_loss(batch()).parts
    assert len(seen) == 2  # each stream's own fusion weights (its ID embeddings enter the fusion MLP)
    assert not torch.allclose(seen[0][0], seen[1][0])
    mean_stream, cov_stream = (fusion_balance_loss(w, m) for w, m in seen)
    assert mean_stream > 0 and cov_stream > 0
    torch.testing.assert_close(parts["L_fusion_balance"], 0.5 * (mean_stream + cov_stream))  # lambda = 1


def test_prediction_level_interaction_losses_train_and_see_more_than_the_offset():
    from test_conformance import features

    feats = {k: (v[0][:N + 1], v[1][:N + 1]) for k, v in features().items()}
    model, _ = make("model.prism.enabled=true", "model.prism.loss_on=prediction", "model.prism.lambda_synergy=1.0",
                    features=feats)
    model.train()
    out = model.training_loss(batch())
    assert {"L_unique_image", "L_unique_text", "L_synergy", "L_redundancy"} <= set(out.parts)
    # L_synergy = mean cosine between the full and the one-modality predictions: ~1 before the centring
    assert out.parts["L_synergy"].item() < 0.99
    out.total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_summary_names_the_loss_stosa_trained_with(tmp_path):
    from conftest import TINY
    from prismrec.api import train

    cfg = build_config(overrides=TINY + ["model.backbone=stosa", "train.epochs=1", "train.loss=ce"])
    assert train(cfg, tmp_path / "run", progress=False).summary["loss"] == cfg.model.stosa.loss != "ce"


def test_default_run_folder_names_the_loss_stosa_trains_with():
    from types import SimpleNamespace

    from prismrec.api import default_run_dir

    data = SimpleNamespace(name="beauty")
    stosa = build_config(overrides=["model.backbone=stosa", "train.loss=ce"])
    assert default_run_dir(stosa, data).name.endswith("-beauty-stosa-bpr_pvn")  # not train.loss's "ce"
    sasrec = build_config(overrides=["train.loss=bce"])
    assert default_run_dir(sasrec, data).name.endswith("-beauty-sasrec-bce")
