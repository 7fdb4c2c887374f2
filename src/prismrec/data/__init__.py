"""Data layer: sequence files, datasets with aligned per-item features, leave-one-out tensors.

Never imports models, training or evaluation.
"""
from .dataset import FeatureMatrix, RecDataset, load_dataset
from .sequences import PAD_ID, DataError, Sequences, read_sequence_file
from .split import LeaveOneOut, SplitTensors

__all__ = ["PAD_ID", "DataError", "FeatureMatrix", "LeaveOneOut", "RecDataset", "Sequences", "SplitTensors",
           "load_dataset", "read_sequence_file"]
