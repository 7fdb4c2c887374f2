"""InDiRec specifics: the guided diffusion, intent clustering and partner lookup, the false-negative
masked InfoNCE, the loss composition, and scoring that is exactly SASRec's."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from prismrec.config import build_config
from prismrec.data import LeaveOneOut, Sequences
from prismrec.data.split import trim_left_padding
from prismrec.models import TrainBatch, build_model
from prismrec.models.diffusion import GuidedDiffusion, exponential_betas
from prismrec.models.indirec import IntentState, info_nce

N, L, D = 40, 10, 16


def make(*overrides, backbone="indirec", seed=0, features=None):
    cfg = build_config(overrides=[f"model.backbone={backbone}", f"model.hidden_dim={D}", "model.num_layers=1",
                                  "model.num_heads=2", "model.dropout=0.0", "model.indirec.num_intents=4",
                                  "model.indirec.diffusion_steps=30", "model.indirec.sample_steps=5", *overrides])
    torch.manual_seed(seed)
    return build_model(cfg.model, N, L, cfg.train.loss, features)


def data(users=20, seed=0) -> LeaveOneOut:
    rng = np.random.default_rng(seed)
    seqs = [rng.choice(np.arange(1, N + 1), size=int(n), replace=False).tolist()
            for n in rng.integers(4, 16, size=users)]
    return LeaveOneOut.build(Sequences.from_lists(seqs, num_items=N), L)


# ---------------------------------------------------------------------------------------------- diffusion


def test_exponential_beta_schedule():
    b = exponential_betas(200, 1e-4, 0.02)
    assert b.shape == (200,)
    assert abs(b[0].item() - 1e-4) < 1e-12
    assert abs(b[-1].item() - 0.02) < 1e-12
    ratio = b[1:] / b[:-1]
    assert torch.allclose(ratio, ratio[0].expand_as(ratio))  # geometric
    diff = GuidedDiffusion(4, 200)
    assert torch.allclose(diff.alphas_cumprod, torch.cumprod(1 - b, 0).float())


def test_respaced_timesteps():
    diff = GuidedDiffusion(4, 200)
    assert diff.timesteps(200) == list(range(199, -1, -1))
    ts = diff.timesteps(20)
    assert len(ts) == 20 and ts[0] == 199 and ts[-1] == 0 and ts == sorted(ts, reverse=True)


def test_guidance_formula_and_null_replacement():
    diff = GuidedDiffusion(3, 10, null_prob=0.1)
    seen = []

    def fake(x_t, s, t):  # f(x_t, s, t) = s: the guided estimate is then (1 + w) s - w null
        seen.append(s)
        return s

    diff.denoiser.forward = fake
    s = torch.randn(5, 3)
    x0 = diff.guided_x0(torch.zeros(5, 3), s, torch.zeros(5, dtype=torch.long), weight=2.0)
    assert torch.allclose(x0, 3 * s - 2 * diff.null_guidance)
    assert torch.allclose(diff.sample(s, 4, weight=2.0), 3 * s - 2 * diff.null_guidance)
    torch.manual_seed(0)
    seen.clear()
    diff.loss(torch.zeros(20000, 3), torch.ones(20000, 3))
    dropped = (seen[0] == diff.null_guidance).all(1).float().mean().item()
    assert 0.09 < dropped < 0.11


def test_sampling_starts_from_pure_noise_or_from_a_given_x_T():
    diff = GuidedDiffusion(3, steps=10)
    inputs = []

    def record(x_t, s, t):
        inputs.append(x_t.clone())
        return s

    diff.denoiser.forward = record
    x_T, s = torch.randn(5, 3), torch.randn(5, 3)
    diff.sample(s, 3, weight=0.0, x_T=x_T)
    assert len(inputs) == 3 and torch.equal(inputs[0], x_T)
    diff.sample(s, 3, weight=0.0)
    assert len(inputs) == 6 and not torch.equal(inputs[3], x_T)


def test_guided_diffusion_learns_a_conditional_distribution():
    """Two intents with different targets: guided sampling must land near the right one."""
    torch.manual_seed(0)
    dim = 8
    diff = GuidedDiffusion(dim, steps=50, hidden=64, null_prob=0.1)
    targets = torch.eye(dim)[:2] * 2.0  # intent 0 -> e0, intent 1 -> e1 (scaled)
    conds = torch.randn(2, dim)
    opt = torch.optim.Adam(diff.parameters(), lr=3e-3)
    for _ in range(400):
        c = torch.randint(0, 2, (128,))
        loss = diff.loss(targets[c] + 0.05 * torch.randn(128, dim), conds[c])
        opt.zero_grad()
        loss.backward()
        opt.step()
    c = torch.tensor([0, 1] * 50)
    samples = diff.sample(conds[c], sample_steps=10, weight=2.0)  # (100, dim)
    assert F.cosine_similarity(samples, targets[c]).mean() > 0.9


# ---------------------------------------------------------------------------------------------- intents


def test_epoch_start_clusters_every_training_prefix():
    model = make().train()
    d = data()
    model.on_epoch_start(1, d, torch.device("cpu"))
    assert model.training  # restored after encoding in eval mode
    st = model.intents
    has = d.train_targets != 0
    assert torch.equal(st.prefix_index >= 0, has)
    assert st.bank.shape == (int(has.sum()), D) and int(st.labels.max()) < 4
    model.eval()
    with torch.no_grad():
        ref = model(d.train_inputs)[has]  # representation of each prefix = hidden at its last position
    assert torch.allclose(st.bank[st.prefix_index[has]], ref, atol=1e-5)


def test_partner_is_another_prefix_of_the_same_intent():
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 1])  # intent 2 has a single member
    st = IntentState.from_labels(torch.zeros(1, 1, dtype=torch.long), torch.zeros(7, 2), labels, 3)
    torch.manual_seed(0)
    prefixes = torch.arange(7).repeat(300)
    partners = st.partners(prefixes)
    assert torch.equal(labels[partners], labels[prefixes])  # same intent, each prefix its own intent
    lonely = prefixes == 3
    assert torch.equal(partners[lonely], prefixes[lonely])  # alone: itself
    assert (partners[~lonely] != prefixes[~lonely]).all()  # otherwise never itself
    for p in (0, 1):  # every other member gets drawn
        same = set(torch.nonzero(labels == labels[p]).flatten().tolist()) - {p}
        assert set(partners[prefixes == p].tolist()) == same


def test_guidance_follows_each_position_in_trimmed_batches():
    model = make().train()
    d = data()
    model.on_epoch_start(1, d, torch.device("cpu"))
    st = model.intents
    st.partners = lambda p: p  # identity partner: guidance must be the prefix's own representation
    users = torch.argsort((d.train_inputs != 0).sum(1))[:4].flip(0)  # the shortest histories
    seq, tgt = trim_left_padding(d.train_inputs[users], d.train_targets[users])
    assert seq.shape[1] < L  # the batch really is trimmed
    mask = tgt != 0
    guidance = model.intent_guidance(TrainBatch(seq, tgt, user_index=users), mask)
    own = st.bank[st.prefix_index[users][:, -seq.shape[1]:][mask]]
    assert torch.equal(guidance, own)
    no_users = model.intent_guidance(TrainBatch(seq, tgt), mask)  # no user rows: null guidance
    assert torch.equal(no_users, model.diffusion.null_guidance.expand_as(no_users))


# ---------------------------------------------------------------------------------------------- losses, scoring


def test_info_nce_masks_same_target_false_negatives():
    g = torch.Generator().manual_seed(0)
    a, v = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    targets = torch.tensor([5, 7, 5, 9])  # pairs 0 and 2 share their target
    got = info_nce(a, v, targets, 0.5)
    sim = F.normalize(a, dim=-1) @ F.normalize(v, dim=-1).T / 0.5

    def row_loss(s, i, banned):
        keep = [j for j in range(4) if j == i or j not in banned]
        return -(s[i, i] - torch.logsumexp(s[i, keep], 0))

    ref = sum(row_loss(sim, i, {2} if i == 0 else {0} if i == 2 else set()) for i in range(4)) / 4
    ref_t = sum(row_loss(sim.T, i, {2} if i == 0 else {0} if i == 2 else set()) for i in range(4)) / 4
    assert torch.allclose(got, 0.5 * (ref + ref_t), atol=1e-5)


def test_loss_parts_and_composition():
    model = make("model.indirec.cl_weight=0.3").train()
    d = data()
    model.on_epoch_start(1, d, torch.device("cpu"))
    users = torch.arange(d.num_users)
    out = model.training_loss(TrainBatch(d.train_inputs, d.train_targets, user_index=users))
    p = out.parts
    assert set(p) == {"rec", "diff", "cl"}
    assert torch.allclose(out.total, p["rec"] + p["diff"] + 0.3 * p["cl"], atol=1e-6)
    out.total.backward()
    assert model.diffusion.denoiser.net[0].weight.grad.abs().sum() > 0
    assert model.item_input.embedding.weight.grad.abs().sum() > 0


def test_diffusion_target_is_fixed_and_computed_for_the_targets_only(monkeypatch):
    """x0 is a target, not a path for gradients: with content in the item table (output_content)
    the diffusion loss gets the targets' rows only, equal to the full table's, with no graph."""
    from prismrec.prism.item_input import MultimodalItemInput
    g = torch.Generator().manual_seed(0)
    present = torch.ones(N + 1, dtype=torch.bool)
    present[0] = False
    feats = {"image": (torch.randn(N + 1, 6, generator=g), present),
             "text": (torch.randn(N + 1, 5, generator=g), present.clone())}
    model = make("model.prism.enabled=true", "model.prism.output_content=true", "model.prism.output_fusion=user",
                 "model.prism.expert_dropout=0.0", "model.prism.fusion_dropout=0.0", features=feats).train()
    d = data()
    asked, seen = [], []
    original = MultimodalItemInput.output_embeddings
    monkeypatch.setattr(MultimodalItemInput, "output_embeddings",
                        lambda self, items=None: asked.append(items) or original(self, items))
    loss = model.diffusion.loss
    monkeypatch.setattr(model.diffusion, "loss", lambda x0, guidance: seen.append(x0) or loss(x0, guidance))
    model.training_loss(TrainBatch(d.train_inputs, d.train_targets, user_index=torch.arange(d.num_users)))
    targets = d.train_targets[d.train_targets != 0]
    assert len(asked) == 1 and torch.equal(asked[0], targets)  # not the whole table
    x0 = seen[0]
    assert not x0.requires_grad
    with torch.no_grad():
        rows = original(model.item_input, None)[targets]
    expected = F.normalize(rows, dim=-1) * D ** 0.5
    assert torch.allclose(x0, expected, atol=1e-5)


def test_scores_are_exactly_sasrec_with_the_same_encoder():
    indirec = make().eval()
    sasrec = make(backbone="sasrec").eval()
    missing, unexpected = sasrec.load_state_dict(indirec.state_dict(), strict=False)
    assert not missing and all(k.startswith("diffusion.") for k in unexpected)
    seq = data().test.inputs
    assert torch.equal(indirec.full_sort_scores(seq), sasrec.full_sort_scores(seq))


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_training_hides_the_clustering_bars_and_log_lines(tmp_path, monkeypatch, caplog, quiet):
    import prismrec.models.indirec as indirec_module
    import prismrec.models.kmeans as kmeans_module
    from prismrec.cli import main

    from conftest import TINY, sets

    disabled = []  # the `disable` argument of every clustering progress bar

    def recording(real):
        def bar(*args, **kwargs):
            disabled.append(kwargs.get("disable"))
            return real(*args, **kwargs)
        return bar

    monkeypatch.setattr(indirec_module, "tqdm", recording(indirec_module.tqdm))
    monkeypatch.setattr(kmeans_module, "tqdm", recording(kmeans_module.tqdm))
    argv = ["train", "--output-dir", str(tmp_path / "run"), *(["--quiet"] if quiet else []),
            *sets(TINY + ["train.epochs=1", "model.backbone=indirec", "model.indirec.num_intents=3"])]
    with caplog.at_level("INFO", logger="prismrec.models.indirec"):
        assert main(argv) == 0
    clustering = [r for r in caplog.records if r.name == "prismrec.models.indirec" and "intents" in r.getMessage()]
    assert len(disabled) == 2  # the prefix encoding's bar and the k-means bar of the one epoch
    if quiet:
        assert disabled == [True, True] and clustering == []
    else:  # None: tqdm shows the bar on a terminal
        assert disabled == [None, None] and len(clustering) == 1
