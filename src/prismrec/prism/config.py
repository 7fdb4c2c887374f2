"""PRISM configuration (torch-free so ``prismrec.config`` can import it)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

EXPERT_KINDS = ("unique", "synergy", "redundancy")


@dataclass(frozen=True)
class PRISMConfig:
    """The multimodal item input: PRISM (PAPER.md §2) or a naive-fusion baseline, on the same seam.

    With ``enabled: false`` (default) the backbone sees plain ID embeddings, exactly as without
    this section. Ablations are configurations that build different module graphs.
    """

    enabled: bool = False
    """Add the multimodal item input to the backbone's item-input path."""
    method: Literal["prism", "concat", "sum", "mean", "gated"] = "prism"
    """``prism``: interaction experts + fusion + interaction losses. The others are naive-fusion
    baselines (no experts, no interaction losses): ``concat`` (MLP over concatenated modalities),
    ``sum``/``mean`` of projected modalities, ``gated`` (per-item attention over modalities)."""
    drop_experts: tuple[str, ...] = ()
    """Experts to remove (ablation), e.g. ``[synergy]`` or ``[unique_text]``. Names: ``unique_<modality>``,
    ``synergy``, ``redundancy``."""
    feature_norm: Literal["none", "standardize", "l2"] = "standardize"
    """Normalisation of the frozen feature matrices, computed once over present items."""
    expert_hidden: int = 128
    """Hidden width of each expert MLP (paper code: 128)."""
    expert_layers: int = 2
    """Linear layers per expert MLP (2 = Linear, act, dropout, Linear). 1 = a single Linear: no hidden
    layer, so ``expert_hidden``, ``expert_activation`` and ``expert_dropout`` then do nothing."""
    expert_activation: Literal["gelu", "relu", "tanh"] = "gelu"
    """Activation inside the expert MLPs."""
    expert_dropout: float = 0.1
    """Dropout inside the expert MLPs (applied after each hidden activation)."""
    synergy_contrast: bool = False
    """Not in the paper. Make the synergy expert output only the *non-additive* part of its MLP f:
    f(x) - sum_m f(x_m, mu_-m) + (M - 1) f(mu), where (x_m, mu_-m) keeps modality m and puts every
    other modality at its reference mu (the projection of that modality's mean feature row). Any f
    that is a sum of per-modality functions gives exactly 0 (in evaluation; in training each of the
    terms draws its own expert-dropout mask, which adds noise around 0), so the expert can carry only
    interaction between modalities (for M = 2 the double difference f(x1, x2) - f(x1, mu2) - f(mu1, x2) + f(mu1, mu2)).
    Eq. 7's loss alone is also satisfied by a linear mix of both modalities."""
    masking: Literal["random", "zero", "mean"] = "random"
    """How a masked modality is replaced in the unimodal views: ``random`` Gaussian with that modality's
    batch mean/std per dimension, fresh each step (paper's default), ``zero``, or the batch ``mean``."""
    loss_on: Literal["representation", "prediction"] = "representation"
    """Where the interaction losses (Eqs. 5-8) compare the views: on expert outputs (cheap; each
    distinct item of the batch once, since an expert's output depends on the item alone), or on
    predictions through the shared sequence encoder and prediction layer, as the paper's equations say
    (every position, scored against the batch's target items; one batched encoder call over all
    experts x views: about (1 + E(M+1))x the encoder cost). The default is where the authors'
    released code computes them, a departure from the paper's equations (the project's spec, PAPER.md
    §5.3, lists it among the released code's defects): it is kept
    as the default for its cost (``prediction`` ran 6-7x the seconds per epoch on the planted world;
    on Beauty 5.8x SASRec's CPU time under CE and 16.6x under BCE, against 1.4x and 3.0x for ``representation``)
    and because ``prediction`` was not better everywhere it was compared (planted world: +5.0% over
    ``representation`` with synergy mod 8, -0.6% n.s. with mod 4; docs/benchmarks.md §4). Set
    ``prediction`` for the paper's Eqs. 5-8 as written. With ``train.micro_batches`` > 1, the
    ``prediction`` losses take their in-batch candidates and masking statistics from each micro-batch
    (``representation``'s are the whole batch's); ``train.micro_batches=1`` makes them the whole batch's."""
    loss_user_fraction: float = 1.0
    """Not in the paper (1 = off). With ``loss_on=prediction``: run the masked views through the encoder
    for this fraction of each (micro-)batch's users, drawn fresh each step, instead of all of them; the
    candidates stay the targets of every user of the (micro-)batch. The losses are means over positions,
    so the sample estimates the same objective for about this fraction of the 12 extra encoder passes
    (4 experts x 3 views for M = 2): on Beauty, 0.25 brings ``prediction`` from 5.8x to 2.1x SASRec's
    CPU time per epoch under CE and from 16.6x to 5.8x under BCE (docs/benchmarks.md §3 session 26)."""
    loss_items: int = 0
    """Not in the paper. With ``loss_on=representation``: compute the interaction losses (Eqs. 5-8)
    on a uniform sample of this many of the step's distinct real items, drawn fresh each step,
    instead of on all of them (0 = all; a step of 256 Beauty users holds ~900). The losses are means
    over items, so the sample gives an unbiased estimate of the same objective for a fraction of the
    masked-view work; the masking statistics are still taken over all the step's items. Measured on
    Beauty, BCE, 3 seeds: 256 items cut PRISM's epoch from 2.5x to 1.9x SASRec's but lowered test
    NDCG@10 by 5.6% against all items (docs/benchmarks.md)."""
    margin: float = 0.5
    """Triplet margin on cosine distance d = 1 - cos (Eqs. 5-6; distances lie in [0, 2])."""
    lambda_unique: float = 0.1
    """Weight of every unique expert's triplet loss (Eqs. 5-6) unless overridden per modality."""
    lambda_unique_per_modality: dict[str, float] = field(default_factory=dict)
    """Per-modality overrides of ``lambda_unique``, e.g. ``{image: 0.2, text: 0.05}`` (paper's Yelp)."""
    lambda_synergy: float = 0.1
    """Weight of the synergy loss (Eq. 7)."""
    lambda_redundancy: float = 0.1
    """Weight of the redundancy loss (Eq. 8)."""
    loss_centering: bool = False
    """Not in the paper (off = Eqs. 7-8 as written). Before the synergy and redundancy cosines, subtract
    from the full input's outputs and from each view's their mean over the loss's rows (the step's items
    with ``loss_on=representation``; the positions with ``prediction``), so the losses compare what is
    specific to each item. As written, both have optima that ignore the item: the redundancy loss
    (1 - cos(full, view)) is 0 for an expert that outputs one constant vector, and the synergy loss
    (cos(full, view)) is -1 for one that outputs a vector for full inputs and its opposite for masked
    views; after centering both score cos 0 there. On Yelp (STOSA, content on the mean stream) the
    trained experts sat at these optima (``prismrec inspect``'s expert agreement: redundancy 1.000
    between items and full vs view, synergy 0.996 and -0.996; docs/benchmarks.md §3, session 28). The
    unique experts' triplet losses are unchanged (a constant output does not satisfy them)."""
    lambda_transition: float = 0.0
    """Not in the paper (0 = off). Weight of an item-level contrastive loss on every expert's output:
    for each pair of consecutive items (i, j) in the step's training histories, expert e's embedding
    of i should be closer (cosine) to its embedding of j than to those of the step's other distinct
    items (InfoNCE, mean over pairs and experts). It gives each expert a direct signal about which
    content properties predict the next item; with ``synergy_contrast`` the synergy expert can meet
    it only with interactions between modalities. Needs ``loss_on=representation``."""
    transition_temperature: float = 0.1
    """Softmax temperature of that loss (and of ``lambda_id_align``'s)."""
    lambda_id_align: float = 0.0
    """Not in the paper (0 = off). Weight of an item-level contrastive loss: every expert's embedding of
    each of the step's distinct items should pick out that item's own ID embedding (detached, so it is
    a target that the IDs do not move towards) among the ID embeddings of the step's items (cosine,
    InfoNCE, temperature ``transition_temperature``, mean over items and experts). The ID embeddings
    hold what the interactions taught the model about each item, including properties that only an
    interaction of modalities reveals; with ``synergy_contrast`` the synergy expert can match those
    only by computing interactions. Needs ``loss_on=representation``."""
    fusion: Literal["adaptive", "uniform"] = "adaptive"
    """``adaptive``: the Adaptive Fusion Layer (Eqs. 10-11); ``uniform``: equal weights ("w/o AFL")."""
    fusion_scope: Literal["causal", "sequence"] = "causal"
    """``causal``: fusion weights at position t use only items <= t (no future leak in all-position
    training); ``sequence``: one weight vector per history from the masked mean over all its items
    (at training time earlier positions then see later items: use for analysis, not training)."""
    fusion_hidden: int = 0
    """Hidden width of the fusion MLP (0 = 2 x hidden_dim, as the paper's code)."""
    fusion_dropout: float = 0.3
    """Dropout inside the fusion MLP."""
    temperature: float = 0.7
    """Softmax temperature of the fusion weights."""
    fusion_input_norm: bool = False
    """Not in the paper (off = the paper's layer). Standardise each expert's output and the ID embedding
    per item (layer norm over the hidden dimension, no learned scale) before the fusion MLP, so its
    inputs keep unit scale however large the experts' outputs grow. Nothing bounds those norms: the
    interaction losses are cosines and ``content_norm`` layer-normalises the fused embedding, so
    scaling every expert's output together changes no loss. On Yelp (STOSA, content on the mean
    stream, seed 1, 147 epochs) the redundancy expert's outputs reached a mean norm of ~300 (the others
    ~9), every hidden unit of the fusion MLP sat at pre-activations of -16 to -190, where GELU is flat,
    and the layer gave every user the same weights (docs/benchmarks.md §3, session 28; ``prismrec
    inspect`` reports the norms and the live units). Needs ``fusion=adaptive``."""
    fusion_warmup_epochs: int = 0
    """Not in the paper (0 = off). Start the fusion weights at equal weights and move them linearly to
    the learned ones over this many epochs: w = alpha / E + (1 - alpha) softmax(...), alpha = 1 in
    epoch 1 falling to ``fusion_floor`` from epoch ``fusion_warmup_epochs + 1`` on. Meant for an expert
    that is useless early (the synergy expert, before it has learned its interaction) and would
    otherwise get almost no weight, and with it almost no gradient from the recommendation loss. On the
    planted world it did not help: after 20 epochs at equal weights the fusion layer still moved the
    synergy expert's weight to 0.005, and NDCG@10 fell 2.5% (docs/benchmarks.md §4, session 14).
    Applies to the adaptive fusion layer and to ``output_fusion=user``'s weights; the weights that
    ``prismrec inspect`` reports are the mixed ones the model uses."""
    lambda_fusion_balance: float = 0.0
    """Not in the paper (0 = off). Weight of a load-balancing loss on the adaptive fusion weights, as in
    mixtures of experts: the squared coefficient of variation of the experts' mean weight over the
    batch's real positions (0 when every expert gets 1/E on average). The fusion layer must then give
    each expert to *some* users, and chooses which; per-user weights stay free. On the planted world
    (0.1) the layer then routed each unique user type to its own expert but gave the synergy expert
    mostly to redundant users, and NDCG@10 did not change (docs/benchmarks.md §4, session 14); 1.0
    made the weights equal for everyone. Needs ``method=prism`` and ``fusion=adaptive``."""
    fusion_floor: float = 0.0
    """Not in the paper (0 = off). The share alpha of equal weights kept in the fusion weights after any
    warm-up (in [0, 1)): every expert keeps at least ``fusion_floor / E`` of the weight."""
    content_gate: bool = False
    """Not in the paper. A per-user gate on the input-side content: x_t = combine(e_id, g_t * content_t)
    with g_t = sigmoid(MLP(pool([e_id, item content]))) in (0, 1), pooled over the history like the
    fusion weights (``fusion_scope``; causal = items <= t; MLP width ``fusion_hidden``, dropout
    ``fusion_dropout``; starts mostly open, g = 0.88). A user whose behaviour the content does not
    explain can close it and keep a clean ID path. Applies to every method; the prediction layer's
    content (``output_content``) and the masked variants of ``loss_on=prediction`` are not gated.
    ``prismrec inspect`` reports the gate per user."""
    id_dropout: float = 0.0
    """Not in the paper (0 = off). During training, each input position's ID embedding is replaced by
    zeros with this probability (no rescaling), so the content path alone has to carry what predicts
    the next item for those positions: the recommendation loss then pushes the experts to compute
    whatever the ID embeddings would otherwise hold, interactions between modalities included (the
    idea of DropoutNet, Volkovs et al. 2017, for cold start). Evaluation and the prediction layer
    always use the ID embeddings (so do the masked variants of ``loss_on=prediction``). Applies to every
    method."""
    combine: Literal["add", "concat"] = "add"
    """How the fused multimodal embedding joins the ID embedding: sum, or Linear([id, mm])."""
    content_norm: bool = True
    """LayerNorm the fused multimodal embedding and multiply it by a learned scalar initialised at
    ``content_scale``, so content enters at the scale of the ID embeddings (std 0.02) instead of
    swamping them (projected standardised features have std ~0.6); applies to every method."""
    content_scale: float = 0.05
    """Initial value of that learned scalar."""
    output_content: bool = False
    """Also put item content into the prediction layer: score = h . (ID embedding + content).
    With the full-softmax CE loss every training step computes the content of every item, once per
    step (also in micro-batches) and once per evaluation; on the 2-core CPU (Beauty, 1 thread) a
    concat step then costs 1.08x SASRec's, a PRISM step 1.9x (docs/benchmarks.md, session 16). How
    it is fused there: ``output_fusion``."""
    output_popularity_buckets: int = 0
    """Not in the paper (0 = off; else >= 2). With ``output_content``: each item's key in the
    prediction layer becomes a_id[b] * e_id(i) + a_content[b] * content(i), two learned scalars per
    bucket b of the item's count in the training sequences (every user's s[:-2]): bucket 0 = never
    seen, then 1, 2-3, 4-7, ... (powers of two), the last bucket open-ended; both start at 1, so the
    model starts as plain ``output_content``. Meant to let the model trust content more than the ID
    embedding for items whose ID embedding saw few interactions (on Beauty every content arm loses
    9-12% NDCG@10 on test items with <= 4 training occurrences). Measured on Beauty (CE, 3 seeds,
    docs/benchmarks.md §3 session 18) it does not: the learned scales raise the ID part of rare items
    (a_id about 2.0 for 2-7 occurrences, 1.4 for 64+; a_content 1.1-1.2 throughout), validation peaks
    earlier and lower, and test NDCG@10 is 1.5% below plain ``output_content`` for PRISM (p = 0.007),
    with the cold targets no better. With ``output_fusion=user`` the ID column and every expert's
    columns are scaled the same way. ``prismrec inspect`` prints the learned scalars."""
    output_fusion: Literal["items", "user"] = "items"
    """With ``output_content``: ``items`` = one shared item table, content = the fuser's
    user-independent item embedding (PRISM: the mean of its experts); ``user`` (PRISM with a
    dot-product backbone; not in the paper) = personalised fusion in the prediction layer:
    score(h, i) = h . e_id(i) + sum_j w_j(h) h . norm(e_j(i)), with weights w(h) =
    softmax(MLP(h) / temperature) from the sequence representation h that does the scoring, so
    each user chooses which expert's notion of similarity ranks the candidates. Costs one matmul
    with (E + 1) x hidden_dim columns instead of hidden_dim when scoring all items (a CE step on
    Beauty: 3.0x SASRec's on the 2-core CPU, 1 thread)."""

    def __post_init__(self) -> None:
        from ..config import ConfigError

        if self.expert_layers < 1 or self.expert_hidden < 1:
            raise ConfigError("model.prism.expert_layers and expert_hidden must be >= 1")
        if not 0.0 <= self.expert_dropout < 1.0 or not 0.0 <= self.fusion_dropout < 1.0:
            raise ConfigError("model.prism dropouts must be in [0, 1)")
        if self.temperature <= 0:
            raise ConfigError("model.prism.temperature must be > 0")
        if self.fusion_warmup_epochs < 0:
            raise ConfigError("model.prism.fusion_warmup_epochs must be >= 0 (0 = off)")
        if not 0.0 <= self.fusion_floor < 1.0:
            raise ConfigError("model.prism.fusion_floor must be in [0, 1) (0 = off)")
        if not (math.isfinite(self.lambda_fusion_balance) and self.lambda_fusion_balance >= 0):
            raise ConfigError("model.prism.lambda_fusion_balance must be a finite number >= 0 (0 = off)")
        if self.lambda_fusion_balance > 0 and (self.method != "prism" or self.fusion != "adaptive"):
            raise ConfigError("model.prism.lambda_fusion_balance needs model.prism.method=prism and "
                              "fusion=adaptive (it balances the adaptive fusion weights)")
        if self.loss_centering and self.method != "prism":
            raise ConfigError("model.prism.loss_centering needs model.prism.method=prism (it changes PRISM's synergy "
                              "and redundancy losses)")
        if self.fusion_input_norm and (self.method != "prism" or self.fusion != "adaptive"):
            raise ConfigError("model.prism.fusion_input_norm needs model.prism.method=prism and fusion=adaptive "
                              "(it standardises the adaptive fusion layer's inputs)")
        if ((self.fusion_warmup_epochs > 0 or self.fusion_floor > 0)
                and (self.method != "prism" or (self.fusion != "adaptive" and self.output_fusion != "user"))):
            raise ConfigError("model.prism.fusion_warmup_epochs and fusion_floor need model.prism.method=prism "
                              "with learned fusion weights (fusion=adaptive, or output_fusion=user)")
        if not 0.0 <= self.id_dropout < 1.0:
            raise ConfigError("model.prism.id_dropout must be in [0, 1)")
        if self.margin < 0:
            raise ConfigError("model.prism.margin must be >= 0")
        lambdas = {"lambda_unique": self.lambda_unique, "lambda_synergy": self.lambda_synergy,
                   "lambda_redundancy": self.lambda_redundancy,
                   **{f"lambda_unique_per_modality.{m}": v for m, v in self.lambda_unique_per_modality.items()}}
        for key, value in lambdas.items():
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"model.prism.{key} must be a finite number >= 0 (0 = off), got {value}")
        if not 0.0 < self.loss_user_fraction <= 1.0:
            raise ConfigError("model.prism.loss_user_fraction must be in (0, 1] (1 = every user of the batch)")
        if self.loss_user_fraction < 1.0 and (self.method != "prism" or self.loss_on != "prediction"):
            raise ConfigError("model.prism.loss_user_fraction needs model.prism.method=prism and loss_on=prediction "
                              "(it samples the users whose masked views go through the encoder)")
        if self.loss_items < 0:
            raise ConfigError("model.prism.loss_items must be >= 0 (0 = every distinct item of the step)")
        if self.loss_items > 0 and (self.method != "prism" or self.loss_on != "representation"):
            raise ConfigError("model.prism.loss_items needs model.prism.method=prism and loss_on=representation "
                              "(it samples the items of the item-level interaction losses)")
        if self.lambda_transition < 0 or self.transition_temperature <= 0:
            raise ConfigError("model.prism.lambda_transition must be >= 0 and transition_temperature > 0")
        if self.lambda_id_align < 0:
            raise ConfigError("model.prism.lambda_id_align must be >= 0")
        if self.lambda_id_align > 0 and (self.method != "prism" or self.loss_on != "representation"):
            raise ConfigError("model.prism.lambda_id_align needs model.prism.method=prism and "
                              "loss_on=representation (it is an item-level loss on the experts' outputs)")
        if self.lambda_transition > 0 and (self.method != "prism" or self.loss_on != "representation"):
            raise ConfigError("model.prism.lambda_transition needs model.prism.method=prism and "
                              "loss_on=representation (it is an item-level loss on the experts' outputs)")
        if self.synergy_contrast and (self.method != "prism" or "synergy" in self.drop_experts):
            raise ConfigError("model.prism.synergy_contrast needs model.prism.method=prism with the synergy expert")
        if self.output_fusion == "user" and (not self.output_content or self.method != "prism"):
            raise ConfigError("model.prism.output_fusion=user needs model.prism.output_content=true and "
                              "model.prism.method=prism (per-expert item embeddings)")
        if self.output_popularity_buckets < 0 or self.output_popularity_buckets == 1:
            raise ConfigError("model.prism.output_popularity_buckets must be 0 (off) or >= 2")
        if self.output_popularity_buckets and not self.output_content:
            raise ConfigError("model.prism.output_popularity_buckets needs model.prism.output_content=true "
                              "(it scales the prediction layer's ID and content parts per popularity bucket)")
        if self.method != "prism":
            prism_only = [key for key, on in (("drop_experts", bool(self.drop_experts)),
                                              ("fusion=uniform", self.fusion != "adaptive"),
                                              ("loss_on=prediction", self.loss_on != "representation")) if on]
            if prism_only:
                raise ConfigError(f"model.prism.{', '.join(prism_only)} applies only to model.prism.method=prism "
                                  f"(the naive fusion {self.method!r} has no experts, fusion layer or interaction "
                                  f"losses); remove it or use method=prism")
        for name in self.drop_experts:
            if not (name in ("synergy", "redundancy") or name.startswith("unique_")):
                raise ConfigError(f"model.prism.drop_experts: unknown expert {name!r}; "
                                  f"use unique_<modality>, synergy or redundancy")
