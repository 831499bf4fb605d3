"""CS231n assignment 3's SimCLR notebook (the course's ``simclr/`` package) on torch_impl's layers.

Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations" (2020).

- ``simclr_training.data``: ``compute_train_transform``, ``compute_test_transform``,
  ``CIFAR10Pair`` (two augmented views of each image) over CIFAR-10 from the CIFAR training's
  data layer.
- ``simclr_training.model``: ``Model``, a small encoder (conv / spatial batchnorm / ReLU /
  max-pool) and a projection head, all torch_impl layers.
- ``simclr_training.train``: ``train`` (one epoch with ``torch_impl.simclr``'s vectorized loss)
  and the linear-probe evaluation on frozen features.
- ``python -m simclr_training``: the command line (``--help``).
"""
