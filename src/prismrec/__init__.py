"""prismrec: multimodal sequential recommendation with PRISM.

Layers (imports point one way): data <- models <- training/evaluation <- api <- cli.
"""
__version__ = "0.1.0"
