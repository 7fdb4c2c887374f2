"""Full-ranking evaluation (depends on data only; models are seen as a score function)."""
from .evaluator import EvalResult, evaluate
from .metrics import metrics_from_ranks, target_ranks

__all__ = ["EvalResult", "evaluate", "metrics_from_ranks", "target_ranks"]
