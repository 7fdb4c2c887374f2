"""Shared helpers for benchmark scripts: machine description and result files."""
from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]


def machine() -> dict:
    import torch

    from prismrec.training.checkpoint import hardware

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            **hardware("cuda" if torch.cuda.is_available() else "cpu")}
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    return info


def git_commit() -> str:
    """The commit of the library code the numbers come from (HEAD's short hash, ``+dirty`` when the
    package's files differ from it): the same value a run's ``summary.json`` records as
    ``source_revision``. Read once, at the first call (scripts call it when they start, through this
    module's import), so that a commit made while a long benchmark runs is not recorded as its code."""
    global _COMMIT
    if _COMMIT is None:
        from prismrec.training.checkpoint import source_revision

        _COMMIT = source_revision() or "unknown"
    return _COMMIT


_COMMIT: str | None = None
git_commit()  # at import: the code the importing script is about to load


def build_trainer(data: str, loss: str, overrides: list[str], device: str = "cpu"):
    """The model and :class:`~prismrec.training.Trainer` of ``data`` (a dataset path) with ``loss`` and
    config ``overrides``, model in training mode: the setup every per-step/per-epoch timing script
    shares. Returns (run, trainer)."""
    from prismrec.api import build
    from prismrec.config import build_config
    from prismrec.training import Trainer

    cfg = build_config(overrides=[f"data.path={data}", f"train.loss={loss}", f"train.device={device}", *overrides])
    run = build(cfg)
    trainer = Trainer(run.model, run.data, cfg.train, cfg.eval, run.device, progress=False)
    run.model.train()
    return run, trainer


def train_step(trainer, users) -> None:
    """One step of the training loop on the rows ``users`` (micro-batches included), as the loop runs it."""
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.accumulate_gradients(users)
    trainer.optimizer.step()


def write_result(name: str, payload: dict, out_dir: Path | None = None) -> Path:
    """``out_dir/<name>.json`` (default: benchmarks/results/) via :func:`write_result_to`."""
    return write_result_to((out_dir or RESULTS) / f"{name}.json", payload, name)


def write_result_to(path: Path, payload: dict, name: str | None = None) -> Path:
    """Write ``payload`` to ``path`` as JSON, after what made it: the benchmark's name (default: the file's
    stem), the command, the code's commit, the date and the machine."""
    payload = {"benchmark": name or path.stem,
               "command": " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv),
               "git_commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
               **payload}
    path.parent.mkdir(parents=True, exist_ok=True)  # a name may hold a folder, e.g. tmp/<name>
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
