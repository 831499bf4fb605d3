"""Reference answers of CS231n assignment 2's PyTorch notebook (``PyTorch.ipynb``), on torch_impl.

The notebook teaches PyTorch at three levels, and this module answers each one under the
notebook's own names and signatures, so a grader can call a student's copy and this module
the same way:

- Part II, barebones: ``flatten``, ``two_layer_fc``, ``three_layer_convnet`` (forward passes
  over a list of parameter tensors), ``random_weight`` / ``zero_weight`` (Kaiming normal and
  zero initialization), ``check_accuracy_part2``, ``train_part2`` (plain SGD written out);
- Part III, ``nn.Module``: ``TwoLayerFC``, ``ThreeLayerConvNet``, ``check_accuracy_part34``,
  ``train_part34`` (a ``torch.optim`` optimizer);
- Part IV, ``nn.Sequential``: ``Flatten``, ``two_layer_fc_sequential``,
  ``three_layer_convnet_sequential`` and ``sequential_optimizer`` (Nesterov momentum 0.9, as
  the notebook trains them, through torch_impl.optim).

The notebook computes its layers with ``torch.nn.functional`` and ``torch.nn``; here every
layer whose math the course teaches (affine, convolution, ReLU, the softmax loss that
``F.cross_entropy`` computes) comes from ``torch_impl``, and the modules keep the parameter
names and layouts of ``nn.Linear`` / ``nn.Conv2d`` (``weight`` (out, in), ``bias``), so a
``state_dict`` moves between a student's model and this one.

The notebook's globals become keyword arguments with its defaults: ``dtype=torch.float32``,
``print_every=100``, ``device=None`` (the notebook's choice: CUDA when available, else the
CPU), and the data loaders ``loader_train`` / ``loader_val`` that its training loops read
(``cifar_training.notebook_data.notebook_loaders`` builds them as the notebook does).
Random draws come from torch's global generator, as in the notebook: seed with
``torch.manual_seed`` for reproducible weights.

Kaiming initialization: He et al., "Delving Deep into Rectifiers: Surpassing Human-Level
Performance on ImageNet Classification", ICCV 2015 (std sqrt(2 / fan_in)).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import torch
from torch import nn

from torch_impl import functional as TF
from torch_impl.nn import Flatten
from torch_impl.optim import Nesterov

__all__ = [
    "DTYPE",
    "PRINT_EVERY",
    "default_device",
    "flatten",
    "two_layer_fc",
    "three_layer_convnet",
    "random_weight",
    "zero_weight",
    "check_accuracy_part2",
    "train_part2",
    "Linear",
    "Conv2d",
    "TwoLayerFC",
    "ThreeLayerConvNet",
    "check_accuracy_part34",
    "train_part34",
    "Flatten",
    "two_layer_fc_sequential",
    "three_layer_convnet_sequential",
    "sequential_optimizer",
]

DTYPE = torch.float32  # the notebook's ``dtype``
PRINT_EVERY = 100  # the notebook's ``print_every``


def default_device() -> torch.device:
    """The notebook's ``device``: CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _device(device) -> torch.device:
    return default_device() if device is None else torch.device(device)


def _require_tensor_list(name: str, params, n: int) -> list:
    if not isinstance(params, Sequence) or isinstance(params, (str, bytes)):
        raise TypeError(f"{name} must be a list of {n} tensors, got {type(params).__name__}")
    if len(params) != n:
        raise ValueError(f"{name} must hold {n} tensors, got {len(params)}")
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"{name}[{i}] must be a torch.Tensor, got {type(p).__name__}")
    return list(params)


# ----------------------------------------------------------------------------------------------
# Part II: barebones PyTorch
# ----------------------------------------------------------------------------------------------


def flatten(x):
    """(N, d_1, ..., d_k) -> (N, d_1 * ... * d_k): one row per example (the reshape the
    notebook's fully connected layers read). A view of x when x's memory allows one."""
    if not isinstance(x, torch.Tensor) or x.dim() < 1:
        raise ValueError(
            "x must be a tensor with a batch dimension, got "
            + (f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__)
        )
    # The size written out: with N = 0 a -1 would be ambiguous.
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))


def _no_bias(w):
    """A zero bias for torch_impl's affine (the notebook's two-layer net has none)."""
    return torch.zeros(w.shape[1], dtype=w.dtype, device=w.device)


def two_layer_fc(x, params):
    """Two-layer fully connected ReLU network without biases: relu(flatten(x) @ w1) @ w2.

    x: (N, d_1, ..., d_k) with D = d_1 * ... * d_k; params: [w1 (D, H), w2 (H, C)].
    Returns scores (N, C). Autograd differentiates through torch_impl's affine and ReLU.
    """
    w1, w2 = _require_tensor_list("params", params, 2)
    hidden = TF.relu(TF.affine(flatten(x), w1, _no_bias(w1)))
    return TF.affine(hidden, w2, _no_bias(w2))


def three_layer_convnet(x, params):
    """Barebones three-layer ConvNet: conv (pad 2) - ReLU - conv (pad 1) - ReLU - affine.

    x: (N, 3, H, W); params: [conv_w1 (channel_1, 3, KH1, KW1), conv_b1 (channel_1,),
    conv_w2 (channel_2, channel_1, KH2, KW2), conv_b2 (channel_2,), fc_w (D, C), fc_b (C,)],
    stride 1 throughout, D = channel_2 * H2 * W2 the flattened size of the second conv's
    output (channel_2 * H * W for the notebook's 5x5 and 3x3 filters, which keep H and W).
    Returns scores (N, C), no softmax (the loss applies it).
    """
    conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b = _require_tensor_list("params", params, 6)
    h1 = TF.relu(TF.conv(x, conv_w1, conv_b1, {"stride": 1, "pad": 2}))
    h2 = TF.relu(TF.conv(h1, conv_w2, conv_b2, {"stride": 1, "pad": 1}))
    return TF.affine(flatten(h2), fc_w, fc_b)


def _shape_tuple(name: str, shape) -> tuple:
    if isinstance(shape, (int, torch.SymInt)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        if isinstance(shape, (str, bytes)):
            raise TypeError
        dims = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple of ints, got {shape!r}") from None
    if any(d < 0 for d in dims):
        raise ValueError(f"{name} must not hold negative sizes, got {dims}")
    return dims


def fan_in(shape) -> int:
    """The notebook's fan-in of a weight: shape[0] for a (D, M) affine weight, the product of
    the dimensions after the first for a conv weight (F, C, HH, WW) (and 1 for a vector: the
    empty product)."""
    dims = _shape_tuple("shape", shape)
    return dims[0] if len(dims) == 2 else math.prod(dims[1:])


def random_weight(shape, *, device=None, dtype=DTYPE):
    """Kaiming normal weight: N(0, 2 / fan_in) entries (``fan_in`` above), a leaf tensor that
    requires grad. shape: (D, M) for an affine weight, (F, C, HH, WW) for a conv weight.
    Draws from torch's global generator."""
    dims = _shape_tuple("shape", shape)
    n_in = fan_in(dims)
    if n_in <= 0:
        raise ValueError(
            f"shape {dims} has fan-in {n_in}: Kaiming's std sqrt(2 / fan_in) needs >= 1"
        )
    w = torch.randn(dims, device=_device(device), dtype=dtype) * math.sqrt(2.0 / n_in)
    return w.requires_grad_()


def zero_weight(shape, *, device=None, dtype=DTYPE):
    """Zeros of ``shape`` (an int or a tuple), a leaf tensor that requires grad (biases)."""
    dims = _shape_tuple("shape", shape)
    return torch.zeros(dims, device=_device(device), dtype=dtype, requires_grad=True)


def _split_name(loader) -> str:
    """'val' for a loader over the training images (the notebook's validation split), 'test'
    otherwise; read from the dataset's ``train`` flag, as the notebook does."""
    return "val" if getattr(loader.dataset, "train", False) else "test"


def _count_correct(loader, scores_of, device, dtype) -> tuple[int, int]:
    num_correct, num_samples = 0, 0
    with torch.no_grad():
        for x, y in loader:
            x = x.to(device=device, dtype=dtype)
            y = y.to(device=device, dtype=torch.int64)
            preds = scores_of(x).argmax(dim=1)
            num_correct += int((preds == y).sum())
            num_samples += int(preds.shape[0])
    if num_samples == 0:
        raise ValueError("loader yielded no examples: cannot compute an accuracy")
    return num_correct, num_samples


def _report(num_correct: int, num_samples: int) -> float:
    acc = num_correct / num_samples
    print(f"Got {num_correct} / {num_samples} correct ({100 * acc:.2f}%)")
    return acc


def check_accuracy_part2(loader, model_fn, params, *, device=None, dtype=DTYPE) -> float:
    """Accuracy of ``scores = model_fn(x, params)`` over every batch of ``loader`` (a DataLoader
    of (x, y)), without building a graph. Prints the split and ``Got k / n correct (p%)`` as
    the notebook does, and returns k / n (the notebook returns nothing)."""
    device = _device(device)
    print(f"Checking accuracy on the {_split_name(loader)} set")
    correct, total = _count_correct(loader, lambda x: model_fn(x, params), device, dtype)
    return _report(correct, total)


def _check_print_every(print_every) -> int:
    if isinstance(print_every, bool) or not isinstance(print_every, int) or print_every < 1:
        raise ValueError(f"print_every must be an int >= 1, got {print_every!r}")
    return print_every


def train_part2(
    model_fn,
    params,
    learning_rate,
    *,
    loader_train,
    loader_val,
    device=None,
    dtype=DTYPE,
    print_every=PRINT_EVERY,
) -> list[float]:
    """One epoch of plain SGD over ``loader_train``: for each batch, the softmax cross-entropy
    of ``model_fn(x, params)`` (torch_impl's, equal to ``F.cross_entropy``), its gradient by
    autograd, then ``w -= learning_rate * w.grad`` and the gradient zeroed, in place, for every
    tensor of ``params`` (leaf tensors that require grad). Every ``print_every`` iterations
    (from 0) prints the loss and checks the accuracy on ``loader_val``.
    Returns the loss of every iteration (the notebook returns nothing)."""
    device = _device(device)
    print_every = _check_print_every(print_every)
    for i, w in enumerate(params):
        if not (isinstance(w, torch.Tensor) and w.is_leaf and w.requires_grad):
            raise ValueError(f"params[{i}] must be a leaf tensor that requires grad")
    losses = []
    for t, (x, y) in enumerate(loader_train):
        x = x.to(device=device, dtype=dtype)
        y = y.to(device=device, dtype=torch.long)
        loss = TF.softmax_loss(model_fn(x, params), y)
        loss.backward()
        with torch.no_grad():
            for w in params:
                w -= learning_rate * w.grad
                w.grad.zero_()
        losses.append(loss.item())
        if t % print_every == 0:
            print(f"Iteration {t}, loss = {losses[-1]:.4f}")
            check_accuracy_part2(loader_val, model_fn, params, device=device, dtype=dtype)
            print()
    return losses


# ----------------------------------------------------------------------------------------------
# Part III: the nn.Module API
# ----------------------------------------------------------------------------------------------


class Linear(nn.Module):
    """Affine layer in ``nn.Linear``'s layout: weight (out_features, in_features), bias
    (out_features,); forward(x (N, d_1, ..., d_k)) = flatten(x) @ weight.T + bias on
    torch_impl's affine (whose w is the transpose, (D, M)). PyTorch's default initialization
    (uniform in +-1/sqrt(in_features) for weight and bias)."""

    def __init__(self, in_features: int, out_features: int, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory))
        bound = 1.0 / math.sqrt(in_features) if in_features > 0 else 0.0
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            self.bias.uniform_(-bound, bound)

    def forward(self, x):
        return TF.affine(x, self.weight.T, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class Conv2d(nn.Module):
    """Stride-1 convolution in ``nn.Conv2d``'s layout: weight (out, in, k, k), bias (out,),
    symmetric zero ``padding``; torch_impl's conv does the math. PyTorch's default
    initialization (uniform in +-1/sqrt(in * k * k))."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0):
        super().__init__()
        self.padding = int(padding)
        k = int(kernel_size)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, k, k))
        self.bias = nn.Parameter(torch.empty(out_channels))
        bound = 1.0 / math.sqrt(in_channels * k * k)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            self.bias.uniform_(-bound, bound)

    def forward(self, x):
        return TF.conv(x, self.weight, self.bias, {"stride": 1, "pad": self.padding})

    def extra_repr(self) -> str:
        out, cin, k, _ = self.weight.shape
        return f"{cin}, {out}, kernel_size={k}, padding={self.padding}"


class ReLU(nn.Module):
    """max(0, x) on torch_impl's ReLU."""

    def forward(self, x):
        return TF.relu(x)


def _kaiming_normal_(weight: torch.Tensor) -> None:
    """nn.init.kaiming_normal_'s defaults (fan_in, ReLU gain sqrt(2)): N(0, 2 / fan_in) with
    fan_in = weight.shape[1] * (receptive field size)."""
    receptive = math.prod(weight.shape[2:])
    with torch.no_grad():
        weight.normal_(0.0, math.sqrt(2.0 / (weight.shape[1] * receptive)))


class TwoLayerFC(nn.Module):
    """fc1 - ReLU - fc2 on flattened inputs: (N, d_1, ..., d_k) with prod(d_i) = input_size ->
    scores (N, num_classes). Weights Kaiming normal, biases PyTorch's default, as the
    notebook's ``TwoLayerFC``."""

    def __init__(self, input_size, hidden_size, num_classes):
        super().__init__()
        self.fc1 = Linear(input_size, hidden_size)
        _kaiming_normal_(self.fc1.weight)
        self.fc2 = Linear(hidden_size, num_classes)
        _kaiming_normal_(self.fc2.weight)

    def forward(self, x):
        return self.fc2(TF.relu(self.fc1(flatten(x))))


class ThreeLayerConvNet(nn.Module):
    """conv1 (channel_1 5x5 filters, pad 2) - ReLU - conv2 (channel_2 3x3 filters, pad 1) -
    ReLU - fc (to num_classes) on (N, in_channel, 32, 32) CIFAR-10 images -> (N, num_classes).
    Weights Kaiming normal (the notebook asks for it), biases zero."""

    image_size = 32  # the notebook's fully connected layer reads channel_2 * 32 * 32 features

    def __init__(self, in_channel, channel_1, channel_2, num_classes):
        super().__init__()
        self.conv1 = Conv2d(in_channel, channel_1, kernel_size=5, padding=2)
        self.conv2 = Conv2d(channel_1, channel_2, kernel_size=3, padding=1)
        self.fc = Linear(channel_2 * self.image_size * self.image_size, num_classes)
        for layer in (self.conv1, self.conv2, self.fc):
            _kaiming_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        x = TF.relu(self.conv1(x))
        x = TF.relu(self.conv2(x))
        return self.fc(flatten(x))


def check_accuracy_part34(loader, model, *, device=None, dtype=DTYPE) -> float:
    """Accuracy of ``model`` (switched to eval mode) over every batch of ``loader``; prints as
    the notebook does and returns the fraction correct."""
    device = _device(device)
    split = "validation" if _split_name(loader) == "val" else "test"
    print(f"Checking accuracy on {split} set")
    model.eval()
    correct, total = _count_correct(loader, model, device, dtype)
    return _report(correct, total)


def train_part34(
    model,
    optimizer,
    epochs=1,
    *,
    loader_train,
    loader_val,
    device=None,
    dtype=DTYPE,
    print_every=PRINT_EVERY,
) -> list[float]:
    """``epochs`` passes over ``loader_train`` with ``optimizer`` (a torch.optim optimizer over
    the model's parameters): model to ``device``, training mode for each step, softmax
    cross-entropy (torch_impl's), zero_grad, backward, step. Every ``print_every`` iterations
    of an epoch prints the loss and checks the accuracy on ``loader_val``.
    Returns the loss of every iteration, all epochs in order."""
    device = _device(device)
    print_every = _check_print_every(print_every)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be an int >= 0, got {epochs!r}")
    model = model.to(device=device)
    losses = []
    for _ in range(epochs):
        for t, (x, y) in enumerate(loader_train):
            model.train()
            x = x.to(device=device, dtype=dtype)
            y = y.to(device=device, dtype=torch.long)
            loss = TF.softmax_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if t % print_every == 0:
                print(f"Iteration {t}, loss = {losses[-1]:.4f}")
                check_accuracy_part34(loader_val, model, device=device, dtype=dtype)
                print()
    return losses


# ----------------------------------------------------------------------------------------------
# Part IV: the nn.Sequential API
# ----------------------------------------------------------------------------------------------


def two_layer_fc_sequential(input_size, hidden_size, num_classes) -> nn.Sequential:
    """Flatten - Linear - ReLU - Linear, PyTorch's default initialization (the notebook's
    Sequential two-layer network)."""
    return nn.Sequential(
        Flatten(), Linear(input_size, hidden_size), ReLU(), Linear(hidden_size, num_classes)
    )


def three_layer_convnet_sequential(in_channel, channel_1, channel_2, num_classes) -> nn.Sequential:
    """The three-layer ConvNet of Part III as a Sequential (conv 5x5 pad 2 - ReLU - conv 3x3
    pad 1 - ReLU - Flatten - Linear), PyTorch's default initialization, 32x32 inputs."""
    return nn.Sequential(
        Conv2d(in_channel, channel_1, kernel_size=5, padding=2),
        ReLU(),
        Conv2d(channel_1, channel_2, kernel_size=3, padding=1),
        ReLU(),
        Flatten(),
        Linear(channel_2 * 32 * 32, num_classes),
    )


def sequential_optimizer(model: nn.Module, learning_rate: float) -> torch.optim.Optimizer:
    """Nesterov momentum 0.9, the optimizer the notebook trains its Sequential models with
    (``optim.SGD(..., momentum=0.9, nesterov=True)``), as torch_impl's own: the course notes'
    update with velocity v = -learning_rate * PyTorch's momentum buffer takes the same steps
    (parity_tests/test_optim.py)."""
    return Nesterov(model.parameters(), learning_rate=learning_rate, momentum=0.9)
