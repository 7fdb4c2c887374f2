"""Models: the item-input seam, shared transformer blocks, backbones and their registry."""
from .base import LossOutput, SequentialRecommender, TrainBatch
from .build import build_item_input, build_model
from .item_input import AuxContext, IDEmbedding, ItemInput
from .registry import get_backbone, register_backbone, registered_backbones

__all__ = ["AuxContext", "IDEmbedding", "ItemInput", "LossOutput", "SequentialRecommender", "TrainBatch",
           "build_item_input", "build_model", "get_backbone", "register_backbone", "registered_backbones"]
