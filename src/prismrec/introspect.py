"""What a trained PRISM model learned: per-user fusion weights (and content gates) and per-item expert embeddings."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .api import Run


@dataclass
class FusionWeights:
    experts: list[str]
    user_ids: np.ndarray  # (U,)
    last: np.ndarray  # (U, E) weights at each user's most recent position (the next recommendation)
    per_position: np.ndarray | None = None  # (U, L, E) causal weights at every position (0 on padding)
    padding_mask: np.ndarray | None = None  # (U, L)

    def summary(self) -> list[dict]:
        """Mean, std and quartiles of each expert's weight across users."""
        rows = []
        for e, name in enumerate(self.experts):
            w = self.last[:, e]
            q = np.percentile(w, [25, 50, 75])
            rows.append({"expert": name, "mean": float(w.mean()), "std": float(w.std()), "p25": float(q[0]),
                         "median": float(q[1]), "p75": float(q[2]),
                         "top_expert_share": float((self.last.argmax(1) == e).mean())})
        return rows


def has_multimodal_input(run: Run) -> bool:
    """Whether the run's item input is multimodal (``model.prism.enabled``: PRISM or a naive fusion)."""
    return hasattr(run.model.item_input, "fusion_weights")


def _multimodal_input(run: Run):
    mm = run.model.item_input
    if not has_multimodal_input(run):
        raise ValueError("this run has no multimodal item input (train with --set model.prism.enabled=true)")
    return mm


def _per_user(run: Run, split: str, values, per_position: bool, batch_size: int
              ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``values(item_seq (B, L)) -> (B, L, ...)`` over the split's input sequences in batches: the value
    at each user's most recent position (U, ...), and with ``per_position`` every position's value (0
    on padding) and the padding mask (U, L)."""
    run.model.eval()
    inputs = run.data.split(split).inputs
    last, full = [], []
    for lo in range(0, len(inputs), batch_size):
        seq = inputs[lo:lo + batch_size].to(run.device)
        v = values(seq)
        last.append(v[:, -1].cpu())
        if per_position:
            real = (seq != 0).reshape(*seq.shape, *(1,) * (v.dim() - 2))
            full.append((v * real).cpu())
    if not per_position:
        return torch.cat(last).numpy(), None, None
    return torch.cat(last).numpy(), torch.cat(full).numpy(), (inputs != 0).numpy()


@torch.no_grad()
def fusion_weights(run: Run, split: str = "test", per_position: bool = False, batch_size: int = 1024
                   ) -> FusionWeights:
    """Fusion weights of every user for the given split's input sequences."""
    mm = _multimodal_input(run)

    def weights(seq: torch.Tensor) -> torch.Tensor:
        w = mm.fusion_weights(seq)  # (B, L, E) or None
        if w is None:
            raise ValueError(f"method {run.config.model.prism.method!r} has no fusion weights (PRISM only)")
        return w

    last, full, mask = _per_user(run, split, weights, per_position, batch_size)
    return FusionWeights(experts=mm.expert_names, user_ids=run.dataset.sequences.user_ids, last=last,
                         per_position=full, padding_mask=mask)


#: a hidden unit of the fusion MLP counts as live when its pre-activation exceeds this for at least
#: LIVE_SHARE of the users (GELU(-3) = -0.004, its slope there 0.01: below it the unit is flat)
LIVE_PRE_ACTIVATION, LIVE_SHARE = -3.0, 0.01


@torch.no_grad()
def fusion_layer_state(run: Run, split: str = "test", batch_size: int = 1024) -> dict:
    """What the adaptive fusion layer's MLP reads and whether it can still respond to it: the mean L2
    norm over all items of each expert's output and of the ID embedding (its inputs), and how many of
    its hidden units are live at the users' most recent positions (pre-activation above
    :data:`LIVE_PRE_ACTIVATION` for at least :data:`LIVE_SHARE` of them). With no live unit the layer's
    output is its last bias: the same weights for every user."""
    mm = _multimodal_input(run)
    if not mm.has_fusion_mlp:
        raise ValueError("this run has no adaptive fusion layer (method=prism with fusion=adaptive)")
    names, emb = expert_embeddings(run)
    items = torch.arange(1, run.dataset.num_items + 1, device=run.device)
    id_norm = torch.cat([mm.id_input(items[lo:lo + 4096]).norm(dim=-1).cpu()
                         for lo in range(0, len(items), 4096)]).mean()
    pre, _, _ = _per_user(run, split, mm.fusion_pre_activations, False, batch_size)  # (U, width)
    live = (pre > LIVE_PRE_ACTIVATION).mean(0) >= LIVE_SHARE
    q = np.percentile(pre, [1, 50, 99])
    return {"expert_output_norm": {n: float(v) for n, v in zip(names, np.linalg.norm(emb, axis=-1).mean(0))},
            "id_embedding_norm": float(id_norm), "input_norm": bool(run.config.model.prism.fusion_input_norm),
            "hidden_units": int(pre.shape[1]), "live_units": int(live.sum()),
            "pre_activation_p1_p50_p99": [float(v) for v in q]}


@torch.no_grad()
def content_variation(run: Run, split: str = "test", batch_size: int = 1024, max_positions: int = 200_000) -> dict:
    """How much of the input-side content tells positions apart, at the real positions of ``split``'s
    histories (the first ``max_positions``): ``varying_share``, the share of the content's mean squared
    norm that varies around its mean vector (near 0: nearly the same vector everywhere, a bias rather
    than information about the item), ``varying_rms``, the root mean square of that variation, and
    ``id_rms``, the ID embeddings' root mean square norm at the same positions, which it joins."""
    mm = _multimodal_input(run)
    run.model.eval()
    inputs = run.data.split(split).inputs
    ids, contents, n = [], [], 0
    for lo in range(0, len(inputs), batch_size):
        seq = inputs[lo:lo + batch_size].to(run.device)
        e_id, c = mm.input_parts(seq)
        real = seq != 0
        ids.append(e_id[real].cpu())
        contents.append(c[real].cpu())
        n += int(real.sum())
        if n >= max_positions:
            break
    e_id, c = torch.cat(ids)[:max_positions], torch.cat(contents)[:max_positions]
    energy = c.pow(2).sum(-1).mean()
    varying = (c - c.mean(0, keepdim=True)).pow(2).sum(-1).mean()
    return {"positions": int(len(c)), "varying_share": float(varying / energy.clamp_min(1e-30)),
            "varying_rms": float(varying.sqrt()), "id_rms": float(e_id.pow(2).sum(-1).mean().sqrt())}


@torch.no_grad()
def expert_agreement(run: Run, num_items: int = 2048, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per expert, on a seeded sample of items: ``between_items``, the mean cosine between its outputs
    for two different items (near 1: one direction for every item, so it tells items apart by norm
    at most), and ``full_vs_view``, the mean cosine between its output on the full input and on each
    unimodal view (the interaction losses' quantity: the redundancy loss pushes it to 1, the synergy
    loss down). Together they show a degenerate optimum of those losses: an expert that gives every
    item the same vector (redundancy: both near 1) or one vector for full inputs and the opposite one
    for masked views (synergy: ``full_vs_view`` near -1, ``between_items`` near 1) satisfies its loss
    without reading the item. The views use the run's masking strategy, with the sample's statistics."""
    from .prism.masking import unimodal_views

    mm = _multimodal_input(run)
    if not hasattr(mm.fuser, "expert_outputs"):
        raise ValueError(f"method {run.config.model.prism.method!r} has no experts (PRISM only)")
    run.model.eval()
    n = run.dataset.num_items
    rng = np.random.default_rng(seed)
    items = torch.as_tensor(rng.choice(np.arange(1, n + 1), size=min(num_items, n), replace=False), device=run.device)
    half = len(items) // 2
    with torch.random.fork_rng(devices=[run.device.index or 0] if run.device.type == "cuda" else []):
        torch.manual_seed(seed)
        modal = mm.modalities(items)  # (P, M, D)
        full = mm.fuser.expert_outputs(modal)  # (P, E, D)
        views = mm.fuser.expert_outputs(unimodal_views(modal, run.config.model.prism.masking))  # (M, P, E, D)
    cos = torch.nn.functional.cosine_similarity
    between = cos(full[:half], full[half:2 * half], dim=-1).mean(0)  # (E,)
    vs_view = cos(full.unsqueeze(0), views, dim=-1).mean((0, 1))  # (E,)
    return {name: {"between_items": float(b), "full_vs_view": float(v)}
            for name, b, v in zip(mm.expert_names, between.cpu(), vs_view.cpu())}


#: ``between_items`` at or above this: the expert gives (almost) every item the same output
ITEM_BLIND = 0.99


def item_blind_note(run: Run) -> str | None:
    """One line for the end of training when some PRISM expert ignores the item (``between_items`` of
    :func:`expert_agreement` >= :data:`ITEM_BLIND`): what reaches the encoder from it is one learned
    vector, weighted per user, not item content. None for other runs and when every expert reads the item."""
    if not has_multimodal_input(run) or not hasattr(run.model.item_input.fuser, "expert_outputs"):
        return None
    blind = {name: a["between_items"] for name, a in expert_agreement(run).items()
             if a["between_items"] >= ITEM_BLIND}
    if not blind:
        return None
    which = ", ".join(f"{name} ({cos:.3f})" for name, cos in blind.items())
    return (f"note: expert(s) {which} give almost every item the same output (mean cosine between two items' "
            f"outputs): each adds one learned vector, weighted per user, not item content; a degenerate optimum "
            f"of the synergy / redundancy losses (docs/benchmarks.md §3 sessions 28 and 35; "
            f"model.prism.loss_centering=true avoided it where tried). `prismrec inspect --run {run.run_dir}` shows more")


@dataclass
class ContentGates:
    user_ids: np.ndarray  # (U,)
    last: np.ndarray  # (U,) gate at each user's most recent position (1 = content in full, 0 = IDs only)
    per_position: np.ndarray | None = None  # (U, L) causal gate at every position (0 on padding)
    padding_mask: np.ndarray | None = None  # (U, L) True on real items (with per_position)

    def summary(self) -> dict:
        """Mean, std and quartiles of the gate across users, and the share of users below 0.5."""
        q = np.percentile(self.last, [25, 50, 75])
        return {"mean": float(self.last.mean()), "std": float(self.last.std()), "p25": float(q[0]),
                "median": float(q[1]), "p75": float(q[2]), "share_below_0.5": float((self.last < 0.5).mean())}


@torch.no_grad()
def content_gates(run: Run, split: str = "test", per_position: bool = False, batch_size: int = 1024
                  ) -> ContentGates:
    """The per-user content gate (``model.prism.content_gate``) for the given split's input sequences."""
    mm = _multimodal_input(run)
    if getattr(mm, "content_gate", None) is None:
        raise ValueError("this run has no content gate (train with model.prism.content_gate=true)")
    last, full, mask = _per_user(run, split, mm.content_gates, per_position, batch_size)
    return ContentGates(user_ids=run.dataset.sequences.user_ids, last=last, per_position=full, padding_mask=mask)


@torch.no_grad()
def output_fusion_weights(run: Run, split: str = "test", batch_size: int = 1024) -> FusionWeights:
    """Per-user expert weights of the prediction layer (``model.prism.output_fusion=user``): the
    weights that rank each user's next item, from the sequence representation at the last position."""
    mm = _multimodal_input(run)
    if getattr(mm, "query_fusion", None) is None:
        raise ValueError("this run has no per-user output fusion (train with model.prism.output_content=true "
                         "and model.prism.output_fusion=user)")
    run.model.eval()
    inputs = run.data.split(split).inputs
    last = [mm.output_fusion_weights(run.model.last_hidden(inputs[lo:lo + batch_size].to(run.device))).cpu()
            for lo in range(0, len(inputs), batch_size)]
    return FusionWeights(experts=mm.expert_names, user_ids=run.dataset.sequences.user_ids,
                         last=torch.cat(last).numpy())


@torch.no_grad()
@torch.no_grad()
def popularity_scales(run: Run) -> list[dict]:
    """The prediction layer's learned scalars per popularity bucket (``model.prism.output_popularity_buckets``):
    one row per bucket with its training-count range, how many items fall in it, and a_id / a_content
    (the weights of the ID embedding and of the content in those items' keys; both start at 1)."""
    mm = _multimodal_input(run)
    pop = getattr(mm, "popularity", None)
    if pop is None:
        raise ValueError("this run has no popularity scales (train with model.prism.output_content=true "
                         "and model.prism.output_popularity_buckets=8)")
    items = torch.bincount(pop.bucket[1:], minlength=pop.scale.shape[0]).tolist()  # real items only
    scale = pop.scale.detach().cpu().tolist()
    return [{"bucket": b, "train_count": name, "items": n, "a_id": a[0], "a_content": a[1]}
            for b, (name, n, a) in enumerate(zip(pop.bucket_ranges(), items, scale))]


@torch.no_grad()
def item_bias_summary(run: Run) -> dict:
    """The learned per-item score offsets (``model.item_bias``) against how often each item occurs in the
    training sequences (every user's s[:-2]): their Spearman rank correlation with that count over the
    real items, and per count group (the groups of ``prismrec compare --by target-count``) how many items
    it holds and the mean, std and median offset. A large positive correlation means the offsets carry
    item popularity."""
    from .data.split import train_item_counts
    from .evaluation.compare import GROUPINGS, group_masks

    if run.model.item_bias is None:
        raise ValueError("this run has no item offsets (train with --set model.item_bias=true)")
    bias = run.model.item_bias.detach().cpu().double().numpy()[1:]  # real items only
    counts = train_item_counts(run.dataset.sequences)[1:]
    groups = [{"train_count": label, "items": int(mask.sum()), "mean": float(bias[mask].mean()),
               "std": float(bias[mask].std()), "median": float(np.median(bias[mask]))}
              for label, mask in group_masks(counts, GROUPINGS["target-count"])]
    return {"spearman_with_train_count": _spearman(bias, counts), "mean": float(bias.mean()),
            "std": float(bias.std()), "groups": groups}


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); nan when either side is constant."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _per_item(run: Run, compute, items: np.ndarray | None = None, batch_size: int = 4096) -> np.ndarray:
    """``compute(item ids (b,)) -> (b, ...)`` over ``items`` (default: every item 1..N) in batches of
    ``batch_size``, in evaluation mode: (n, ...)."""
    run.model.eval()
    items = np.arange(1, run.dataset.num_items + 1) if items is None else np.asarray(items)
    with torch.no_grad():
        return torch.cat([compute(torch.as_tensor(items[lo:lo + batch_size], device=run.device)).cpu()
                          for lo in range(0, len(items), batch_size)]).numpy()


def expert_embeddings(run: Run, items: np.ndarray | None = None, batch_size: int = 4096) -> tuple[list[str], np.ndarray]:
    """Per-item expert embeddings (n, E, D) for ``items`` (default: every item 1..N)."""
    mm = _multimodal_input(run)

    def experts(batch: torch.Tensor) -> torch.Tensor:
        e = mm.expert_embeddings(batch)
        if e is None:
            raise ValueError(f"method {run.config.model.prism.method!r} has no experts (PRISM only)")
        return e

    return mm.expert_names, _per_item(run, experts, items, batch_size)


def linear_probe_accuracy(x: np.ndarray, labels: np.ndarray, folds: int = 5, ridge: float = 1.0,
                          seed: int = 0) -> float:
    """How linearly decodable ``labels`` are from ``x``: k-fold cross-validated accuracy of a
    ridge-regression classifier (one-hot targets, closed form, standardised features).

    x: (n, F) e.g. one expert's item embeddings; labels: (n,) integer classes (e.g. a planted
    item property, or a real item category). Rows with a negative label are ignored. Compare
    against the majority-class rate: a probe at that level found nothing linear.
    """
    x, labels = np.asarray(x, dtype=np.float64), np.asarray(labels)
    if x.ndim != 2 or len(x) != len(labels):
        raise ValueError(f"x must be (n, F) and labels (n,); got {x.shape} and {labels.shape}")
    keep = labels >= 0
    x, labels = x[keep], labels[keep]
    if len(labels) < 2 * folds:
        raise ValueError(f"need at least {2 * folds} labelled rows for {folds}-fold probing, got {len(labels)}")
    classes, y = np.unique(labels, return_inverse=True)
    onehot = np.eye(len(classes))[y]  # (n, C)
    idx = np.random.default_rng(seed).permutation(len(y))
    correct = 0
    for f in range(folds):
        test = idx[f::folds]
        train = np.setdiff1d(idx, test)
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-9
        a = np.hstack([(x[train] - mu) / sd, np.ones((len(train), 1))])  # (n_tr, F + 1) with bias
        w = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ onehot[train])  # (F + 1, C)
        b = np.hstack([(x[test] - mu) / sd, np.ones((len(test), 1))])
        correct += int(((b @ w).argmax(1) == y[test]).sum())
    return correct / len(y)


def expert_probes(run: Run, item_labels: dict[str, np.ndarray], folds: int = 5) -> dict[str, dict[str, float]]:
    """Linear-probe accuracy of every expert's item embeddings for every item labelling.

    item_labels: name -> (N + 1,) integer label per item id (row 0 = padding, ignored; -1 = unknown).
    Returns {expert: {label name: accuracy}}, plus two reference rows: ``"input:concat"`` probes
    the concatenated projected modality features (what a linear model sees without any expert)
    and ``"id"`` the learned ID embeddings (what collaborative signal alone put there). A naive
    fusion (``method`` concat, sum, mean or gated) has no experts: its row is ``"fused:<method>"``,
    the fused content embedding of each item.
    """
    mm = _multimodal_input(run)
    if mm.expert_names:
        names, emb = expert_embeddings(run)  # (N, E, D) for items 1..N
        embs = {name: emb[:, e] for e, name in enumerate(names)}
    else:  # (N, D) the naive fusion's content per item
        fused = _per_item(run, lambda batch: mm.fuser.item_content(mm.modalities(batch)))
        embs = {f"fused:{run.config.model.prism.method}": fused}
    out: dict[str, dict[str, float]] = {}
    for name, x in embs.items():
        out[name] = {lab: linear_probe_accuracy(x, np.asarray(v)[1:], folds) for lab, v in item_labels.items()}
    items = torch.arange(1, run.dataset.num_items + 1, device=run.device)
    with torch.no_grad():
        refs = {"input:concat": mm.modalities(items).flatten(-2).cpu().numpy(),  # (N, M * D)
                "id": mm.id_input.output_embeddings()[1:].cpu().numpy()}  # (N, D)
    for ref, x in refs.items():
        out[ref] = {lab: linear_probe_accuracy(x, np.asarray(v)[1:], folds) for lab, v in item_labels.items()}
    return out


def expert_similarity(emb: np.ndarray) -> np.ndarray:
    """Mean cosine similarity between every two experts' embeddings of the same item.
    emb (n, E, D) -> (E, E), symmetric, 1 on the diagonal (0 where an expert outputs zero vectors).
    Experts that decomposed their input into different parts sit well below 1 off the diagonal."""
    z = _unit_rows(emb)
    return np.einsum("ned,nfd->ef", z, z) / len(z)


def expert_separability(emb: np.ndarray, folds: int = 5) -> float:
    """How linearly an embedding's expert can be told from the embedding alone: k-fold accuracy of a
    ridge classifier from the L2-normalised (n * E, D) embeddings to the expert index (chance 1 / E;
    1.0 = every expert occupies its own region of the space, as a t-SNE picture of separate clusters
    suggests, but measured in the embedding space itself rather than in a 2-D projection)."""
    n, E, D = emb.shape
    return linear_probe_accuracy(_unit_rows(emb).reshape(n * E, D), np.tile(np.arange(E), n), folds)


def _unit_rows(emb: np.ndarray) -> np.ndarray:
    emb = np.asarray(emb, dtype=np.float64)
    norm = np.linalg.norm(emb, axis=-1, keepdims=True)
    return np.divide(emb, norm, out=np.zeros_like(emb), where=norm > 0)


@dataclass
class ExpertMap:
    """A 2-D t-SNE map of the experts' embeddings of a sample of items (the paper's expert picture),
    with two measurable companions computed in the embedding space (not in the picture)."""
    experts: list[str]
    items: np.ndarray  # (n,) the sampled item ids
    coords: np.ndarray  # (n, E, 2) t-SNE coordinates of each item's embedding by each expert
    similarity: np.ndarray  # (E, E) expert_similarity over the sampled items
    separability: float  # expert_separability over the sampled items (chance 1 / E)

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """The map as flat points: coordinates (n * E, 2) and each point's expert index (n * E,),
        item by item (row i * E + e is item ``items[i]`` by expert e)."""
        n, E = self.coords.shape[:2]
        return self.coords.reshape(n * E, 2), np.tile(np.arange(E), n)

    def summary(self) -> dict:
        return {"experts": self.experts, "items": int(len(self.items)),
                "similarity": self.similarity.round(4).tolist(), "separability": self.separability,
                "chance": 1.0 / len(self.experts)}


def expert_map(run: Run, num_items: int = 1000, perplexity: float = 30.0, seed: int = 0) -> ExpertMap:
    """t-SNE (scikit-learn) of the L2-normalised expert embeddings of ``num_items`` items drawn
    uniformly without replacement (seeded; all items if there are fewer)."""
    try:
        from sklearn.manifold import TSNE
    except ImportError as exc:  # pragma: no cover - scikit-learn ships with the `features` extra
        raise ValueError("the t-SNE map needs scikit-learn: pip install 'prismrec[features]'") from exc
    if num_items < 2 or perplexity <= 0:
        raise ValueError(f"need at least 2 items and a positive perplexity, got {num_items} and {perplexity}")
    rng = np.random.default_rng(seed)
    n_all = run.dataset.num_items
    items = np.sort(rng.choice(np.arange(1, n_all + 1), size=min(num_items, n_all), replace=False))
    names, emb = expert_embeddings(run, items)  # (n, E, D)
    n, E, D = emb.shape
    points = _unit_rows(emb).reshape(n * E, D)
    tsne = TSNE(n_components=2, perplexity=min(perplexity, (n * E - 1) / 3.0), init="pca", random_state=seed)
    coords = tsne.fit_transform(points).reshape(n, E, 2)
    return ExpertMap(experts=names, items=items, coords=coords, similarity=expert_similarity(emb),
                     separability=expert_separability(emb))
