"""CS231n's PyTorch models of assignment 3, under the course's module and class names.

Submodules: ``transformer`` (``CaptioningTransformer``, the course's
``cs231n/classifiers/transformer.py``).
"""

from .transformer import CaptioningTransformer, TransformerDecoder

__all__ = ["CaptioningTransformer", "TransformerDecoder"]
