"""Argument checks shared by both twins, so the same bad input raises the same message in each.

Pure Python: the checks read ``.shape``/``.ndim``/``.dtype`` and call methods that NumPy arrays
and torch tensors both have (``.min()``, ``.max()``, ``.sum()``, ``.any()``, comparisons), and
import neither library. ``numpy_impl`` and ``torch_impl`` both import them from here. Every
message names the argument, what was expected and what was given.

Modules by what they check: ``common`` (shapes, dtypes, numbers, parameter dicts), ``layers``
(affine, conv and transposed conv, pooling, normalization, dropout, leaky ReLU, classifier
losses), ``sequence`` (recurrent layers, embedding, temporal layers), ``captioning`` (the
captioning models), ``attention``, ``contrastive`` (SimCLR), ``generative`` (GAN losses).
Every public check is also importable from the package itself.
"""

from twin_checks.attention import (
    check_attention_args,
    check_attn_mask,
    check_mha_args,
    check_num_heads,
    check_positional_args,
)
from twin_checks.captioning import (
    check_captioning_inputs,
    check_transformer_dims,
    check_vocab,
)
from twin_checks.common import (
    check_dout,
    check_same_shape,
    check_same_shape_update,
    dtype_name,
    require_dict,
    require_float,
    require_int_param,
    require_ndim,
    require_nonneg_real,
    require_param,
    require_same_shape,
    require_shape,
    require_unit_interval,
    shape_of,
)
from twin_checks.contrastive import (
    check_nonzero_norms,
    check_pair_args,
    check_tau,
)
from twin_checks.generative import (
    check_scores,
)
from twin_checks.layers import (
    check_affine_args,
    check_bn_param,
    check_conv_args,
    check_conv_transpose_args,
    check_norm_args,
    check_norm_param,
    check_pool_args,
    check_scores_labels,
    conv_output_shape,
    conv_transpose_output_shape,
    pool_output_shape,
    require_groups,
    require_keep_prob,
    require_labels,
    require_mode,
    require_negative_slope,
)
from twin_checks.sequence import (
    check_cell_args,
    check_embedding_args,
    check_indices,
    check_sequence_args,
    check_temporal_affine_args,
    check_temporal_loss_args,
)

__all__ = [
    "check_captioning_inputs",
    "check_transformer_dims",
    "check_vocab",
    "check_conv_transpose_args",
    "conv_transpose_output_shape",
    "require_negative_slope",
    "shape_of",
    "dtype_name",
    "require_ndim",
    "require_shape",
    "require_same_shape",
    "require_float",
    "require_int_param",
    "require_param",
    "require_dict",
    "require_nonneg_real",
    "require_unit_interval",
    "check_dout",
    "check_same_shape",
    "check_same_shape_update",
    "require_mode",
    "require_keep_prob",
    "require_groups",
    "require_labels",
    "conv_output_shape",
    "pool_output_shape",
    "check_conv_args",
    "check_pool_args",
    "check_affine_args",
    "check_norm_args",
    "check_norm_param",
    "check_bn_param",
    "check_scores_labels",
    "check_indices",
    "check_cell_args",
    "check_sequence_args",
    "check_embedding_args",
    "check_temporal_affine_args",
    "check_temporal_loss_args",
    "check_attention_args",
    "check_attn_mask",
    "check_num_heads",
    "check_mha_args",
    "check_positional_args",
    "check_tau",
    "check_pair_args",
    "check_nonzero_norms",
    "check_scores",
]
