"""CS231n assignment 3's GAN notebook (``gan_pytorch.py``) on torch_impl's layers.

- ``gan_training.models``: the course's model builders (``discriminator``, ``generator``,
  ``build_dc_classifier``, ``build_dc_generator``), ``sample_noise``, ``get_optimizer`` and the
  losses of ``torch_impl.gan``; every layer is torch_impl's (Affine, LeakyReLU, ReLU, Tanh,
  BatchNorm, SpatialBatchNorm, Conv2d, MaxPool2d, ConvTranspose2d).
- ``gan_training.train``: ``run_a_gan``, the course's training loop, which writes its sample grids
  as PNG files instead of showing them.
- ``gan_training.data``: MNIST through torchvision, or CIFAR-10 as 28x28 grayscale.
- ``python -m gan_training``: the command line (``--help``).
"""
