"""PRISM module: experts, masking, losses, fusion, ablations, missing modalities, the seam."""
import math

import pytest
import torch

from prismrec.config import ModelConfig, build_config
from prismrec.models import TrainBatch, build_model
from prismrec.prism.config import PRISMConfig
from prismrec.prism.fusion import pooled_context
from prismrec.prism.losses import (consecutive_pairs, interaction_losses, redundancy_loss, synergy_loss,
                                   transition_loss, triplet_loss)
from prismrec.prism.masking import unimodal_views
from prismrec.training.checkpoint import load_weights, save_weights

N, L, D = 40, 8, 16


def features(m=2, missing=()):
    g = torch.Generator().manual_seed(0)
    out = {}
    for i, name in enumerate(["image", "text", "audio"][:m]):
        values = torch.randn(N + 1, 6 + i, generator=g)
        present = torch.ones(N + 1, dtype=torch.bool)
        present[0] = False
        for item in missing:
            present[item] = False
        out[name] = (values, present)
    return out


def make(prism: dict | None = None, m=2, missing=(), loss="ce", seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(hidden_dim=D, num_layers=1, num_heads=2, dropout=0.0,
                      prism=PRISMConfig(**({"enabled": True, "expert_dropout": 0.0, "fusion_dropout": 0.0}
                                           | (prism or {}))))
    return build_model(cfg, N, L, loss, features(m, missing))


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(1, N + 1, (4, L), generator=g)
    seq[0, :5] = 0
    targets = torch.roll(seq, -1, 1)
    targets[:, -1] = 3
    targets[seq == 0] = 0
    return TrainBatch(seq, targets, torch.randint(1, N + 1, seq.shape, generator=g))


def test_disabled_is_exactly_the_plain_backbone():
    torch.manual_seed(0)
    plain = build_model(ModelConfig(hidden_dim=D, num_layers=1, num_heads=2, dropout=0.0), N, L)
    off = make({"enabled": False})
    assert set(plain.state_dict()) == set(off.state_dict())
    b = batch()
    assert torch.equal(plain(b.item_seq), off(b.item_seq))


def test_expert_count_follows_modalities():
    assert make().item_input.expert_names == ["unique_image", "unique_text", "synergy", "redundancy"]
    assert len(make(m=3).item_input.expert_names) == 5
    assert make({"drop_experts": ("synergy",)}).item_input.expert_names == ["unique_image", "unique_text",
                                                                              "redundancy"]


def test_frozen_features_get_no_gradient_trainable_parts_do():
    model = make()
    out = model.training_loss(batch())
    out.total.backward()
    for name, buf in model.named_buffers():
        assert not buf.requires_grad, name
    mm = model.item_input
    for part in (mm.modalities.projections[0].weight, mm.modalities.projections[1].weight,
                 mm.fuser.experts.weights[0], mm.fuser.experts.weights[-1], mm.fuser.fusion.mlp[0].weight):
        assert part.grad is not None and part.grad.abs().sum() > 0
    assert {"L_unique_image", "L_unique_text", "L_synergy", "L_redundancy"} <= set(out.parts)


def test_fusion_weights_sum_to_one_and_are_causal():
    model = make().eval()
    b = batch()
    w = model.item_input.fusion_weights(b.item_seq)  # (B, L, E)
    assert w.shape == (4, L, 4)
    assert torch.allclose(w.sum(-1), torch.ones(4, L), atol=1e-6)
    out = model(b.item_seq)
    for t in range(5, L - 1):
        seq2 = b.item_seq.clone()
        seq2[:, t + 1] = (seq2[:, t + 1] % N) + 1
        assert torch.allclose(out[:, :t + 1], model(seq2)[:, :t + 1], atol=1e-6)
        assert torch.allclose(w[:, :t + 1], model.item_input.fusion_weights(seq2)[:, :t + 1], atol=1e-6)


def test_sequence_scope_one_weight_vector_per_history_without_padding():
    model = make({"fusion_scope": "sequence"}).eval()
    seq = batch().item_seq
    w = model.item_input.fusion_weights(seq)
    real = seq[0] != 0
    assert torch.allclose(w[0, real], w[0, real][:1].expand(int(real.sum()), -1), atol=1e-6)
    padded = torch.cat([torch.zeros(4, 3, dtype=torch.long), seq], 1)
    assert torch.allclose(model.item_input.fusion_weights(padded)[:, 3:][seq != 0], w[seq != 0], atol=1e-6)


def test_pooled_context_never_includes_padding():
    x = torch.tensor([[[100.0], [1.0], [3.0]]])
    mask = torch.tensor([[False, True, True]])
    assert pooled_context(x, mask, "causal")[0, :, 0].tolist()[1:] == [1.0, 2.0]
    assert pooled_context(x, mask, "sequence")[0, 2, 0].item() == 2.0


@pytest.mark.parametrize("prism", [
    {"fusion": "uniform"}, {"drop_experts": ("synergy",)}, {"drop_experts": ("unique_image",)},
    {"drop_experts": ("redundancy",)}, {"lambda_unique": 0.0, "lambda_synergy": 0.0, "lambda_redundancy": 0.0},
    {"method": "concat"}, {"method": "sum"}, {"method": "mean"}, {"method": "gated"},
    {"loss_on": "prediction"}, {"masking": "zero"}, {"masking": "mean"}, {"combine": "concat"},
    {"fusion_scope": "sequence"}, {"expert_layers": 3, "expert_activation": "relu"},
    {"output_content": True}, {"method": "concat", "output_content": True},
    {"output_content": True, "output_fusion": "user"},
    {"output_content": True, "output_fusion": "user", "loss_on": "prediction"},
    {"synergy_contrast": True}, {"synergy_contrast": True, "loss_on": "prediction", "output_content": True},
    {"lambda_transition": 0.1}, {"lambda_transition": 0.1, "synergy_contrast": True},
    {"lambda_transition": 0.1, "lambda_unique": 0.0, "lambda_synergy": 0.0, "lambda_redundancy": 0.0},
    {"content_gate": True}, {"method": "concat", "content_gate": True}, {"content_gate": True, "loss_on": "prediction"},
    {"content_gate": True, "fusion_scope": "sequence", "combine": "concat"},
    {"loss_items": 4}, {"loss_items": 4, "masking": "random", "lambda_transition": 0.1},
    {"id_dropout": 0.5}, {"method": "concat", "id_dropout": 0.5}, {"id_dropout": 0.5, "synergy_contrast": True},
    {"lambda_id_align": 0.1}, {"lambda_id_align": 0.1, "synergy_contrast": True, "lambda_synergy": 0.0},
    {"loss_on": "prediction", "loss_user_fraction": 0.5},
])
def test_every_variant_builds_and_trains_a_step(prism):
    model = make(prism)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    b = batch()
    first = model.training_loss(b).total
    first.backward()
    opt.step()
    assert torch.isfinite(first)
    parts = set(model.training_loss(b).parts)
    if prism.get("method", "prism") != "prism" or prism.get("lambda_unique") == 0.0:
        assert parts == ({"rec", "L_transition"} if prism.get("lambda_transition") else {"rec"})
    assert ("L_transition" in parts) == bool(prism.get("lambda_transition"))


@pytest.mark.parametrize("m", [2, 3])
def test_naive_fusers_compute_what_their_names_say(m):
    """The naive-fusion baselines on (P, M, D) modality embeddings: sum and mean over the modalities;
    gated = sum_m a_m e_m with a = softmax over the M modalities of v^T tanh(W e_m), written out here
    per modality; concat = its MLP on the modalities laid side by side."""
    g = torch.Generator().manual_seed(3)
    modal = torch.randn(5, m, D, generator=g)
    same = modal[:, :1].expand(-1, m, -1)  # every modality carries the same vector
    fusers = {method: make({"method": method}, m=m).item_input.fuser for method in ("sum", "mean", "gated", "concat")}
    with torch.no_grad():
        torch.testing.assert_close(fusers["sum"].item_part(modal), sum(modal[:, k] for k in range(m)))
        torch.testing.assert_close(fusers["mean"].item_part(modal), sum(modal[:, k] for k in range(m)) / m)
        gated = fusers["gated"]
        scores = torch.stack([gated.score(torch.tanh(gated.proj(modal[:, k])))[:, 0] for k in range(m)], dim=1)
        a = torch.exp(scores) / torch.exp(scores).sum(dim=1, keepdim=True)  # (P, M)
        assert not torch.allclose(a, torch.full_like(a, 1 / m), atol=1e-3)  # the weights differ per modality
        torch.testing.assert_close(gated.item_part(modal), (a.unsqueeze(-1) * modal).sum(dim=1))
        torch.testing.assert_close(gated.item_part(same), modal[:, 0])  # a convex combination
        concat = fusers["concat"]
        torch.testing.assert_close(concat.item_part(modal), concat.mlp(torch.cat(list(modal.unbind(1)), dim=-1)))
        swapped = modal.flip(1)  # concat sees which modality is which; sum / mean / gated do not
        assert not torch.allclose(concat.item_part(swapped), concat.item_part(modal))
        torch.testing.assert_close(fusers["gated"].item_part(swapped), fusers["gated"].item_part(modal))


def test_content_gate_is_causal_in_the_unit_interval_and_closed_leaves_the_id_path():
    model = make({"content_gate": True}).eval()
    mm = model.item_input
    b = batch()
    g = mm.content_gates(b.item_seq)  # (B, L)
    assert g.shape == (4, L) and bool(((g > 0) & (g < 1)).all())
    out = model(b.item_seq)
    for t in range(5, L - 1):  # changing item t + 1 changes neither the gate nor the output at <= t
        seq2 = b.item_seq.clone()
        seq2[:, t + 1] = (seq2[:, t + 1] % N) + 1
        assert torch.allclose(g[:, :t + 1], mm.content_gates(seq2)[:, :t + 1], atol=1e-6)
        assert torch.allclose(out[:, :t + 1], model(seq2)[:, :t + 1], atol=1e-6)
    padded = torch.cat([torch.zeros(4, 3, dtype=torch.long), b.item_seq], 1)  # left padding is invisible
    assert torch.allclose(mm.content_gates(padded)[:, 3:][b.item_seq != 0], g[b.item_seq != 0], atol=1e-6)
    with torch.no_grad():  # a closed gate: the input is the ID embedding alone
        mm.content_gate.mlp[-1].bias.fill_(-1e4)
    closed = mm(b.item_seq)
    assert torch.allclose(closed, mm.id_input(b.item_seq), atol=1e-6)
    with torch.no_grad():  # a wide-open gate: the ungated input
        mm.content_gate.mlp[-1].bias.fill_(1e4)
    ungated = make().eval().item_input
    ungated.load_state_dict({k: v for k, v in mm.state_dict().items() if "content_gate" not in k})
    assert torch.allclose(mm(b.item_seq), ungated(b.item_seq), atol=1e-6)


def test_content_gate_learns_from_the_recommendation_loss():
    model = make({"content_gate": True})
    model.training_loss(batch()).total.backward()
    gate = model.item_input.content_gate
    assert gate.mlp[0].weight.grad.abs().sum() > 0 and gate.mlp[-1].bias.grad.abs().sum() > 0
    assert make().item_input.content_gate is None
    assert not any("content_gate" in n for n, _ in make().named_parameters())


def test_ablation_graphs_differ_not_flags():
    uniform = make({"fusion": "uniform"})
    assert not any("fusion.mlp" in n for n, _ in uniform.named_parameters())
    concat = make({"method": "concat"})
    assert not any("experts" in n for n, _ in concat.named_parameters())


def test_state_round_trip(tmp_path):
    model = make()
    save_weights(model, tmp_path)
    other = make(seed=5)
    load_weights(other, tmp_path)
    seq = batch().item_seq
    model.eval(), other.eval()
    assert torch.equal(model(seq), other(seq))
    assert "modalities.values_0" not in dict(model.state_dict())  # features come from data, not weights


def test_missing_modality_uses_learned_embedding_not_the_row():
    model = make(missing=(7,)).eval()
    mm = model.item_input.modalities
    seq = torch.tensor([[7, 8]])
    before = mm(seq)
    assert torch.equal(before[0, 0, 0], mm.missing[0]) and torch.equal(before[0, 0, 1], mm.missing[1])
    mm.values_0[7] += 100.0  # the feature row of a missing item is never read
    assert torch.equal(mm(seq), before)
    assert not torch.equal(before[0, 1, 0], mm.missing[0])


def test_unimodal_views_keep_one_modality():
    torch.manual_seed(0)
    modal = torch.randn(50, 3, 4)
    views = unimodal_views(modal, "random")
    for m in range(3):
        assert torch.equal(views[m, :, m], modal[:, m])
        for o in set(range(3)) - {m}:
            assert not torch.allclose(views[m, :, o], modal[:, o])
    zero = unimodal_views(modal, "zero")
    assert torch.count_nonzero(zero[0, :, 1:]) == 0
    mean = unimodal_views(modal, "mean")
    assert torch.allclose(mean[1, 3, 0], modal[:, 0].mean(0))
    # random replacement follows the replaced modality's statistics
    big = torch.randn(4000, 2, 3) * torch.tensor([1.0, 5.0]).view(1, 2, 1) + 2.0
    r = unimodal_views(big, "random")[0, :, 1]
    assert abs(r.std().item() - 5.0) < 0.3 and abs(r.mean().item() - 2.0) < 0.3


def test_masking_statistics_per_modality_leave_out_the_rows_that_lack_it():
    from prismrec.prism.masking import replacement
    torch.manual_seed(0)
    modal = torch.randn(3000, 2, 3) * 2.0 + 1.0
    rows = torch.ones(3000, 2, dtype=torch.bool)
    modal[:1000, 1] = 50.0  # a placeholder for 1000 items without modality 1
    rows[:1000, 1] = False
    mean = replacement(modal, "mean", rows)
    assert torch.allclose(mean[0, 0], modal[:, 0].mean(0), atol=1e-5)
    assert torch.allclose(mean[0, 1], modal[1000:, 1].mean(0), atol=1e-5)
    r = replacement(modal, "random", rows)[:, 1]
    assert abs(r.std().item() - 2.0) < 0.2 and abs(r.mean().item() - 1.0) < 0.2
    # all rows kept per modality = the plain statistics; one row = std 1, none = mean 0
    everyone = torch.ones(3000, 2, dtype=torch.bool)
    assert torch.allclose(replacement(modal, "mean", everyone), replacement(modal, "mean"), atol=1e-4)
    one = torch.zeros(3000, 2, dtype=torch.bool)
    one[5, 0] = True
    torch.manual_seed(1)
    r = replacement(modal, "random", one)
    assert torch.allclose(r[:, 0].std(0), torch.ones(3), atol=0.1)
    assert torch.allclose(replacement(modal, "mean", one)[0, 1], torch.zeros(3))


def test_interaction_losses_by_hand():
    a = torch.tensor([[1.0, 0.0]])
    same, orth, opp = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[-1.0, 0.0]])
    # cosine distances: d(a, same) = 0, d(a, orth) = 1, d(a, opp) = 2
    assert triplet_loss(a, same, opp, 0.5).item() == 0.0
    assert triplet_loss(a, orth, same, 0.5).item() == pytest.approx(1.5)
    views = torch.stack([same, orth])  # (M=2, P=1, 2)
    assert synergy_loss(a, views).item() == pytest.approx(0.5)
    assert redundancy_loss(a, views).item() == pytest.approx(0.5)
    full = a.unsqueeze(1).repeat(1, 2, 1)  # (P, E=2, X)
    v = torch.stack([same, orth]).unsqueeze(2).repeat(1, 1, 2, 1)  # (M, P, E, X)
    out = interaction_losses(full, v, ["unique_image", "synergy"], ["image", "text"],
                             {"unique_image": 0.2, "synergy": 1.0}, margin=0.5)
    # unique_image: Triplet(a, view_image=same, view_text=orth) = max(0, .5 + 0 - 1) = 0
    assert out["L_unique_image"].item() == 0.0 and out["L_synergy"].item() == pytest.approx(0.5)


def test_per_modality_lambda_override():
    model = make({"lambda_unique": 0.3, "lambda_unique_per_modality": {"text": 0.05}})
    assert model.item_input.fuser.loss_weights == {"unique_image": 0.3, "unique_text": 0.05,
                                                   "synergy": 0.1, "redundancy": 0.1}


def test_prism_needs_two_modalities():
    from prismrec.config import ConfigError
    cfg = ModelConfig(hidden_dim=D, num_layers=1, num_heads=2, prism=PRISMConfig(enabled=True))
    with pytest.raises(ConfigError, match="at least 2 modalities"):
        build_model(cfg, N, L, "ce", {"text": features()["text"]})


def test_unknown_dropped_expert_is_config_error():
    from prismrec.config import ConfigError
    with pytest.raises(ConfigError):
        build_config(overrides=["model.prism.drop_experts=[vision]"])
    with pytest.raises(ConfigError, match="no expert"):
        make({"drop_experts": ("unique_audio",)})


@pytest.mark.parametrize("method", ["concat", "sum", "mean", "gated"])
@pytest.mark.parametrize("option", ["model.prism.drop_experts=[synergy]", "model.prism.fusion=uniform",
                                    "model.prism.loss_on=prediction"])
def test_prism_only_options_are_refused_for_naive_fusions(method, option):
    # a naive fusion has no experts, fusion layer or interaction losses: such an option would do nothing
    from prismrec.config import ConfigError
    with pytest.raises(ConfigError, match="applies only to model.prism.method=prism"):
        build_config(overrides=[f"model.prism.method={method}", option])
    build_config(overrides=["model.prism.method=prism", option])  # fine where it applies


def test_output_content_changes_the_item_table_but_not_padding():
    model = make({"output_content": True})
    table = model.item_input.output_embeddings()
    assert torch.count_nonzero(table[0]) == 0
    assert not torch.allclose(table[1:], model.item_input.id_input.output_embeddings()[1:])


def test_user_output_fusion_scores_are_the_per_user_weighted_expert_similarities():
    model = make({"output_content": True, "output_fusion": "user"}).eval()
    mm = model.item_input
    h = torch.randn(3, D)
    w = mm.output_fusion_weights(h)  # (3, E)
    assert torch.allclose(w.sum(-1), torch.ones(3))
    items = torch.arange(N + 1)
    experts = mm.content_norm(mm.fuser.expert_outputs(mm.modalities(items)))  # (N + 1, E, D)
    ids = mm.id_input.output_embeddings()
    expected = h @ ids.T + torch.einsum("be,bd,ned->bn", w, h, experts)
    scores = model.score(h)
    assert torch.allclose(scores[:, 1:], expected[:, 1:], atol=1e-5)
    assert torch.allclose(scores[:, 0], torch.zeros(3))  # padding row of the keys is zero
    assert torch.allclose(model.real_item_scores(h), scores[:, 1:], atol=1e-5)
    assert torch.allclose(model.score_items(h, torch.tensor([4, 5, 6])), scores[torch.arange(3), [4, 5, 6]], atol=1e-5)
    assert mm.output_embeddings().shape == (N + 1, D)  # the shared table keeps the hidden size
    # a different user representation re-weights the experts: weights depend on h
    assert not torch.allclose(mm.output_fusion_weights(h), mm.output_fusion_weights(torch.randn(3, D)))


def test_user_output_fusion_needs_prism_output_content_and_a_dot_product_backbone():
    from prismrec.config import ConfigError
    with pytest.raises(ConfigError, match="output_fusion=user needs"):
        build_config(overrides=["model.prism.output_fusion=user"])
    with pytest.raises(ConfigError, match="output_fusion=user needs"):
        build_config(overrides=["model.prism.output_fusion=user", "model.prism.output_content=true",
                                "model.prism.method=sum"])
    cfg = ModelConfig(backbone="stosa", hidden_dim=D, num_layers=1, num_heads=2,
                      prism=PRISMConfig(enabled=True, output_content=True, output_fusion="user"))
    with pytest.raises(ConfigError, match="STOSA"):
        build_model(cfg, N, L, "ce", features())


@pytest.mark.parametrize("prism", [{}, {"output_content": True}, {"output_content": True, "method": "concat"},
                                   {"output_content": True, "output_fusion": "user"}])
def test_keys_of_requested_items_match_rows_of_the_full_table(prism):
    model = make(prism).eval()
    items = torch.tensor([[3, 0, 7], [7, 12, 3]])
    full = model.item_input.output_keys()
    assert torch.allclose(model.item_input.output_keys(items), full[items], atol=1e-6)
    assert torch.count_nonzero(full[0]) == 0
    table = model.item_input.output_embeddings()
    assert table.shape == (N + 1, D)
    assert torch.allclose(model.item_input.output_embeddings(items), table[items], atol=1e-6)


@pytest.mark.parametrize("scope", ["causal", "sequence"])
@pytest.mark.parametrize("combine", ["add", "concat"])
def test_per_item_forward_equals_the_per_position_definition(scope, combine):
    """The item input runs experts and the fusion MLP's first layer once per distinct item; the result
    must equal Eqs. 10-11 evaluated at every position."""
    model = make({"fusion_scope": scope, "combine": combine})
    model.eval()
    mm, seq = model.item_input, batch().item_seq
    with torch.no_grad():
        modal, id_emb, real = mm.modalities(seq), mm.id_input(seq), seq != 0
        experts = mm.fuser.expert_outputs(modal)  # (B, L, E, D) at every position
        fusion = mm.fuser.fusion  # Eq. 10 per position: MLP over the pooled [e_1 .. e_E, e_id]
        pooled = pooled_context(torch.cat([experts.flatten(-2), id_emb], dim=-1), real, scope)
        w = torch.softmax(fusion.mlp(pooled) / fusion.temperature, dim=-1)  # (B, L, E)
        torch.testing.assert_close(mm.fusion_weights(seq), w, rtol=1e-5, atol=1e-6)  # introspection path
        fused = (w.unsqueeze(-1) * experts).sum(dim=-2)
        expected = mm.combine(id_emb, mm.content_norm(fused))
        torch.testing.assert_close(mm(seq), expected, rtol=1e-5, atol=1e-6)


def test_interaction_losses_reuse_the_forward_expert_outputs_exactly():
    model = make({"masking": "zero"})  # deterministic views: both paths must agree exactly
    model.train()
    b = batch()
    with_reuse = model.training_loss(b).parts
    model.item_input._batch_items = None  # what a call without a preceding forward on this batch sees
    ctx = model._aux_context(b, b.item_seq != 0)
    recomputed = model.item_input.auxiliary_losses(ctx)
    assert set(recomputed) == {k for k in with_reuse if k.startswith("L_")} and recomputed
    for k, v in recomputed.items():
        torch.testing.assert_close(v.detach(), with_reuse[k], rtol=1e-5, atol=1e-6)
    assert model.item_input._batch_items is None  # consumed, not kept past the loss


def test_forward_on_another_batch_is_not_reused():
    model = make({"masking": "zero"})
    model.train()
    b1, b2 = batch(1), batch(2)
    model(b2.item_seq)  # leaves batch 2's expert outputs behind
    ctx = model._aux_context(b1, b1.item_seq != 0)
    fresh = make({"masking": "zero"})
    fresh.train()
    expected = fresh.item_input.auxiliary_losses(fresh._aux_context(b1, b1.item_seq != 0))
    got = model.item_input.auxiliary_losses(ctx)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k])


@pytest.mark.parametrize("m", [2, 3])
def test_synergy_contrast_removes_every_additive_function(m):
    """A one-layer (linear, hence additive) synergy expert carries nothing under synergy_contrast."""
    model = make({"synergy_contrast": True, "expert_layers": 1}, m=m)
    model.eval()
    mm = model.item_input
    items = torch.arange(1, N + 1)
    with torch.no_grad():
        out = mm.expert_embeddings(items)  # (N, E, D)
    s = mm.expert_names.index("synergy")
    assert out[:, s].abs().max() < 1e-5
    assert out[:, :s].abs().max() > 1e-2  # the other experts are untouched


def test_synergy_contrast_is_the_double_difference_for_two_modalities():
    model = make({"synergy_contrast": True, "expert_layers": 2})
    model.eval()
    mm = model.item_input
    items = torch.arange(1, N + 1)
    with torch.no_grad():
        modal = mm.modalities(items)  # (N, 2, D)
        mu = mm.modalities.reference()  # (2, D)
        s = mm.expert_names.index("synergy")
        f = lambda x1, x2: mm.fuser.experts(torch.cat([x1, x2], dim=-1))[..., s, :]  # noqa: E731
        x1, x2 = modal[:, 0], modal[:, 1]
        m1, m2 = mu[0].expand_as(x1), mu[1].expand_as(x2)
        expected = f(x1, x2) - f(x1, m2) - f(m1, x2) + f(m1, m2)
        got = mm.expert_embeddings(items)[:, s]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert expected.abs().max() > 1e-3  # a non-linear expert keeps an interaction part


def test_synergy_contrast_needs_the_synergy_expert():
    from prismrec.config import ConfigError
    with pytest.raises(ConfigError, match="synergy_contrast"):
        PRISMConfig(enabled=True, synergy_contrast=True, drop_experts=("synergy",))


def test_consecutive_pairs_skip_padding_and_map_to_rows():
    seq = torch.tensor([[0, 0, 7, 3, 9], [0, 4, 7, 0, 0]])  # a row may hold padding only on the left
    items = torch.unique(seq)  # [0, 3, 4, 7, 9]
    first, second = consecutive_pairs(seq, items)
    pairs = list(zip(items[first].tolist(), items[second].tolist()))
    assert pairs == [(7, 3), (3, 9), (4, 7)]


def test_transition_loss_rewards_embeddings_that_pick_out_the_next_item():
    U, E, D = 6, 2, 8
    first, second = torch.tensor([0, 2, 4]), torch.tensor([1, 3, 5])
    basis = torch.eye(D)
    paired = torch.stack([basis[0], basis[0], basis[1], basis[1], basis[2], basis[2]])  # pairs share a direction
    good = paired.unsqueeze(1).expand(U, E, D)
    bad = torch.stack([basis[i] for i in range(U)]).unsqueeze(1).expand(U, E, D)  # all orthogonal
    low, high = transition_loss(good, first, second, 0.1), transition_loss(bad, first, second, 0.1)
    assert low < 1e-3  # the partner is found with certainty; the first item itself is not a candidate
    assert high == pytest.approx(torch.log(torch.tensor(U - 1.0)).item(), rel=1e-5)  # uniform over the 5 others
    # a repeat (the item follows itself) keeps its own column as the answer
    assert transition_loss(bad, torch.tensor([0]), torch.tensor([0]), 0.1) < 1e-3


def test_transition_loss_never_picks_a_row_outside_the_candidates():
    U, E, D = 6, 2, 8
    bad = torch.eye(D)[:U].unsqueeze(1).expand(U, E, D)  # all orthogonal: uniform over the candidates
    first, second = torch.tensor([1, 3]), torch.tensor([2, 4])
    candidates = torch.tensor([False, True, True, True, True, True])  # row 0 = the padding row
    loss = transition_loss(bad, first, second, 0.1, candidates=candidates)
    assert loss == pytest.approx(torch.log(torch.tensor(U - 2.0)).item(), rel=1e-5)  # 4 others, not 5
    # a padding row identical to the first items would otherwise be the hardest negative
    lure = bad.clone()
    lure[0] = bad[1] + bad[3]
    torch.testing.assert_close(transition_loss(lure, first, second, 0.1, candidates=candidates), loss)
    assert transition_loss(lure, first, second, 0.1) > loss + 0.1


def test_model_transition_loss_leaves_out_the_padding_row():
    model = make({"lambda_transition": 0.1, "lambda_unique": 0.0, "lambda_synergy": 0.0,
                  "lambda_redundancy": 0.0})
    model.train()
    b = batch()  # row 0 is left-padded, so the step's distinct items include PAD_ID
    got = model.training_loss(b).parts["L_transition"]
    items = torch.unique(b.item_seq)
    assert items[0] == 0
    per_item = model.item_input.fuser.expert_outputs(model.item_input.modalities(items))  # (U, E, D)
    first, second = consecutive_pairs(b.item_seq, items)
    expected = 0.1 * transition_loss(per_item[1:], first - 1, second - 1, 0.1)  # the real items only
    torch.testing.assert_close(got, expected.detach(), rtol=1e-5, atol=1e-6)


def test_transition_loss_needs_representation_level_prism():
    from prismrec.config import ConfigError
    with pytest.raises(ConfigError, match="lambda_transition"):
        PRISMConfig(enabled=True, lambda_transition=0.1, loss_on="prediction")
    with pytest.raises(ConfigError, match="lambda_transition"):
        PRISMConfig(enabled=True, lambda_transition=0.1, method="concat")


def _item_level_losses(model, items):
    fuser = model.item_input.fuser
    modal = model.item_input.modalities(items)
    return fuser.item_losses(items, modal, fuser.expert_outputs(modal), model.item_input.id_input(items),
                             item_seq=items[None])


def test_loss_items_at_or_above_the_step_items_is_the_full_loss():
    items = torch.arange(0, 13)  # PAD_ID + 12 real items
    full = _item_level_losses(make({"masking": "mean"}), items)
    for n in (12, 500):
        got = _item_level_losses(make({"masking": "mean", "loss_items": n}), items)
        assert set(got) == set(full) and full
        for k in full:
            torch.testing.assert_close(got[k], full[k])


def test_loss_items_sample_is_an_unbiased_estimate_of_the_full_loss():
    items = torch.arange(1, 9)  # 8 real items, samples of 3
    full = {k: v.item() for k, v in _item_level_losses(make({"masking": "mean"}), items).items()}
    model = make({"masking": "mean", "loss_items": 3})
    torch.manual_seed(5)
    with torch.no_grad():
        draws = [_item_level_losses(model, items) for _ in range(1000)]
    for k, v in full.items():
        values = torch.tensor([d[k].item() for d in draws])
        assert values.std() > 0.02 * abs(v)  # a different sample each call
        assert abs(values.mean().item() - v) < 0.03 * abs(v) + 1e-4, k


def test_loss_items_needs_representation_level_prism():
    from prismrec.config import ConfigError
    with pytest.raises(ConfigError, match="loss_items"):
        PRISMConfig(enabled=True, loss_items=64, loss_on="prediction")
    with pytest.raises(ConfigError, match="loss_items"):
        PRISMConfig(enabled=True, loss_items=-1)


def _left_pad(b: TrainBatch, k: int) -> TrainBatch:
    pad = lambda x: torch.cat([torch.zeros(x.shape[0], k, dtype=x.dtype), x], dim=1)  # noqa: E731
    return TrainBatch(pad(b.item_seq), pad(b.targets), pad(b.negatives))


@pytest.mark.parametrize("masking", ["mean", "zero"])
def test_prediction_level_losses_ignore_padding(masking):
    """loss_on=prediction: more left padding (same histories) changes neither the recommendation loss
    nor the interaction losses; the masking statistics come from real positions only."""
    torch.manual_seed(0)
    cfg = ModelConfig(hidden_dim=D, num_layers=1, num_heads=2, dropout=0.0,
                      prism=PRISMConfig(enabled=True, expert_dropout=0.0, fusion_dropout=0.0,
                                        loss_on="prediction", masking=masking))
    model = build_model(cfg, N, L + 3, "ce", features()).train()
    b = batch()
    with torch.no_grad():
        short, padded = model.training_loss(_left_pad(b, 0)).parts, model.training_loss(_left_pad(b, 3)).parts
    assert {k for k in short if k.startswith("L_")} == {"L_unique_image", "L_unique_text", "L_synergy", "L_redundancy"}
    for k in short:
        torch.testing.assert_close(padded[k], short[k], rtol=1e-4, atol=1e-6)


def test_prediction_level_losses_score_the_batch_targets():
    model = make({"loss_on": "prediction"}).train()
    b = batch()
    seen = []
    scores = model.candidate_scores

    def spy(hidden, items):
        seen.append(items)
        return scores(hidden, items)

    model.candidate_scores = spy
    model.training_loss(b)
    assert seen, "the prediction-level losses never scored candidates"
    expected = torch.unique(b.targets[b.targets != 0])
    for items in seen:
        torch.testing.assert_close(items, expected)


def test_id_dropout_hides_the_id_embedding_of_some_positions_in_training_only():
    model = make({"id_dropout": 0.5})
    ii = model.item_input
    g = torch.Generator().manual_seed(3)
    seq = torch.randint(1, N + 1, (64, L), generator=g)  # no padding
    with torch.no_grad():
        full = ii.eval()(seq)  # (B, L, D): ID + content everywhere
        id_emb = ii.id_input(seq)
        torch.manual_seed(0)
        train = ii.train()(seq)
    kept = torch.isclose(train, full, atol=1e-6).all(-1)
    dropped = torch.isclose(train, full - id_emb, atol=1e-6).all(-1)
    assert bool((kept ^ dropped).all())  # every position: ID in full, or no ID at all
    assert 0.4 < dropped.float().mean().item() < 0.6
    assert torch.allclose(ii.eval()(seq), full)  # evaluation never drops


def test_id_dropout_must_be_a_probability():
    with pytest.raises(Exception, match="id_dropout"):
        PRISMConfig(enabled=True, id_dropout=1.0)


def test_id_alignment_loss_rewards_experts_that_point_at_their_own_id():
    from prismrec.prism.losses import id_alignment_loss

    g = torch.Generator().manual_seed(0)
    ids = torch.randn(12, D, generator=g)
    aligned = ids[:, None, :].expand(12, 3, D) * 2.0  # every expert = its item's ID direction
    shuffled = aligned[torch.roll(torch.arange(12), 1)]
    noise = torch.randn(12, 3, D, generator=g)
    a, s, n = (id_alignment_loss(x, ids, 0.1).item() for x in (aligned, shuffled, noise))
    assert a < n < s  # own ID < unrelated < someone else's ID
    assert a < 0.5 < math.log(12) < n  # random directions do no better than chance


def test_id_alignment_loss_is_reported_and_reaches_the_experts_not_the_ids():
    model = make({"lambda_id_align": 0.5, "lambda_unique": 0.0, "lambda_synergy": 0.0, "lambda_redundancy": 0.0})
    model.train()
    out = model.training_loss(batch())
    assert set(k for k in out.parts if k.startswith("L_")) == {"L_id_align"}
    model.zero_grad()
    ctx = model._aux_context(batch(), batch().item_seq != 0)
    model.item_input._batch_items = None
    loss = model.item_input.auxiliary_losses(ctx)["L_id_align"]
    loss.backward()
    assert model.item_input.fuser.experts.weights[0].grad.abs().sum() > 0
    id_grad = model.item_input.id_input.embedding.weight.grad
    assert id_grad is None or id_grad.abs().sum() == 0  # the IDs are a target, not pulled to content


def test_id_alignment_needs_representation_level_prism():
    with pytest.raises(Exception, match="lambda_id_align"):
        PRISMConfig(enabled=True, lambda_id_align=0.1, loss_on="prediction")


def test_uniform_mix_schedule_falls_linearly_from_equal_weights_to_the_floor():
    from prismrec.prism.fusion import UniformMix

    mix = UniformMix(floor=0.2, warmup_epochs=4)
    assert [mix.alpha_at(e) for e in (0, 1, 2, 3, 4, 5, 9)] == pytest.approx([1.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.2])
    assert UniformMix(floor=0.3, warmup_epochs=0).alpha_at(1) == pytest.approx(0.3)
    w = torch.softmax(torch.randn(5, 3, 4), dim=-1)
    mix.set_epoch(3)  # alpha = 0.6
    mixed = mix(w)
    assert torch.allclose(mixed, 0.6 / 4 + 0.4 * w)
    assert torch.allclose(mixed.sum(-1), torch.ones(5, 3))
    mix.set_epoch(9)
    assert bool((mix(w) >= 0.2 / 4 - 1e-7).all())  # the floor: every expert keeps alpha / E


def test_fusion_warmup_starts_at_equal_weights_in_both_fusion_layers_and_follows_the_epoch():
    model = make({"fusion_warmup_epochs": 2, "output_content": True, "output_fusion": "user"}).eval()
    ii, seq = model.item_input, batch().item_seq
    with torch.no_grad():
        assert torch.allclose(ii.fusion_weights(seq), torch.full((4, L, 4), 0.25))  # before training: alpha = 1
        assert torch.allclose(ii.output_fusion_weights(model(seq)), torch.full((4, L, 4), 0.25))
        model.on_epoch_start(3, None, torch.device("cpu"))  # past the warm-up, floor 0: the learned softmax
        learned = ii.fusion_weights(seq)
        assert not torch.allclose(learned, torch.full_like(learned, 0.25))
        alphas = [m.alpha.item() for m in ii.modules() if type(m).__name__ == "UniformMix"]
    assert alphas == [0.0, 0.0]


def test_fusion_schedule_is_saved_with_the_weights_and_off_adds_no_state(tmp_path):
    assert not any(k.endswith("mix.alpha") for k in make().state_dict())  # old checkpoints still load
    from prismrec.config import ModelConfig as MC
    from prismrec.prism.config import PRISMConfig as PC

    cfg = MC(backbone="stosa", hidden_dim=D, num_layers=1, num_heads=2, dropout=0.0,
             prism=PC(enabled=True, fusion_warmup_epochs=3, fusion_floor=0.1))
    torch.manual_seed(0)
    model = build_model(cfg, N, L, "ce", features())
    model.on_epoch_start(2, None, torch.device("cpu"))
    save_weights(model, tmp_path)  # the covariance stream shares the fusion layer and its schedule
    torch.manual_seed(1)
    other = build_model(cfg, N, L, "ce", features())
    load_weights(other, tmp_path)
    assert other.item_input.fuser.fusion.mix.alpha.item() == pytest.approx(0.1 + 0.9 * 2 / 3)
    seq = batch().item_seq
    with torch.no_grad():
        assert torch.equal(model.eval().full_sort_scores(seq), other.eval().full_sort_scores(seq))


@pytest.mark.parametrize("bad, match", [({"fusion_floor": 1.0}, "fusion_floor"),
                                        ({"fusion_warmup_epochs": -1}, "fusion_warmup_epochs"),
                                        ({"fusion_warmup_epochs": 3, "method": "concat"}, "learned fusion"),
                                        ({"fusion_floor": 0.2, "fusion": "uniform"}, "learned fusion")])
def test_fusion_schedule_settings_are_checked(bad, match):
    with pytest.raises(Exception, match=match):
        PRISMConfig(enabled=True, **bad)


def test_fusion_balance_loss_is_the_squared_cv_of_expert_importance_over_real_positions():
    from prismrec.prism.losses import fusion_balance_loss

    mask = torch.tensor([[False, True, True], [True, True, True]])
    uniform = torch.full((2, 3, 4), 0.25)
    assert fusion_balance_loss(uniform, mask).item() == pytest.approx(0.0, abs=1e-6)
    one_hot = torch.zeros(2, 3, 4)
    one_hot[..., 2] = 1.0
    assert fusion_balance_loss(one_hot, mask).item() == pytest.approx(3.0)  # E - 1: one expert takes all
    # four real positions on expert 0, one on expert 1 -> importance (0.8, 0.2, 0, 0)
    routed = torch.zeros(2, 3, 4)
    routed[0, :, 0] = routed[1, :2, 0] = 1.0
    routed[1, 2, 1] = 1.0
    routed[0, 0] = torch.tensor([0.0, 0.0, 0.0, 1.0])  # a padding position: must not count
    assert fusion_balance_loss(routed, mask).item() == pytest.approx(4 * (0.8 ** 2 + 0.2 ** 2) - 1)
    padding_only = fusion_balance_loss(one_hot, torch.zeros(2, 3, dtype=torch.bool))
    assert padding_only.item() == 0.0


def test_fusion_balance_loss_reaches_the_fusion_layer_and_is_reported():
    model = make({"lambda_fusion_balance": 1.0, "lambda_unique": 0.0, "lambda_synergy": 0.0,
                  "lambda_redundancy": 0.0}).train()
    out = model.training_loss(batch())
    assert set(k for k in out.parts if k.startswith("L_")) == {"L_fusion_balance"}
    b = batch()
    model.zero_grad()
    model(b.item_seq)
    loss = model.item_input.auxiliary_losses(model._aux_context(b, b.item_seq != 0))["L_fusion_balance"]
    assert loss.item() > 0
    loss.backward()
    assert model.item_input.fuser.fusion.mlp[-1].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        model(b.item_seq)
    assert model.item_input.auxiliary_losses(model._aux_context(b, b.item_seq != 0)) == {}  # no stale weights


def test_fusion_balance_needs_learned_prism_fusion():
    with pytest.raises(Exception, match="lambda_fusion_balance"):
        PRISMConfig(enabled=True, lambda_fusion_balance=0.1, fusion="uniform")
    with pytest.raises(Exception, match="lambda_fusion_balance"):
        PRISMConfig(enabled=True, lambda_fusion_balance=-1.0)


@pytest.mark.parametrize("lead", [(), (7,), (3, 5)])
def test_experts_forward_is_each_expert_as_its_own_mlp(lead):
    from prismrec.prism.experts import InteractionExperts

    torch.manual_seed(0)
    ex = InteractionExperts(["a", "b", "c"], 6, 5, 4, layers=3, dropout=0.5).eval()
    x = torch.randn(*lead, 6)
    out = ex(x)
    assert out.shape == (*lead, 3, 4)
    for e in range(3):  # an independent plain MLP per expert (nn.Linear semantics: x @ W + b)
        h = x
        for i, (w, b) in enumerate(zip(ex.weights, ex.biases)):
            h = h @ w[e] + b[e]
            if i < len(ex.weights) - 1:
                h = torch.nn.functional.gelu(h)
        torch.testing.assert_close(out[..., e, :], h, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ex.single(x, e), h, atol=1e-5, rtol=1e-5)
    # in training the dropout is applied (outputs change) and every expert's weights get a gradient
    ex.train()
    y = ex(x)
    assert not torch.allclose(y, out)
    y.square().sum().backward()
    assert all(w.grad is not None and bool((w.grad.flatten(1).abs().sum(1) > 0).all()) for w in ex.weights)


def test_interaction_losses_leave_out_the_views_of_missing_modalities():
    from prismrec.prism.losses import interaction_losses
    g = torch.Generator().manual_seed(3)
    M, P, E, X = 3, 6, 5, 4
    experts = ["unique_image", "unique_text", "unique_audio", "synergy", "redundancy"]
    modalities = ["image", "text", "audio"]
    weights = dict.fromkeys(experts, 1.0)
    full, views = torch.randn(P, E, X, generator=g), torch.randn(M, P, E, X, generator=g)
    plain = interaction_losses(full, views, experts, modalities, weights, 0.5)
    everything = interaction_losses(full, views, experts, modalities, weights, 0.5,
                                    present=torch.ones(M, P, dtype=torch.bool))
    assert all(torch.allclose(plain[k], everything[k]) for k in plain)
    present = torch.ones(M, P, dtype=torch.bool)
    present[1, 2] = False  # item 2 has no text
    losses = interaction_losses(full, views, experts, modalities, weights, 0.5, present)
    moved = views.clone()
    moved[1, 2] += 10.0 * torch.randn(E, X, generator=g)  # what that item's text-only view holds
    again = interaction_losses(full, moved, experts, modalities, weights, 0.5, present)
    assert all(torch.allclose(losses[k], again[k]) for k in losses)  # enters no loss
    assert not torch.allclose(plain["L_unique_text"], interaction_losses(
        full, moved, experts, modalities, weights, 0.5)["L_unique_text"])  # ... as it would without `present`
    # the other items and views still count: unique_text over the 5 items that have text
    keep = torch.arange(P) != 2
    sub = interaction_losses(full[keep], views[:, keep], experts, modalities, weights, 0.5)
    assert torch.allclose(losses["L_unique_text"], sub["L_unique_text"])
    # synergy: mean over the kept (view, item) pairs
    cos = torch.nn.functional.cosine_similarity(full[:, 3].unsqueeze(0), views[:, :, 3], dim=-1)  # (M, P)
    assert torch.allclose(losses["L_synergy"], cos[present].mean())
    assert torch.allclose(losses["L_redundancy"], 1 - torch.nn.functional.cosine_similarity(
        full[:, 4].unsqueeze(0), views[:, :, 4], dim=-1)[present].mean())


def test_presence_reaches_the_representation_losses_only_when_a_modality_is_missing():
    assert make().item_input.fuser.presence(torch.tensor([1, 2])) is None  # nothing missing: plain means
    feats = features()
    feats["text"][1][5] = False  # item 5 has an image but no text
    cfg = ModelConfig(hidden_dim=D, num_layers=1, num_heads=2, dropout=0.0,
                      prism=PRISMConfig(enabled=True, expert_dropout=0.0, fusion_dropout=0.0))
    model = build_model(cfg, N, L, "ce", feats)
    assert model.item_input.fuser.presence(torch.tensor([4, 5])).tolist() == [[True, True], [True, False]]
    # through the model: item 5's triplets for the text expert all use its text-only view, so none is left
    model.train()
    mm = model.item_input

    def unique_text(item: int) -> float:
        items = torch.tensor([item])
        with torch.no_grad():
            modal = mm.modalities(items)  # (1, M, D)
            return float(mm.fuser.item_losses(items, modal, mm.fuser.expert_outputs(modal), torch.zeros(1, D),
                                              item_seq=items[None])["L_unique_text"])

    assert unique_text(5) == 0.0 and unique_text(4) > 0.0


def _no_padding_batch(B=4, seed=2):
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(1, N + 1, (B, L), generator=g)
    targets = torch.roll(seq, -1, 1)
    targets[:, -1] = 3
    return TrainBatch(seq, targets, torch.randint(1, N + 1, seq.shape, generator=g))


def test_prediction_losses_on_a_user_sample_average_to_the_whole_batch(monkeypatch):
    """loss_user_fraction: the masked views of n of the B users go through the encoder, scored against
    every user's targets; over all n-subsets (equal positions per user, no random masking) the losses
    average to the whole batch's exactly."""
    from itertools import combinations
    b = _no_padding_batch()
    common = {"loss_on": "prediction", "masking": "zero"}
    with torch.no_grad():
        whole = {k: v for k, v in make(common).train().training_loss(b).parts.items() if k.startswith("L_")}
        model = make(common | {"loss_user_fraction": 0.5}).train()
        seen_rows, seen_cand = [], []
        encode, score = model.encode_inputs, model.candidate_scores
        model.encode_inputs = lambda x, seq, *a: (seen_rows.append(x.shape[0]), encode(x, seq, *a))[1]
        model.candidate_scores = lambda h, items: (seen_cand.append(items), score(h, items))[1]
        subsets = list(combinations(range(4), 2))
        sums = dict.fromkeys(whole, 0.0)
        for rows in subsets:
            perm = torch.tensor(list(rows) + [r for r in range(4) if r not in rows])
            monkeypatch.setattr(torch, "randperm", lambda n, device=None, perm=perm: perm)
            parts = model.training_loss(b).parts
            for k in whole:
                sums[k] += parts[k] / len(subsets)
    for k in whole:
        torch.testing.assert_close(sums[k], whole[k], rtol=1e-5, atol=1e-6)
    E, V = 4, 3
    assert seen_rows[:2] == [4, E * V * 2]  # the training forward on all 4 users, the views on 2
    expected = torch.unique(b.targets[b.targets != 0])
    assert all(torch.equal(c, expected) for c in seen_cand)  # candidates: every user's targets


@pytest.mark.parametrize("backbone", ["sasrec", "stosa"])
def test_aux_context_subset_encodes_the_rows_as_the_whole_batch_does(backbone):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone=backbone, hidden_dim=D, num_layers=1, num_heads=2, dropout=0.0,
                      prism=PRISMConfig(enabled=True, expert_dropout=0.0, fusion_dropout=0.0, loss_on="prediction"))
    model = build_model(cfg, N, L, "ce", features()).eval()
    contexts = []
    inputs = [model.item_input] + ([model.cov_input] if backbone == "stosa" else [])
    for item_input in inputs:
        original = item_input.auxiliary_losses
        item_input.auxiliary_losses = lambda ctx, original=original: (contexts.append(ctx), original(ctx))[1]
    with torch.no_grad():
        model.training_loss(batch())
        assert len(contexts) == len(inputs)  # STOSA: one context per stream
        rows = torch.tensor([3, 1])
        for ctx in contexts:
            x = torch.randn(2 * 4, L, D)  # two copies of the batch's rows
            full = ctx.encode(x).reshape(2, 4, L, -1)[:, rows]
            sub = ctx.subset(rows)
            part = sub.encode(x.reshape(2, 4, L, D)[:, rows].reshape(4, L, D)).reshape(2, 2, L, -1)
            torch.testing.assert_close(part, full, rtol=1e-5, atol=1e-6)
            assert torch.equal(sub.item_seq, ctx.item_seq[rows]) and torch.equal(sub.targets, ctx.targets[rows])
            nested = sub.subset(torch.tensor([1]))  # row 1 of the subset = row 1 of the batch
            torch.testing.assert_close(nested.encode(x[1:2]), ctx.encode(x[:4])[1:2], rtol=1e-5, atol=1e-6)


def _scale_expert_output(model, expert: int, factor: float) -> None:
    """Multiply one expert's outputs by ``factor`` (its last layer's weights and bias)."""
    experts = model.item_input.fuser.experts
    with torch.no_grad():
        experts.weights[-1][expert].mul_(factor)
        experts.biases[-1][expert].mul_(factor)


@pytest.mark.parametrize("input_norm", [False, True])
def test_fusion_input_norm_makes_the_weights_blind_to_an_experts_scale(input_norm):
    """Nothing in the losses pins an expert's norm (content_norm, cosine losses), so it can grow; with
    fusion_input_norm the fusion weights depend only on what each input slot holds, not on its scale."""
    model = make({"fusion_input_norm": input_norm}).eval()
    seq = batch().item_seq
    with torch.no_grad():
        before = model.item_input.fusion_weights(seq)
        _scale_expert_output(model, 3, 50.0)  # the redundancy expert, as on Yelp (norm ~300 vs ~9)
        after = model.item_input.fusion_weights(seq)
    real = seq != 0
    change = (before[real] - after[real]).abs().max().item()
    assert (change < 2e-4) if input_norm else (change > 1e-2)  # layer norm's eps leaves ~3e-5 at this scale
    if input_norm:
        assert not torch.allclose(before[real], torch.full_like(before[real], 0.25), atol=1e-3)  # still learned


def test_fusion_input_norm_adds_no_state_and_is_checked():
    assert make({"fusion_input_norm": True}).state_dict().keys() == make().state_dict().keys()
    for bad in ({"method": "concat"}, {"fusion": "uniform"}):
        with pytest.raises(Exception, match="fusion_input_norm"):
            PRISMConfig(enabled=True, fusion_input_norm=True, **bad)


def test_centering_takes_away_the_item_blind_optima_of_the_synergy_and_redundancy_losses():
    """As written, an expert with one constant output satisfies the redundancy loss (0) and one that
    flips the sign for masked views satisfies the synergy loss (-1); after centering neither does."""
    g = torch.Generator().manual_seed(0)
    c, P = torch.randn(1, 1, 8, generator=g), 400
    noise = lambda: 1e-3 * torch.randn(P, 2, 8, generator=g)  # noqa: E731 (float noise, nothing of the item)
    full = c + noise()  # (P, E, X): every item the same vector
    views = torch.stack([c + noise(), c + noise()])  # (M, P, E, X)
    views[:, :, 0] = -views[:, :, 0]  # the synergy expert: the opposite vector for masked inputs
    names, mods, lam = ["synergy", "redundancy"], ["image", "text"], {"synergy": 1.0, "redundancy": 1.0}
    plain = interaction_losses(full, views, names, mods, lam, 0.5)
    assert plain["L_synergy"].item() == pytest.approx(-1.0, abs=1e-4)
    assert plain["L_redundancy"].item() == pytest.approx(0.0, abs=1e-4)
    cent = interaction_losses(full, views, names, mods, lam, 0.5, center=True)
    assert abs(cent["L_synergy"].item()) < 0.1 and cent["L_redundancy"].item() > 0.9
    # item-specific agreement still counts: views that follow the items' own deviations
    dev = torch.randn(P, 2, 8, generator=g)
    follow = interaction_losses(c + dev, torch.stack([c + dev, c + 0.5 * dev]), names, mods, lam, 0.5, center=True)
    assert follow["L_synergy"].item() == pytest.approx(1.0, abs=1e-4)  # what the synergy loss pushes away from
    assert follow["L_redundancy"].item() == pytest.approx(0.0, abs=1e-4)


def test_centering_takes_each_views_mean_over_the_items_that_have_its_modality():
    from prismrec.prism.losses import centered
    full = torch.arange(6.0).reshape(3, 2)
    views = torch.stack([full, full + 10])  # (M, P, X)
    present = torch.tensor([[True, True, True], [True, False, True]])
    f, v = centered(full, views, present)
    assert torch.allclose(f.mean(0), torch.zeros(2))
    assert torch.allclose(v[0].mean(0), torch.zeros(2))
    assert torch.allclose(v[1][[0, 2]].mean(0), torch.zeros(2))  # the missing row does not enter the mean


@pytest.mark.parametrize("loss_on", ["representation", "prediction"])
def test_loss_centering_reaches_both_loss_placements(loss_on):
    b = batch()
    parts = {}
    for center in (False, True):
        model = make({"loss_centering": center, "loss_on": loss_on}).train()
        torch.manual_seed(3)
        out = model.training_loss(b)
        assert torch.isfinite(out.total)
        out.total.backward()
        parts[center] = {k: float(v) for k, v in out.parts.items()}
    assert parts[True]["rec"] == pytest.approx(parts[False]["rec"])  # same model, same noise
    assert parts[True]["L_redundancy"] != pytest.approx(parts[False]["L_redundancy"])
    assert parts[True]["L_unique_image"] == pytest.approx(parts[False]["L_unique_image"])  # triplets unchanged
    with pytest.raises(Exception, match="loss_centering"):
        PRISMConfig(enabled=True, method="concat", loss_centering=True)
