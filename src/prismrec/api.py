"""Public API: train a model from a config, reload a run, evaluate it, recommend from it.

Experiments and the CLI are clients of these functions.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .config import (NEUTRAL_ADDITIONS, RESUMABLE_CHANGES, ConfigError, ExperimentConfig, build_config, load_yaml,
                     save_config)
from .data import LeaveOneOut, RecDataset, load_dataset
from .data.split import next_item_inputs, observed_item_counts, train_item_counts
from .data.sequences import DataError
from .data.split import pad_history
from .evaluation import EvalResult, evaluate
from .evaluation.evaluator import recommend_top
from .evaluation.compare import parse_metric
from .evaluation.popularity import (DEFAULT_BETAS, PriorChoice, check_betas, choose_beta, popularity_prior,
                                    ranks_for_betas, with_prior)
from .runlist import read_summary
from .models import SequentialRecommender, build_model
from .training import Trainer, resolve_device
from .training.checkpoint import hardware, load_weights, save_weights, source_revision, write_json
from .training.resume import RESUME_DIR
from .training.trainer import peak_memory_mb, seed_everything


@dataclass
class Run:
    """A trained (or reloaded) model with everything needed to use it."""

    config: ExperimentConfig
    dataset: RecDataset
    data: LeaveOneOut
    model: SequentialRecommender
    device: torch.device
    run_dir: Path | None = None
    summary: dict | None = None

    def evaluate(self, split: str = "test", top_k: int = 0, popularity_beta: float = 0.0) -> EvalResult:
        """Full-ranking metrics of ``split``; with ``top_k`` > 0 the result also holds every user's
        top-``top_k`` list (``top_items``; see :mod:`prismrec.evaluation.lists` for what to read from it).
        ``popularity_beta`` > 0 adds ``beta * log(1 + count)`` to every item's score, the count of the
        interactions before the split's targets (:mod:`prismrec.evaluation.popularity`; choose it with
        :meth:`choose_popularity_beta`)."""
        n = self.dataset.num_items
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 0 <= top_k <= n:
            raise ConfigError(f"top_k (--lists) must be an integer in 1..{n} (the number of items), or 0 for "
                              f"no lists; got {top_k!r}")
        beta = check_beta(popularity_beta)
        score_fn = self.model.full_sort_scores
        if beta:
            score_fn = with_prior(score_fn, self.popularity_prior(split), beta)
        self.model.eval()
        with self.model.cached_item_tables():  # content item tables once per evaluation, not per batch
            return evaluate(score_fn, self.data.split(split), self.config.eval.ks,
                            batch_size=self.config.eval.batch_size,
                            exclude_history=self.config.eval.exclude_history, device=self.device, top_k=top_k)

    def popularity_prior(self, split: str = "test") -> torch.Tensor:
        """(N + 1,) ``log(1 + c_i)`` for ranking ``split``: ``c_i`` = item i's count among the interactions
        observed before the split's targets (the training sequences; for ``test`` also every user's
        validation item; for ``all``, what :meth:`recommend` uses, every interaction of the dataset)."""
        return popularity_prior(observed_item_counts(self.dataset.sequences, split))

    def choose_popularity_beta(self, betas: tuple[float, ...] = DEFAULT_BETAS, metric: str = "NDCG@10") -> PriorChoice:
        """The popularity-prior ``beta`` of the grid ``betas`` with the best validation ``metric`` (the
        test split is not read); one scoring pass over the validation users for the whole grid."""
        try:
            parse_metric(metric)
        except ValueError as exc:
            raise ConfigError(f"popularity prior: {exc}") from None
        return choose_beta(self.popularity_ranks("valid", betas), metric)

    def popularity_ranks(self, split: str, betas: tuple[float, ...] = DEFAULT_BETAS) -> dict[float, torch.Tensor]:
        """Each user's target rank of ``split`` under every popularity-prior ``beta`` of the grid, from
        one scoring pass: ``{beta: (U,) ranks}``."""
        try:
            betas = check_betas(betas)
        except ValueError as exc:
            raise ConfigError(f"popularity prior: {exc}") from None
        self.model.eval()
        with self.model.cached_item_tables():
            return ranks_for_betas(self.model.full_sort_scores, self.data.split(split), self.popularity_prior(split),
                                   betas, batch_size=self.config.eval.batch_size,
                                   exclude_history=self.config.eval.exclude_history, device=self.device)

    @torch.no_grad()
    def recommend(self, history: list[int], k: int = 10, exclude_history: bool = True,
                  popularity_beta: float = 0.0) -> list[tuple[int, float]]:
        """Top-``k`` items (id, score) after ``history`` (item ids, oldest first). ``popularity_beta`` > 0
        adds ``beta * log(1 + count)`` to every score (the returned scores include it), the count of the
        item among all the dataset's interactions (``popularity_prior("all")``; choose ``beta`` on the
        validation split with :meth:`choose_popularity_beta`). Fewer than ``k`` items come back when the
        catalogue, less the excluded history, holds fewer."""
        check_k(k)
        beta = check_beta(popularity_beta)
        n = self.dataset.num_items
        bad = [i for i in history if not 1 <= i <= n]
        if not history or bad:
            raise DataError(f"history must be a non-empty list of item ids in 1..{n}; invalid: {bad or 'empty'}")
        self.model.eval()
        seq = pad_history(history, self.config.data.max_seq_len).to(self.device)
        score_fn = self.model.full_sort_scores
        if beta:
            score_fn = with_prior(score_fn, self.popularity_prior("all"), beta)
        scores = score_fn(seq)[0].float()  # (N + 1,)
        scores[0] = float("-inf")
        if exclude_history:
            scores[torch.tensor(history, device=self.device)] = float("-inf")
        top = torch.topk(scores, min(k, n))
        return [(int(i), float(s)) for s, i in zip(top.values.cpu(), top.indices.cpu()) if s > float("-inf")]

    def recommend_all(self, k: int = 10, exclude_history: bool = True,
                      popularity_beta: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Every user's top-``k`` items after their whole sequence (validation and test items included:
        what to show them next), batched as evaluation is: ``(items (U, k), scores (U, k))`` in the
        dataset's user order (``dataset.sequences.user_ids``), best first. ``popularity_beta`` as in
        :meth:`recommend`. Where the catalogue, less the excluded history, holds fewer than ``k`` items,
        a row ends in item 0 with score -inf."""
        check_k(k)
        beta = check_beta(popularity_beta)
        k = min(k, self.dataset.num_items)
        score_fn = self.model.full_sort_scores
        if beta:
            score_fn = with_prior(score_fn, self.popularity_prior("all"), beta)
        self.model.eval()
        with self.model.cached_item_tables():
            return recommend_top(score_fn, next_item_inputs(self.dataset.sequences, self.config.data.max_seq_len),
                                 k, batch_size=self.config.eval.batch_size, exclude_history=exclude_history,
                                 device=self.device)


def check_beta(beta: float) -> float:
    """One popularity-prior ``beta`` as a float: a finite number >= 0 (0 = no prior)."""
    try:
        (out,) = check_betas([beta])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"popularity beta (--popularity-prior): {exc}") from None
    return out


def check_k(k: int) -> int:
    """``k`` for top-k recommendations: at least 1."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"-k (number of items to recommend) must be an integer >= 1, got {k!r}")
    return k


#: a sequence file whose ids up to the largest leave more than this many unused, and more unused than
#: used, is refused (:func:`check_dense_item_ids`)
MAX_UNUSED_ITEM_IDS = 1000


def dataset_from_config(cfg: ExperimentConfig) -> RecDataset:
    dataset = load_dataset(cfg.data.path, min_seq_len=cfg.data.min_seq_len, modalities=cfg.data.modalities,
                           synthetic=cfg.data.synthetic)
    if cfg.data.path is not None:
        check_dense_item_ids(dataset, cfg.data.min_seq_len)
    return dataset


def check_dense_item_ids(dataset: RecDataset, min_seq_len: int) -> None:
    """Refuse a dataset whose item count was taken from the largest id of a sequence file (no item
    map declares it) when most ids up to it never occur: every id 1..largest is an item the model
    embeds and ranks, so an id of 10**12 asks for terabytes, and 2,000,000 for 41 items ranks
    phantom items. Prepared folders and benchmark folders with ``datamaps.json`` declare their items."""
    if dataset.item_raw_ids is not None:
        return
    largest = dataset.num_items
    seen = dataset.num_items_seen
    if largest > 2 * seen and largest - seen > MAX_UNUSED_ITEM_IDS:
        raise DataError(f"{dataset.source or dataset.name}: the largest item id is {largest:,} but only {seen:,} "
                        f"distinct item ids occur (users with at least {min_seq_len} items); item ids must be "
                        f"numbered 1..N, as every id up to the largest is an item the model embeds and ranks. "
                        f"Renumber the items with `prismrec data prepare` (e.g. write the interactions as a "
                        f"RecBole .inter file and run `prismrec data prepare recbole --inter FILE.inter "
                        f"--out DIR --k-core 0`) and train on DIR")


def check_output_file(path: str | Path, what: str, example: str = "out") -> Path:
    """Check, before any work, that the file ``path`` (given with the option ``what``) can be
    written: not a folder, in a folder that exists and is writable. ``example``: a file name for
    the message when ``path`` is a folder."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; expected a file path such as {path / example}")
    parent = path.parent
    if not parent.is_dir():
        what_is = "is a file, not a folder" if parent.exists() else "does not exist"
        raise ConfigError(f"{what} {path}: folder {parent} {what_is}")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"{what} {path}: folder {parent} is not writable")
    return path


def check_output_dir(path: str | Path, what: str) -> Path:
    """Check, before any work, that the folder ``path`` (given with the option ``what``) can be used
    or created: neither it nor the nearest existing folder above it is a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} is a file; expected a folder (created if missing)")
    above = next((p for p in path.parents if p.exists()), None)
    if not path.exists() and above is not None and not above.is_dir():
        raise ConfigError(f"{what} {path}: {above} is a file, not a folder")
    return path


def check_run_dir(path: str | Path, overwrite: bool = False, option: str = "--output-dir") -> Path:
    """An ``--output-dir`` (or another ``option``'s folder) for a new run: a folder (or creatable),
    and, unless ``overwrite``, one that does not already hold a run (``config.yaml`` or ``summary.json``)."""
    path = check_output_dir(path, option)
    held = [f for f in ("config.yaml", "summary.json") if (path / f).is_file()]
    if held and not overwrite:
        own = option == "--output-dir"  # train's folder: --overwrite and --resume apply
        cont = f"--resume {path} to continue it, " if own and (path / RESUME_DIR).is_dir() and \
            "summary.json" not in held else ""
        fix = "pass --overwrite to replace it, " if own else ""
        raise ConfigError(f"{option} {path} already holds a run ({', '.join(held)}); {fix}{cont}or choose "
                          f"another folder")
    return path


def feature_tensors(dataset: RecDataset, modalities: tuple[str, ...] = ()) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    names = list(modalities) or list(dataset.features)
    missing = [m for m in names if m not in dataset.features]
    if missing:
        raise DataError(f"dataset {dataset.name!r} has no modality {missing}; available: {sorted(dataset.features)}")
    return {m: (torch.from_numpy(dataset.features[m].values).float(), torch.from_numpy(dataset.features[m].present))
            for m in names}


def build(cfg: ExperimentConfig, dataset: RecDataset | None = None, device: torch.device | None = None) -> Run:
    """Load data and build an untrained model for ``cfg`` (seeded). The run's config names the feature
    matrices the model reads: with PRISM on and ``data.modalities`` empty ("all available") it becomes
    the dataset's list, so a matrix added to the dataset later does not change what the saved run loads."""
    dataset = dataset if dataset is not None else dataset_from_config(cfg)
    cfg = resolve_modalities(cfg, dataset)
    data = LeaveOneOut.build(dataset.sequences, cfg.data.max_seq_len)
    seed_everything(cfg.train.seed)
    model = build_model(cfg.model, dataset.num_items, cfg.data.max_seq_len, cfg.train.loss,
                        feature_tensors(dataset, cfg.data.modalities),
                        torch.from_numpy(train_item_counts(dataset.sequences)))
    device = device or resolve_device(cfg.train.device)
    return Run(config=cfg, dataset=dataset, data=data, model=model.to(device), device=device)


def resolve_modalities(cfg: ExperimentConfig, dataset: RecDataset) -> ExperimentConfig:
    """``cfg`` with ``data.modalities`` set to the dataset's feature matrices, in their order, where PRISM
    (or a naive fusion) reads them and the config left the list empty; otherwise ``cfg`` unchanged."""
    if not cfg.model.prism.enabled or cfg.data.modalities:
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, modalities=tuple(dataset.features)))


def default_run_dir(cfg: ExperimentConfig, dataset: RecDataset) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    # the loss the model trains with: STOSA has its own (model.stosa.loss), whatever train.loss says
    loss = cfg.model.stosa.loss if cfg.model.backbone == "stosa" else cfg.train.loss
    return Path("runs") / f"{stamp}-{dataset.name}-{cfg.model.backbone}-{loss}"


def warn_unused_item_ids(dataset: RecDataset) -> None:
    """Item ids are 1..max id: ids that no sequence holds still get embeddings and are ranked in every
    full-ranking evaluation (harder ranking, lower scores than with the ids remapped). Say so, once."""
    if dataset.extras.get("synthetic"):  # a generated world's catalogue is what it planted; no file to renumber
        return
    unused = dataset.num_items - dataset.num_items_seen
    if unused:
        warnings.warn(f"{dataset.source or dataset.name}: {unused:,} of the {dataset.num_items:,} item ids "
                      f"(1..{dataset.num_items:,}) {'occurs' if unused == 1 else 'occur'} in no sequence; "
                      f"{'it stays' if unused == 1 else 'they stay'} in the catalogue and every evaluation ranks "
                      f"{'it' if unused == 1 else 'them'} (renumber the items 1..K to leave them out)", stacklevel=3)


def finished_summary(run_dir: str | Path) -> dict | None:
    """The summary.json of the run in ``run_dir`` if that run ended; None if there is none, it cannot be
    read, or it is the summary of a run stopped by Ctrl-C / SIGTERM ("stop_reason": "interrupted", the
    best epoch so far: the run continues with ``--resume``)."""
    summary = read_summary(run_dir)  # None if unreadable: not finished, the resume state decides
    return None if summary is None or summary.get("stop_reason") == "interrupted" else summary


def train(cfg: ExperimentConfig, output_dir: str | Path | None = None, *, progress: bool = True,
          dataset: RecDataset | None = None, resume: bool = False) -> Run:
    """Train, early-stop on validation, restore the best state, evaluate on test, save the run.

    The run directory receives ``config.yaml`` (resolved), ``model.safetensors``,
    ``metrics.jsonl`` (one line per epoch), ``summary.json``, ``ranks.npz`` (each user's
    valid/test target rank, for paired significance tests) and, with ``train.resume_state``,
    ``resume/`` (see :func:`resume`). ``resume=True`` continues the run saved in ``output_dir``
    (use :func:`resume`, which also checks the config); a run whose epochs are all done but which
    wrote no ``summary.json`` (cut off while finishing) is finished without training further.
    """
    if output_dir:
        check_output_dir(output_dir, "output directory")
    prism = cfg.model.prism
    if prism.enabled and prism.fusion_scope == "sequence" and (
            (prism.method == "prism" and prism.fusion == "adaptive") or prism.content_gate):
        warnings.warn("model.prism.fusion_scope=sequence pools the fusion weights over the whole history, so in "
                      "all-position training an earlier position's input depends on the later items it is "
                      "trained to predict (a future leak); fusion_scope=causal (the default) does not",
                      stacklevel=2)
    ignored = ignored_prism_keys(cfg)
    if ignored:
        warnings.warn(f"{', '.join(ignored)} set, but model.prism.enabled=false: they change nothing, the model is "
                      f"the plain {cfg.model.backbone} (add --set model.prism.enabled=true to use them)", stacklevel=2)
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    revision = source_revision()  # the code this process loaded, before any commit made while it trains
    run = build(cfg, dataset)
    warn_unused_item_ids(run.dataset)
    run_dir = Path(output_dir) if output_dir else default_run_dir(cfg, run.dataset)
    try:  # before the run folder is made: a dataset too short to train on leaves nothing behind
        trainer = Trainer(run.model, run.data, run.config.train, run.config.eval, run.device, run_dir,
                          progress=progress, revision=revision,
                          tags={"item_map_fingerprint": run.dataset.item_map_fingerprint(),
                                "sequences_fingerprint": run.dataset.sequences_fingerprint()})
    except DataError as exc:
        raise DataError(f"{run.dataset.source or run.dataset.name}: {exc}") from None
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        # a previous run's results must not outlive this one, nor its state be resumed
        for name in ("metrics.jsonl", "summary.json", "ranks.npz", "model.safetensors"):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / RESUME_DIR, ignore_errors=True)
    cfg = run.config  # with the feature matrices it reads named
    save_config(cfg, run_dir / "config.yaml")
    # a run cut off (or interrupted: its summary says so) after its last epoch is just finished
    fit = trainer.fit(resume=resume, finished_ok=resume and finished_summary(run_dir) is None)
    valid = run.evaluate("valid")
    test = run.evaluate("test")
    save_weights(run.model, run_dir, metadata={"prismrec_version": __version__,
                                               "item_map_fingerprint": run.dataset.item_map_fingerprint()})
    summary = {
        "dataset": run.dataset.name,
        "backbone": cfg.model.backbone,
        "loss": run.model.loss_name,  # the loss it trained with (STOSA: its own, model.stosa.loss)
        "valid": valid.metrics,
        "test": test.metrics,
        "best_epoch": fit.best_epoch,
        "epochs_run": fit.epochs_run,
        "stopped_early": fit.stopped_early,
        "stop_reason": fit.stop_reason,
        "patience": trainer.patience,  # train.patience with ``auto`` resolved
        "seconds_per_epoch": round(fit.seconds_per_epoch, 4),
        "train_seconds": round(fit.train_seconds, 2),
        "eval_seconds": round(test.seconds, 4),
        "peak_memory_mb": round(peak_memory_mb(run.device), 1),
        "num_parameters": sum(p.numel() for p in run.model.parameters()),
        "device": str(run.device),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "hardware": hardware(run.device),  # the CPU model, and the GPU's name on CUDA
        "item_map_fingerprint": run.dataset.item_map_fingerprint(),
        "sequences_fingerprint": run.dataset.sequences_fingerprint(),
        "prismrec_version": __version__,
        "source_revision": revision,  # git commit of the code at the start (None outside a checkout)
        # which code trained which epochs: a run resumed after a commit has several spans
        "source_revisions": revision_spans(fit.history),
        "finished": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    write_json(summary, run_dir / "summary.json")
    write_ranks(run_dir, run, valid, test)
    run.run_dir, run.summary = run_dir, summary
    return run


def ignored_prism_keys(cfg: ExperimentConfig) -> list[str]:
    """The ``model.prism.*`` keys that differ from their defaults while PRISM is off (they do nothing)."""
    prism = cfg.model.prism
    if prism.enabled:
        return []
    default = type(prism)()
    return [f"model.prism.{f.name}={getattr(prism, f.name)!r}" for f in dataclasses.fields(prism)
            if getattr(prism, f.name) != getattr(default, f.name)]


def revision_spans(history: list[dict]) -> list[dict]:
    """The epochs of ``history`` (metrics.jsonl records) grouped into spans trained by the same code:
    ``[{"revision", "first_epoch", "last_epoch"}, ...]`` in epoch order; ``revision`` is None for epochs
    that did not log one (trained outside a git checkout, or before prismrec logged it)."""
    spans: list[dict] = []
    for record in history:
        rev = record.get("source_revision")
        if spans and spans[-1]["revision"] == rev:
            spans[-1]["last_epoch"] = record["epoch"]
        else:
            spans.append({"revision": rev, "first_epoch": record["epoch"], "last_epoch": record["epoch"]})
    return spans


def write_ranks(out_dir: Path, run: Run, valid: EvalResult, test: EvalResult) -> None:
    """``out_dir/ranks.npz``: per-user valid and test ranks (row u = user u of the dataset), for paired
    significance tests across runs (:mod:`prismrec.evaluation.compare`)."""
    np.savez_compressed(out_dir / "ranks.npz", valid=valid.ranks.numpy(), test=test.ranks.numpy(),
                        user_ids=run.dataset.sequences.user_ids)


def save_prior_ranks(run: Run, out_dir: str | Path, beta: float, choice: PriorChoice | None = None,
                     evaluated: dict[str, EvalResult] | None = None) -> dict:
    """Write ``out_dir/ranks.npz`` and ``out_dir/summary.json`` for ``run`` ranked with the popularity
    prior ``beta`` (``choice``: how it was chosen), so that ``prismrec compare`` reads ``out_dir`` like
    a run. ``evaluated``: splits already evaluated with that ``beta`` (not repeated). Returns the summary."""
    out_dir = check_run_dir(out_dir, option="--save-ranks")
    res = dict(evaluated or {})
    for split in ("valid", "test"):
        if split not in res:
            res[split] = run.evaluate(split, popularity_beta=beta)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = None if run.run_dir is None else str(Path(run.run_dir).resolve())  # read from any directory
    summary = {"derived_from": source, "popularity_beta": beta,
               "popularity_counts": "observed before each split's targets (valid: s[:-2], test: s[:-1])",
               "popularity_choice": None if choice is None else choice.to_dict(), "dataset": run.dataset.name,
               "valid": res["valid"].metrics, "test": res["test"].metrics,
               "item_map_fingerprint": run.dataset.item_map_fingerprint(),
               "sequences_fingerprint": run.dataset.sequences_fingerprint(), "prismrec_version": __version__,
               "finished": _dt.datetime.now().isoformat(timespec="seconds")}
    write_json(summary, out_dir / "summary.json")
    write_ranks(out_dir, run, res["valid"], res["test"])
    return summary


def unfinished_training_note(summary: dict, run_dir: str | Path, train_cfg) -> str | None:
    """A note for a run that ended before early stopping could judge it: stopped by ``train.epochs``
    or ``train.time_limit_minutes`` with patience left, so its validation score may still have been
    rising. Says how to continue it (``--resume``); None for a run stopped by early stopping or by an
    interrupt (a choice the user made). ``summary``: the run's summary.json; ``train_cfg``: its
    ``TrainConfig`` (train.epochs, train.time_limit_minutes)."""
    reason = summary.get("stop_reason")
    if reason not in ("max_epochs", "time_limit"):
        return None
    best, last, patience = summary.get("best_epoch", 0), summary.get("epochs_run", 0), summary.get("patience")
    epochs, minutes = train_cfg.epochs, train_cfg.time_limit_minutes
    if reason == "max_epochs":
        ended, change = f"reached train.epochs = {epochs}", f"train.epochs={2 * epochs}"
    else:
        ended = f"hit train.time_limit_minutes = {minutes:g} after {last} epochs"
        change = f"train.time_limit_minutes={2 * minutes:g}"
    since = last - best
    return (f"note: training {ended} before early stopping ended it (best epoch {best}, then {since} "
            f"epoch(s) without improvement{f'; patience {patience}' if patience else ''}), so it may not have "
            f"converged; continue it with: prismrec train --resume {run_dir} --set {change}")


def resume(run_dir: str | Path, overrides: list[str] | None = None, *, progress: bool = True) -> Run:
    """Continue the run in ``run_dir`` from the end of its last finished epoch (its ``resume/``
    state), then finish it like :func:`train` (best state, evaluation, summary). ``overrides``
    (``section.key=value``) may change only :data:`RESUMABLE_CHANGES`, e.g. a new time limit, more
    epochs or more patience; the rest of the saved config is what the run was trained with.
    On CPU the result equals that of an uninterrupted run with the final settings."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir}: no config.yaml (is this a prismrec run directory?)")
    raw = load_yaml(run_dir / "config.yaml")
    saved = dict(_leaves(build_config(extra=raw)))
    cfg = build_config(extra=raw, overrides=overrides)
    refused = [k for k, v in _leaves(cfg) if v != saved[k] and k not in RESUMABLE_CHANGES]
    if refused:
        raise ConfigError(f"cannot change {', '.join(refused)} when resuming {run_dir} (the run was trained with "
                          f"the saved config); keys that may change: {', '.join(RESUMABLE_CHANGES)}")
    warn_if_config_predates(run_dir / "config.yaml", cfg, "resuming with these defaults (the run's earlier "
                            "epochs had the behaviour from before the keys existed)", raw=raw)
    return train(cfg, run_dir, progress=progress, resume=True)


def is_run_config(path: str | Path) -> bool:
    """Whether ``path`` is the resolved ``config.yaml`` saved in a run directory (not a partial recipe)."""
    path = Path(path)
    return path.name == "config.yaml" and any((path.parent / f).exists()
                                              for f in ("summary.json", "metrics.jsonl", "model.safetensors"))


def warn_if_config_predates(path: str | Path, cfg, consequence: str, raw: dict | None = None) -> list[str]:
    """Warn when a run's saved ``config.yaml`` lacks keys that ``cfg`` has (it was saved by an older
    prismrec, so those keys now take today's defaults, which may not be what the run was trained
    with; keys in ``NEUTRAL_ADDITIONS`` do not count). ``raw``: the file's already-parsed contents,
    if at hand. Returns the missing keys as ``key=value``."""
    raw = load_yaml(path) if raw is None else raw
    absent = [f"{k}={v!r}" for k, v in _leaves(cfg) if not _has_key(raw, k) and k not in NEUTRAL_ADDITIONS]
    if absent:
        warnings.warn(f"{path} predates config key(s) {', '.join(absent)}; {consequence}", stacklevel=3)
    return absent


def _has_key(raw: dict, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(raw, dict) or part not in raw:
            return False
        raw = raw[part]
    return True


def _leaves(cfg, prefix: str = ""):
    """(dotted key, value) for every leaf of a config dataclass."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            yield from _leaves(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", value


def check_trained_on(run_dir: str | Path, summary: dict | None, dataset: RecDataset) -> None:
    """Refuse ``dataset`` when its item map or its interactions differ from those the run in ``run_dir``
    was trained on (the fingerprints in the run's ``summary``; one a run predates is not checked)."""
    trained = (summary or {}).get("item_map_fingerprint")
    if trained not in (None, dataset.item_map_fingerprint()):
        raise DataError(f"{run_dir} was trained on another dataset, with a different item map "
                        f"({trained} vs {dataset.item_map_fingerprint()})")
    trained = (summary or {}).get("sequences_fingerprint")
    if trained not in (None, dataset.sequences_fingerprint()):
        raise DataError(f"{run_dir} was trained on other interactions than those of {dataset.source or dataset.name} "
                        f"(sequences_fingerprint {trained} vs {dataset.sequences_fingerprint()}): the same items, "
                        f"but other users or histories; give the run's own data with --data")


def _saved_config(run_dir: Path, device: str | None, data_path: str | None) -> ExperimentConfig:
    """A saved run's config (``data_path`` replacing its data path), with clear errors for a folder that
    is not a run and for a data path that does not exist."""
    if not run_dir.exists():
        raise FileNotFoundError(f"{run_dir}: the run folder does not exist (no config.yaml to load; expected a "
                                f"folder written by `prismrec train --output-dir`)")
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: not a folder (expected a prismrec run directory holding config.yaml)")
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir}: no config.yaml (is this a prismrec run directory?)")
    extra = {"data": {"path": data_path}} if data_path else None
    overrides = [f"train.device={device}"] if device else []
    cfg = build_config(run_dir / "config.yaml", overrides=overrides, extra=extra)
    if not data_path and cfg.data.path is not None and not Path(cfg.data.path).expanduser().exists():
        raise DataError(f"{run_dir}: the run's data path {cfg.data.path} does not exist (a relative path is read "
                        f"from the current directory, {Path.cwd()}); give the dataset's location with --data PATH")
    return cfg


def _saved_summary(run_dir: Path) -> dict | None:
    return json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else None


def load_run_dataset(run_dir: str | Path, data_path: str | None = None) -> RecDataset:
    """The dataset a saved run was trained on (its config's data, or ``data_path``), checked against the
    run's item map; no model is built (e.g. to group the users of saved ranks)."""
    run_dir = Path(run_dir)
    dataset = dataset_from_config(_saved_config(run_dir, None, data_path))
    check_trained_on(run_dir, _saved_summary(run_dir), dataset)
    return dataset


def load_run(run_dir: str | Path, device: str | None = None, data_path: str | None = None) -> Run:
    """Rebuild a saved run: config -> data -> model, then load the safetensors weights."""
    run_dir = Path(run_dir)
    cfg = _saved_config(run_dir, device, data_path)
    warn_if_config_predates(run_dir / "config.yaml", cfg, "the model is rebuilt with these defaults")
    run = build(cfg)
    summary = _saved_summary(run_dir)
    check_trained_on(run_dir, summary, run.dataset)
    try:
        load_weights(run.model, run_dir, run.device)
    except DataError as exc:
        if run.config.data.modalities == cfg.data.modalities:
            raise
        # saved before runs named their feature matrices: "all available" may now be others
        raise DataError(f"{exc} {run_dir / 'config.yaml'} has data.modalities: [] (every feature matrix of the "
                        f"dataset, now {list(run.config.data.modalities)}); if the dataset gained or rebuilt a "
                        f"matrix after training, set data.modalities in that file to the ones the run was "
                        f"trained with") from None
    run.run_dir, run.summary = run_dir, summary
    return run

