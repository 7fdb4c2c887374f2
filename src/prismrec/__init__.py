"""prismrec: multimodal sequential recommendation with PRISM.

Layers (imports point one way): data <- models <- prism <- training/evaluation <- api <- cli
(docs/architecture.md).
"""
__version__ = "0.1.0"
