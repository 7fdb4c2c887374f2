"""Typed, frozen configuration for every component, plus YAML / ``--set`` overrides.

Each component takes only its own dataclass. The top-level :class:`ExperimentConfig`
groups them by section (``data``, ``model``, ``train``, ``eval``). Configs are built
from plain dicts (parsed YAML, never executed) by :func:`from_dict`, which rejects
unknown keys with a message listing the valid ones and coerces/validates types.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from .backbone_config import InDiRecConfig, STOSAConfig
from .prism.config import PRISMConfig


class ConfigError(ValueError):
    """A configuration value or key is invalid. The message says which and why."""


# ----------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and noise of the embedded synthetic multimodal world (see ``prismrec.data.synthetic``)."""

    num_users: int = 2000
    """Number of users in the synthetic world."""
    num_items: int = 1200
    """Number of items in the synthetic world."""
    min_len: int = 6
    """Shortest user sequence (before the leave-one-out split)."""
    max_len: int = 24
    """Longest user sequence."""
    feature_dim: int = 32
    """Dimension of each synthetic modality ("image", "text")."""
    feature_noise: float = 0.3
    """Std of isotropic Gaussian noise added to each synthetic feature vector."""
    follow_prob: float = 0.8
    """Probability that a step follows the user's planted preference (else a popularity draw)."""
    popularity_alpha: float = 1.0
    """Zipf exponent of item popularity (0 = uniform)."""
    synergy_categories: int = 8
    """Values of the two latents ``a`` (image) and ``b`` (text) whose sum modulo this number is the
    synergy property, i.e. the synergy property's categories. 8 (the default, like every other
    property) makes it a 64-cell lookup that an expert-sized MLP reads only partly even when trained
    on it directly (docs/benchmarks.md §4); 2 is a plain XOR. Smaller values keep the property purely
    synergistic (each modality alone still says nothing) but give synergy users broader preferences
    (1/K of the items). One of 2, 4, 8 (divisors of the 8 categories the preferences are drawn over)."""
    oracle_modality: bool = False
    """Diagnostic, not a realistic modality: add a third synthetic modality ``synergy_oracle``, a
    noisy linear map of the synergy property itself, so content *shows* the synergy directly instead
    of hiding it in an interaction between ``image`` and ``text``. It answers "if an expert did compute
    the synergy, could the model use it?" (an upper bound for PRISM's synergy expert). Drawn after the
    rest of the world, so items, users and the other two modalities are unchanged."""
    seed: int = 0
    """Seed of the generator: the same seed always gives the same world."""

    def __post_init__(self) -> None:
        _check(self.num_users >= 10, "data.synthetic.num_users must be >= 10")
        _check(self.num_items >= 64, "data.synthetic.num_items must be >= 64")
        _check(3 <= self.min_len <= self.max_len, "need 3 <= data.synthetic.min_len <= max_len")
        _check(self.feature_dim >= 8, "data.synthetic.feature_dim must be >= 8")
        _check(math.isfinite(self.feature_noise) and self.feature_noise >= 0,
               "data.synthetic.feature_noise must be a finite number >= 0")
        _check(0.0 <= self.follow_prob <= 1.0, "data.synthetic.follow_prob must be in [0, 1]")
        _check(self.synergy_categories in (2, 4, 8), "data.synthetic.synergy_categories must be 2, 4 or 8")
        _check(self.seed >= 0, f"data.synthetic.seed must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class DataConfig:
    """Where the interactions come from and how sequences are cut."""

    path: str | None = None
    """Sequence file (``user item item ...``), prepared dataset folder, or a folder of
    ``../shared/data`` style. ``None`` uses the embedded synthetic world."""
    max_seq_len: int = 50
    """Most recent items kept per input sequence (older ones are truncated)."""
    min_seq_len: int = 3
    """Users with fewer items are dropped (with a warning); 3 is the minimum for leave-one-out."""
    modalities: tuple[str, ...] = ()
    """Feature matrices to load (names under ``features/``); empty = all available. A run with
    ``model.prism.enabled`` saves the list it read in its ``config.yaml``, so a matrix added to the
    dataset later does not change the saved run."""
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    """Settings of the embedded synthetic world (used only when ``path`` is ``None``)."""

    def __post_init__(self) -> None:
        _check(self.max_seq_len >= 2, "data.max_seq_len must be >= 2")
        _check(self.min_seq_len >= 3, "data.min_seq_len must be >= 3 (leave-one-out needs 3 items)")


@dataclass(frozen=True)
class ModelConfig:
    """Backbone architecture. Fields shared by every backbone live here."""

    backbone: str = "sasrec"
    """Registered backbone name (see ``prismrec.models.registry``)."""
    hidden_dim: int = 64
    """Width of item embeddings and hidden states."""
    num_layers: int = 2
    """Number of self-attention blocks."""
    num_heads: int = 2
    """Attention heads per block (must divide ``hidden_dim``)."""
    dropout: float = 0.5
    """Dropout on embeddings, attention probabilities and feed-forward outputs."""
    ffn_mult: int = 1
    """Feed-forward width as a multiple of ``hidden_dim`` (SASRec uses 1)."""
    block: Literal["pre_norm", "sasrec"] = "pre_norm"
    """Self-attention block layout of the transformer backbones (SASRec, InDiRec). ``pre_norm``
    (default): ``x + Attn(LN(x))``, ``x + FFN(LN(x))``, GELU, dropout on the attention output too.
    ``sasrec``: the layout of SASRec's original code: only the queries are normed and the residual
    starts from them, then ``LN`` and a ReLU feed-forward with its own residual; no dropout on the
    attention output. Measured (BCE SASRec, Beauty, seed 1): ``sasrec`` learns faster early (valid
    NDCG@10 0.0260 vs 0.0203 at epoch 12) but ends level or lower (test 0.0322 vs 0.0335, p = 0.13)."""
    input_scale: Literal["auto", "none", "sqrt_dim"] = "sqrt_dim"
    """``sqrt_dim`` (default) multiplies the item input by sqrt(hidden_dim) before adding positions, as
    SASRec's original code does: without it the BCE loss's sparsely updated item embeddings stay small
    next to the positions and learn several times slower, and CE converges 3-4x slower to the same
    quality (Beauty, 3 seeds each: 0.0501 none vs 0.0495 sqrt_dim, length-bucketed; the best CE results,
    with random batches, use sqrt_dim). ``auto`` = the former default: ``sqrt_dim`` for ``bce``,
    ``none`` for ``ce``. SASRec and InDiRec only: STOSA adds its mean and covariance inputs to the
    positions unscaled, as STOSA's code does."""
    positions: Literal["from_start", "from_end"] = "from_start"
    """Which index each item's learned positional embedding gets. ``from_start``: 0 for the oldest
    item of the window, so position t depends only on items <= t. ``from_end``: 0 for the most recent
    item, as in SASRec's original right-aligned window; position t then sees how many items follow it
    (their count, not their identity). Both are independent of the amount of left padding."""
    item_bias: bool = False
    """A learned score offset per item, ``score(u, i) = q_u . k_i + b_i`` (not in the paper; off by default).
    ``b_i`` starts at 0 (or see ``item_bias_init``) and is trained with the model; it lets the prediction layer carry how likely an
    item is regardless of the user (its popularity) apart from the item's embedding, a trained
    counterpart of the ranking-time popularity prior (``prismrec evaluate --popularity-prior``).
    Dot-product backbones (SASRec, InDiRec); STOSA refuses it."""
    item_bias_init: Literal["zero", "log_count"] = "zero"
    """Where ``model.item_bias``'s offsets start: ``zero`` (default), or ``log_count`` = ``log(1 + c_i)``
    with ``c_i`` item i's count in the training sequences (every user's s[:-2]): the model starts from the
    ranking-time popularity prior with beta = 1 and training corrects it. Only with ``model.item_bias``."""
    prism: PRISMConfig = field(default_factory=PRISMConfig)
    """The multimodal item input (PRISM or a naive-fusion baseline); off by default."""
    stosa: STOSAConfig = field(default_factory=STOSAConfig)
    """Settings read only by the ``stosa`` backbone."""
    indirec: InDiRecConfig = field(default_factory=InDiRecConfig)
    """Settings read only by the ``indirec`` backbone."""

    def __post_init__(self) -> None:
        _check(self.hidden_dim >= 1, "model.hidden_dim must be >= 1")
        _check(self.num_layers >= 1, "model.num_layers must be >= 1")
        _check(self.num_heads >= 1 and self.hidden_dim % self.num_heads == 0,
               f"model.num_heads ({self.num_heads}) must divide model.hidden_dim ({self.hidden_dim})")
        _check(0.0 <= self.dropout < 1.0, "model.dropout must be in [0, 1)")
        _check(self.ffn_mult >= 1, "model.ffn_mult must be >= 1 (the feed-forward width is ffn_mult x hidden_dim)")
        _check(self.item_bias or self.item_bias_init == "zero",
               "model.item_bias_init is where model.item_bias's offsets start: set model.item_bias=true too")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and early stopping."""

    loss: Literal["ce", "bce"] = "ce"
    """``ce``: full-softmax cross-entropy over all items; ``bce``: binary CE with one sampled
    negative per position (the original SASRec setting)."""
    optimizer: Literal["adam", "adamw"] = "adam"
    """Optimizer."""
    lr: float = 1e-3
    """Learning rate."""
    weight_decay: float = 0.0
    """Weight decay (decoupled for ``adamw``, L2 for ``adam``)."""
    epochs: int = 200
    """Maximum number of epochs."""
    batch_size: int = 256
    """Users per training batch."""
    length_bucketing: Literal["auto"] | bool = "auto"
    """Group users of similar sequence length into batches (shuffled order of batches, and of
    users within ~50-batch pools), so that dropping all-padding columns saves more. ``auto`` = on
    when the model trains with sampled negatives (``bce``, and STOSA's own BPR loss, which ignores
    ``train.loss``), off for full-softmax CE, from measurements on Beauty (docs/benchmarks.md section 1): with CE,
    one-length batches learn worse (test NDCG@10 0.0502 bucketed vs 0.0551 with random batches, same
    seed); with BCE random batches did not help (0.0247 and 0.0243 vs 0.0263-0.0298 bucketed). Random
    batches still drop their all-padding columns, and ``micro_batches`` pads each part separately."""
    loss_normalization: Literal["batch", "epoch"] = "batch"
    """How the recommendation loss of a batch is averaged. ``batch``: mean over the batch's target
    positions, so with ``length_bucketing`` a position in a batch of short histories weighs up to
    max_seq_len times more than one in a batch of long histories. ``epoch``: sum over the batch's
    targets divided by the epoch's mean number of targets per batch, so every target position weighs
    the same whichever batch it falls in (as a mean over a random batch does on average)."""
    micro_batches: int = 4
    """Split each batch into this many parts of users sorted by history length and accumulate their
    gradients before the optimizer step. The step's gradient is the whole batch's (the recommendation
    loss of each part is weighted by its share of the batch's targets, other terms by its share of
    users), but each part pads only to its own longest history: cheaper epochs without the
    one-length batches of ``length_bucketing`` (Beauty, CPU: CE epochs as cheap as bucketed ones,
    BCE epochs 2.3x cheaper than with 1 part). PRISM's item-level work (experts on the batch's distinct
    items) and its ``representation`` interaction losses (masking statistics included) still run once
    per batch, as with 1 part; other per-batch terms (``prediction`` interaction losses, InDiRec's
    contrastive samples) become per-part averages. 1 = off."""
    patience: Literal["auto"] | int = "auto"
    """Stop after this many evaluations without improvement of ``metric`` on validation. ``auto`` =
    20 for full-softmax CE, 30 for sampled-negative losses (``bce``, STOSA's BPR; see
    :data:`AUTO_PATIENCE`): on Beauty, validation NDCG@10 kept
    improving in steps up to 10 (CE) and 23 (BCE) epochs apart, and the former default of 10 stopped
    a BCE SASRec at valid NDCG@10 0.0377 (epoch 69) where it went on to 0.040 (docs/benchmarks.md
    section 1)."""
    metric: str = "NDCG@10"
    """Validation metric for early stopping and best-checkpoint selection."""
    time_limit_minutes: float = 0.0
    """Stop after the epoch during which this much training+evaluation time has passed, then restore
    the best state and finish normally (0 = no limit). The summary says why training stopped."""
    eval_every: int = 1
    """Evaluate on validation every this many epochs."""
    grad_clip: float = 0.0
    """Clip gradient norm to this value (0 = off)."""
    seed: int = 42
    """Seed for initialisation, shuffling and negative sampling."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto`` uses CUDA when available."""
    num_threads: int = 0
    """torch intra-op threads on CPU (0 = torch default)."""
    resume_state: bool = True
    """After every epoch, save what ``prismrec train --resume DIR`` needs to continue the run exactly
    where it stopped (time limit, interrupt, crash, or more epochs wanted) in DIR/resume/: current and
    best weights (safetensors), optimizer state, random-number-generator states and the epoch history.
    Costs one write of about 4x the model's size per epoch."""

    def __post_init__(self) -> None:
        _check(math.isfinite(self.lr) and self.lr > 0, "train.lr must be a finite number > 0")
        _check(math.isfinite(self.weight_decay) and self.weight_decay >= 0,
               "train.weight_decay must be a finite number >= 0")
        _check(self.epochs >= 1, "train.epochs must be >= 1")
        _check(self.batch_size >= 1, "train.batch_size must be >= 1")
        _check(self.micro_batches >= 1, "train.micro_batches must be >= 1")
        _check(self.patience == "auto" or (isinstance(self.patience, int) and self.patience >= 1),
               "train.patience must be 'auto' or an integer >= 1")
        _check(self.eval_every >= 1, "train.eval_every must be >= 1")
        _check(math.isfinite(self.time_limit_minutes) and self.time_limit_minutes >= 0,
               "train.time_limit_minutes must be a finite number >= 0 (0 = no limit)")
        _check(math.isfinite(self.grad_clip) and self.grad_clip >= 0,
               "train.grad_clip must be a finite number >= 0 (0 = off)")
        _check(self.num_threads >= 0, "train.num_threads must be >= 0 (0 = torch's default)")

    def resolved_patience(self, sampled_loss: bool | None = None) -> int:
        """``patience`` with ``auto`` replaced by :data:`AUTO_PATIENCE` for the loss the model trains
        with: ``sampled_loss`` (the model's ``needs_negatives``), or ``loss == "bce"`` when not given."""
        if self.patience != "auto":
            return int(self.patience)
        return AUTO_PATIENCE["bce" if self._sampled(sampled_loss) else "ce"]

    def resolved_length_bucketing(self, sampled_loss: bool | None = None) -> bool:
        """``length_bucketing`` with ``auto`` replaced by ``sampled_loss`` (see :meth:`resolved_patience`)."""
        return self._sampled(sampled_loss) if self.length_bucketing == "auto" else bool(self.length_bucketing)

    def _sampled(self, sampled_loss: bool | None) -> bool:
        return self.loss == "bce" if sampled_loss is None else bool(sampled_loss)


@dataclass(frozen=True)
class EvalConfig:
    """Full-ranking evaluation."""

    ks: tuple[int, ...] = (5, 10, 20)
    """Cut-offs for HR@K, NDCG@K and MRR@K."""
    exclude_history: bool = True
    """Score the user's history items as -inf (the target itself is never excluded)."""
    batch_size: int = 512
    """Users scored per batch (512: fastest full evaluation of Beauty on a 2-core CPU in
    benchmarks/bench_eval.py, where the (batch x items) score block stays closer to cache)."""
    track_test: bool = False
    """Also evaluate the test split at every validation step and log it in ``metrics.jsonl``
    (for learning curves and time-to-quality benchmarks; never used for model selection)."""

    def __post_init__(self) -> None:
        _check(len(self.ks) > 0 and all(k >= 1 for k in self.ks), "eval.ks must be positive integers")
        _check(len(set(self.ks)) == len(self.ks), f"eval.ks {list(self.ks)} repeats a cut-off; list each once")
        _check(self.batch_size >= 1, "eval.batch_size must be >= 1")


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything needed to reproduce a run. Saved as ``config.yaml`` in every run directory."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        _check(self.train.metric.split("@")[0] in {"HR", "NDCG", "MRR"}
               and self.train.metric.split("@")[-1].isdigit()
               and int(self.train.metric.split("@")[-1]) in self.eval.ks,
               f"train.metric {self.train.metric!r} must be HR@K, NDCG@K or MRR@K with K in eval.ks {self.eval.ks}")


AUTO_PATIENCE = {"ce": 20, "bce": 30}
"""``train.patience: auto`` per kind of loss: full-softmax ``ce``, or sampled negatives (``bce``)."""

#: keys added with a default that reproduces exactly what prismrec did before they existed: a saved
#: config.yaml without them is not a concern, so no "predates config key" warning names them
NEUTRAL_ADDITIONS = frozenset({"data.synthetic.synergy_categories", "model.prism.lambda_transition",
                               "model.prism.transition_temperature", "model.stosa.content_streams",
                               "model.prism.content_gate", "model.prism.loss_items",
                               "data.synthetic.oracle_modality", "model.prism.id_dropout",
                               "model.prism.lambda_id_align", "model.prism.fusion_warmup_epochs",
                               "model.prism.fusion_floor", "model.prism.lambda_fusion_balance",
                               "model.item_bias", "model.item_bias_init", "model.prism.fusion_input_norm",
                               "model.prism.loss_user_fraction", "model.prism.loss_centering"})

#: keys that may change when a run is resumed (``prismrec train --resume``); the rest must match
RESUMABLE_CHANGES = ("train.epochs", "train.patience", "train.time_limit_minutes", "train.device",
                     "train.num_threads", "eval.batch_size", "data.path")


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


# ----------------------------------------------------------------------------- dict <-> dataclass


def to_dict(cfg: Any) -> Any:
    """Plain YAML-able representation (tuples become lists)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (tuple, list)):
        return [to_dict(v) for v in cfg]
    return cfg


def from_dict(cls: type, data: Mapping[str, Any] | None, where: str = "") -> Any:
    """Build dataclass ``cls`` from a nested mapping, validating keys and value types."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping of keys, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(_join(where, k) for k in unknown)}; "
            f"valid keys{' in ' + where if where else ''}: {', '.join(sorted(fields))}")
    kwargs = {name: _coerce(hints[name], value, _join(where, name)) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - defensive
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors))
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        inner = args[0] if args else Any
        return tuple(_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_tp, value_tp = args if len(args) == 2 else (Any, Any)
        return {_coerce(key_tp, k, f"{where} (key {k!r})"): _coerce(value_tp, v, _join(where, str(k)))
                for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "yes", "no", "1", "0"}:
            return value.lower() in {"true", "yes", "1"}
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            as_float = float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if not as_float.is_integer():
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(as_float)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


# ----------------------------------------------------------------------------- overrides / files


def parse_set(assignments: list[str] | None) -> dict[str, Any]:
    """Turn ``["train.lr=0.01", "eval.ks=[5,10]"]`` into a nested dict.

    Values are parsed with ``yaml.safe_load`` (numbers, booleans, lists); nothing is executed.
    """
    out: dict[str, Any] = {}
    for item in assignments or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"--set {item!r}: empty key")
        if not raw.strip():  # e.g. an unset shell variable: never read as null (data.path=null = synthetic world)
            raise ConfigError(f"--set {item!r}: empty value; give one (write {key.strip()}=null for null)")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {p} is both a value and a section")
        node[parts[-1]] = value
    return out


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base``."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config {path}: not valid UTF-8 (byte {exc.object[exc.start]:#04x} "
                          f"at offset {exc.start}); a config must be a UTF-8 YAML text file") from None
    class UniqueKeyLoader(yaml.SafeLoader):
        """``yaml.safe_load`` semantics, except that a key repeated in one mapping is an error (plain
        YAML silently keeps the last one, e.g. of two ``train:`` sections). Merge keys (``<<``) may
        still be overridden."""

        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, int] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    line = key_node.start_mark.line + 1
                    try:
                        first = seen.get(key)
                    except TypeError:  # unhashable: the base constructor reports it
                        continue
                    if first is not None:
                        raise ConfigError(f"{path}:{line}: duplicate key {key!r} (first at line {first}); "
                                          f"YAML would silently keep only the last one: merge them")
                    seen[key] = line
            return super().construct_mapping(node, deep=deep)

    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: builds plain data, never executes
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        what = getattr(exc, "problem", None) or str(exc)
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and start is not None:
            context += f" that starts at line {start.line + 1}, column {start.column + 1}"
        raise ConfigError(f"{where}: not valid YAML: {what}" + (f" ({context})" if context else "")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def packaged_recipes() -> dict[str, Path]:
    """The recipes that ship inside the package (``prismrec/recipes/<name>.yaml``): name -> file."""
    root = Path(__file__).resolve().parent / "recipes"
    return {p.stem: p for p in sorted(root.glob("*.yaml"))}


def recipe_path(config_file: str | Path) -> Path:
    """``config_file`` if it exists; else, for a bare name such as ``stosa_beauty`` (or
    ``stosa_beauty.yaml``), the packaged recipe of that name, so that recipes work from an installed
    package without the source checkout. Anything else is returned as given (reading it then fails
    with the list of packaged recipes)."""
    path = Path(config_file)
    if path.exists() or len(path.parts) != 1:
        return path
    return packaged_recipes().get(path.name[:-5] if path.name.endswith(".yaml") else path.name, path)


def build_config(config_file: str | Path | None = None, overrides: list[str] | None = None,
                 extra: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Defaults <- YAML recipe <- ``extra`` (e.g. CLI flags) <- ``--set`` overrides. ``config_file``: a
    YAML file, or the name of a packaged recipe (:func:`packaged_recipes`)."""
    if config_file:
        config_file = recipe_path(config_file)
        if not config_file.exists():
            raise ConfigError(f"cannot read config {config_file}: no such file (packaged recipes, usable by name "
                              f"alone: {', '.join(packaged_recipes()) or 'none'})")
    from_file: dict[str, Any] = load_yaml(config_file) if config_file else {}
    raw = deep_merge(from_file, extra) if extra else from_file
    raw = deep_merge(raw, parse_set(overrides))
    try:
        return from_dict(ExperimentConfig, raw)
    except ConfigError as exc:
        if config_file and _same_error(from_file, exc):
            raise ConfigError(f"{config_file}: {exc}") from None  # the file's own mistake: name it
        raise


def _same_error(raw: Mapping[str, Any], exc: ConfigError) -> bool:
    """Whether ``raw`` alone fails with the error ``exc`` (so that error comes from it)."""
    try:
        from_dict(ExperimentConfig, raw)
    except ConfigError as alone:
        return str(alone) == str(exc)
    return False


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
