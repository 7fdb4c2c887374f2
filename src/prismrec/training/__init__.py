"""Training: the trainer, negative sampling, checkpoints."""
from .trainer import FitResult, Trainer, resolve_device

__all__ = ["FitResult", "Trainer", "resolve_device"]
