"""Training loop: epochs over users, early stopping on a validation metric, best-state restore.

The trainer owns devices and data movement; models only see tensors.
"""
from __future__ import annotations

import copy
import math
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..config import ConfigError, EvalConfig, TrainConfig
from ..data.sequences import DataError
from ..data.split import LeaveOneOut, trim_left_padding
from ..evaluation import EvalResult, evaluate
from ..models.base import SequentialRecommender, TrainBatch
from .checkpoint import append_jsonl
from .resume import RESUME_DIR, TrainingState, load_training_state, save_training_state
from .sampling import sample_negatives


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is cuda (--device cuda) but CUDA is not available on this machine; "
                          "use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB


@dataclass
class FitResult:
    best_epoch: int
    epochs_run: int
    best_valid: dict[str, float]
    seconds_per_epoch: float
    train_seconds: float
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    stop_reason: str = "max_epochs"  # "max_epochs" | "early_stopping" | "time_limit" | "interrupted"


class Trainer:
    def __init__(self, model: SequentialRecommender, data: LeaveOneOut, cfg: TrainConfig, eval_cfg: EvalConfig,
                 device: torch.device, run_dir: str | Path | None = None, progress: bool = True,
                 tags: dict[str, str] | None = None, revision: str | None = None) -> None:
        self.model, self.data, self.cfg, self.eval_cfg = model, data, cfg, eval_cfg
        self.revision = revision  # the code's git revision, logged with every epoch it trains (None: not logged)
        self.device, self.progress = device, progress
        self.metrics_path = Path(run_dir) / "metrics.jsonl" if run_dir else None
        self.resume_dir = Path(run_dir) / RESUME_DIR if run_dir and cfg.resume_state else None
        self.tags = dict(tags or {})  # saved with the resume state and checked when resuming
        self.model.to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        # train.patience and train.length_bucketing: auto follows the loss the model trains with
        # (STOSA's own BPR loss samples negatives whatever train.loss says)
        self.patience = cfg.resolved_patience(model.needs_negatives)
        self.length_bucketing = cfg.resolved_length_bucketing(model.needs_negatives)
        # users with at least one training target; the others only take part in evaluation
        has_target = (data.train_targets != 0).any(dim=1)
        self.train_users = torch.nonzero(has_target).squeeze(1)
        if len(self.train_users) == 0:
            longest = int((data.train_history != 0).sum(dim=1).max()) + 2 if data.num_users else 0
            raise DataError(f"no history is long enough to train on: leave-one-out keeps each history's last two "
                            f"items for validation and test, so training needs at least one user with 4 or more "
                            f"items (the longest history here has {longest})")
        self.train_lengths = (data.train_inputs != 0).sum(dim=1)  # (U,)
        # tensors used every batch, placed on the device once
        self.train_inputs = data.train_inputs.to(device)
        self.train_targets = data.train_targets.to(device)
        self.targets_per_user = (self.train_targets != 0).sum(dim=1)  # (U,) loss weights, micro-batch order
        self.train_history = data.train_history.to(device) if model.needs_negatives else None

    # ------------------------------------------------------------------ one epoch
    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        self.model.on_epoch_start(epoch, self.data, self.device, progress=self.progress)
        batches = self.user_batches()
        n_batches = len(batches)
        mean_targets = float(self.targets_per_user[self.train_users].sum()) / max(n_batches, 1)
        sums: dict[str, float] = {}
        bar = tqdm(range(n_batches), desc=f"epoch {epoch}", leave=False, disable=not self.progress,
                   file=sys.stderr, dynamic_ncols=True)
        for b in bar:
            users = batches[b].to(self.device)
            rec_weight = (float(self.targets_per_user[users].sum()) / mean_targets
                          if self.cfg.loss_normalization == "epoch" else 1.0)
            self.optimizer.zero_grad(set_to_none=True)
            loss, parts = self.accumulate_gradients(users, rec_weight)
            if self.cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.optimizer.step()
            if not math.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss} at epoch {epoch}, batch {b}; "
                                         f"try a lower train.lr or train.grad_clip")
            sums["loss"] = sums.get("loss", 0.0) + loss
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{sums['loss'] / (b + 1):.4f}")
        bar.close()
        if n_batches:
            self._check_finite(epoch, users)
        return {k: v / max(n_batches, 1) for k, v in sums.items()}

    def _check_finite(self, epoch: int, users: torch.Tensor) -> None:
        """Divergence in the epoch's last step: each step's loss is checked before its update, so the
        last update is checked here, once per epoch and before anything is evaluated or saved: the
        weights (one device sync), then the scores of ``users`` (the last batch) in one forward without
        gradients. Weights can stay finite while scores overflow (attention logits beyond float32)."""
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        if named:
            finite = torch.stack([torch.isfinite(p).all() for _, p in named])
            if not bool(finite.all()):
                name = named[int(torch.argmin(finite.to(torch.uint8)))][0]
                self._diverged(epoch, f"weight {name} became non-finite (nan/inf)")
        devices = ([self.device.index if self.device.index is not None else torch.cuda.current_device()]
                   if self.device.type == "cuda" else [])
        self.model.eval()
        try:  # no draw from any generator: the run stays exactly what it was without this check
            with torch.no_grad(), torch.random.fork_rng(devices=devices):
                inputs, _ = trim_left_padding(self.train_inputs[users], self.train_targets[users])
                scores = self.model.full_sort_scores(inputs)[:, 1:]  # column 0 is padding
        finally:
            self.model.train()
        if not bool(torch.isfinite(scores).all()):
            self._diverged(epoch, "scores became non-finite (nan/inf)")

    @staticmethod
    def _diverged(epoch: int, what: str) -> None:
        raise FloatingPointError(f"training diverged at epoch {epoch}: after its last step the model's {what}; "
                                 f"try a lower train.lr or train.grad_clip")

    def accumulate_gradients(self, users: torch.Tensor, rec_weight: float = 1.0) -> tuple[float, dict[str, float]]:
        """Forward and backward for one batch of user rows, in ``train.micro_batches`` length-sorted
        parts whose gradients add up to the whole batch's: part p's recommendation loss (a mean over
        its targets) weighs (its targets / the batch's targets) and its other terms (its users / the
        batch's users). With several parts, the model's item-level work (PRISM's experts) and item-level
        auxiliary losses run once for the batch, around the parts (``begin_batch``/``finish_batch``).
        (Losses that a part computes against its own items, PRISM's ``loss_on=prediction`` with its
        in-batch candidates, are each part's rather than the whole batch's.)
        Returns the batch's loss and its reported parts."""
        parts_users = ([users] if self.cfg.micro_batches == 1 else
                       users[torch.argsort(self.targets_per_user[users], stable=True)]
                       .tensor_split(min(self.cfg.micro_batches, len(users))))
        batch_targets = float(self.targets_per_user[users].sum())
        if len(parts_users) > 1:
            self.model.begin_batch(self.train_inputs[users])
        try:
            loss, parts = self._backward_parts(parts_users, users, batch_targets, rec_weight)
        except BaseException:
            self.model.begin_batch(None)  # drop the unfinished step's item table
            raise
        closing = self.model.finish_batch() if len(parts_users) > 1 else None
        if closing is not None:
            closing.total.backward()
            for k, v in closing.parts.items():  # the batch's item-level auxiliary losses, weight 1
                loss += float(v)
                parts[k] = parts.get(k, 0.0) + float(v)
        return loss, parts

    def _backward_parts(self, parts_users: list[torch.Tensor], users: torch.Tensor, batch_targets: float,
                        rec_weight: float) -> tuple[float, dict[str, float]]:
        loss, parts = 0.0, {}
        for part in parts_users:
            batch = TrainBatch(*trim_left_padding(self.train_inputs[part], self.train_targets[part]), user_index=part)
            if self.model.needs_negatives:
                batch.negatives = sample_negatives(self.train_history[part], tuple(batch.item_seq.shape),
                                                   self.data.num_items, self._device_generator())
            out = self.model.training_loss(batch)
            share_rec = float(self.targets_per_user[part].sum()) / batch_targets if len(parts_users) > 1 else 1.0
            share_aux = len(part) / len(users)
            weighted = out.weighted(rec_weight * share_rec, share_aux)
            weighted.backward()
            loss += weighted.item()
            for k, v in out.parts.items():
                parts[k] = parts.get(k, 0.0) + float(v) * (share_rec if k == "rec" else share_aux)
        return loss, parts

    def user_batches(self) -> list[torch.Tensor]:
        """This epoch's batches of user rows (shuffled; optionally length-bucketed)."""
        bs = self.cfg.batch_size
        order = self.train_users[torch.randperm(len(self.train_users), generator=self.generator)]
        if not self.length_bucketing:
            return list(order.split(bs))
        pool = bs * 50
        batches: list[torch.Tensor] = []
        for chunk in order.split(pool):  # sort each random pool by length, then cut into batches
            by_len = chunk[torch.argsort(self.train_lengths[chunk], stable=True)]
            batches.extend(by_len.split(bs))
        perm = torch.randperm(len(batches), generator=self.generator)
        return [batches[i] for i in perm.tolist()]

    def _generators(self) -> dict[str, torch.Generator]:
        """Every generator the loop draws from besides the global one (saved for resuming)."""
        gens = {"trainer": self.generator}
        if self.device.type != "cpu":
            gens["trainer_device"] = self._device_generator()
        return gens

    def _device_generator(self) -> torch.Generator:
        if self.device.type == "cpu":
            return self.generator
        if not hasattr(self, "_dev_gen"):
            self._dev_gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed)
        return self._dev_gen

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, split: str) -> EvalResult:
        self.model.eval()
        with self.model.cached_item_tables():  # content item tables once per evaluation, not per batch
            return evaluate(self.model.full_sort_scores, self.data.split(split), self.eval_cfg.ks,
                            batch_size=self.eval_cfg.batch_size, exclude_history=self.eval_cfg.exclude_history,
                            device=self.device)

    # ------------------------------------------------------------------ fit
    def fit(self, resume: bool = False, finished_ok: bool = False) -> FitResult:
        """Train until early stopping, ``train.epochs`` or the time limit; restore the best state.

        ``resume``: continue from the state saved in the run directory's ``resume/`` folder after the
        last finished epoch (see ``train.resume_state``), exactly as if training had not stopped.
        Resuming a run with nothing left to train (early stopping or ``train.epochs`` reached) is an
        error unless ``finished_ok``; then the saved run's best state is restored and returned.
        """
        st = TrainingState()
        if resume:
            if self.metrics_path is None:
                raise ValueError("resuming needs the run directory")
            st = load_training_state(self.metrics_path.parent / RESUME_DIR, self.model, self.optimizer,
                                     self._generators(), self.device, self.tags)
            if st.bad_evals >= self.patience and not finished_ok:
                raise ConfigError(f"the run already stopped by early stopping after epoch {st.epoch} "
                                 f"({st.bad_evals} evaluations without improvement); raise train.patience "
                                 f"above {st.bad_evals} to continue it")
            if st.epoch >= self.cfg.epochs and not finished_ok:
                raise ConfigError(f"the run already trained {st.epoch} epochs (train.epochs = {self.cfg.epochs}); "
                                 f"raise train.epochs to continue it")
            self.metrics_path.unlink(missing_ok=True)  # the saved history up to the resumed epoch, nothing later
            for record in st.history:
                append_jsonl(record, self.metrics_path)
            tqdm.write(f"resuming after epoch {st.epoch} (best {self.cfg.metric} {st.best_score:.4f} @ "
                       f"{st.best_epoch})", file=sys.stderr)
        stopped_early, stop_reason = False, "max_epochs"
        epoch = st.epoch
        t_start = time.perf_counter()
        last_epoch = self.cfg.epochs
        if st.bad_evals >= self.patience:  # resumed (finished_ok) after its early stop: nothing to train
            stopped_early, stop_reason, last_epoch = True, "early_stopping", st.epoch
        try:
            for epoch in range(st.epoch + 1, last_epoch + 1):
                t0 = time.perf_counter()
                losses = self.train_epoch(epoch)
                st.epoch_times.append(time.perf_counter() - t0)
                record = {"epoch": epoch, **losses, "train_seconds": round(st.epoch_times[-1], 3)}
                if self.revision is not None:  # a resumed run's epochs may come from different code
                    record["source_revision"] = self.revision
                if epoch % self.cfg.eval_every == 0 or epoch == self.cfg.epochs:
                    res = self.evaluate("valid")
                    record["valid"] = res.metrics
                    record["eval_seconds"] = round(res.seconds, 3)
                    if self.eval_cfg.track_test:
                        record["test"] = self.evaluate("test").metrics
                    record["elapsed_train_seconds"] = round(sum(st.epoch_times), 3)
                    score = res.metrics[self.cfg.metric]
                    if score > st.best_score:
                        st.best_score, st.best_epoch, st.best_valid = score, epoch, res.metrics
                        st.best_state = copy.deepcopy(self.model.state_dict())
                        st.bad_evals = 0
                    else:
                        st.bad_evals += 1
                    if self.progress:
                        tqdm.write(f"epoch {epoch:3d}  loss {losses['loss']:.4f}  valid {self.cfg.metric} "
                                   f"{score:.4f}  (best {st.best_score:.4f} @ {st.best_epoch})  "
                                   f"{st.epoch_times[-1]:.1f}s", file=sys.stderr)
                st.history.append(record)
                st.epoch = epoch
                if self.resume_dir is not None:
                    st.elapsed_seconds = st.previous_seconds + time.perf_counter() - t_start
                    save_training_state(self.resume_dir, st, self.model, self.optimizer, self._generators(),
                                        self.device, self.tags)
                if self.metrics_path:
                    append_jsonl(record, self.metrics_path)
                if st.bad_evals >= self.patience:
                    stopped_early, stop_reason = True, "early_stopping"
                    break
                if self.cfg.time_limit_minutes > 0 and time.perf_counter() - t_start > 60 * self.cfg.time_limit_minutes:
                    stop_reason = "time_limit"
                    break
        except KeyboardInterrupt:  # Ctrl-C (or SIGTERM via the CLI): keep what was learned
            stopped_early, stop_reason = True, "interrupted"
            epoch = st.epoch  # epochs whose training finished
            tqdm.write(f"interrupted after {epoch} finished epoch(s): restoring the best epoch ({st.best_epoch}) "
                       f"and evaluating it (interrupt again to abort)", file=sys.stderr)
        if st.best_state is not None:
            self.model.load_state_dict(st.best_state)
        return FitResult(best_epoch=st.best_epoch, epochs_run=epoch, best_valid=st.best_valid,
                         seconds_per_epoch=sum(st.epoch_times) / max(len(st.epoch_times), 1),
                         train_seconds=time.perf_counter() - t_start + st.previous_seconds, history=st.history,
                         stopped_early=stopped_early, stop_reason=stop_reason)
