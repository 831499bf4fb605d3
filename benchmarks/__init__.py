"""Benchmarks of the twins against PyTorch's builtins (see BENCHMARKS.md).

Run as scripts from the repository root: ``python benchmarks/ops.py`` and
``python benchmarks/train_step.py`` (``--help`` for the flags).

- ``ops``: the command line of the op benchmark (flags, header, run, output).
- ``op_case``: ``BenchmarkCase`` (one op at one shape), the speed targets, and the input and
  forward+backward closure helpers the case factories share.
- ``cases_conv``, ``cases_norm``, ``cases_dense``, ``cases_sequence``: the case factories of
  conv / max pool / matmul; the normalizations; ReLU / affine / softmax loss; RNN / LSTM /
  attention.
- ``cnn_shapes``: the layer shapes of train.py's default model; ``op_suite``: which cases run,
  at which shapes.
- ``op_results``: timing the cases, ratios, targets and the CNN's conv total; the table.
- ``op_profile``: ``--profile``.
- ``train_step``: images/s of one training step per backend, each in its own process.
- ``_common``: what both scripts share: threads, machine facts, interleaved timing, output.
"""
