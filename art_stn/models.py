"""
Base models: the paper's MNIST and CIFAR-10 CNNs (as its reference code, Bai-Li/STN-Code, `models/*.json`, has them),
a small CNN for the 8x8 digits, smaller MNIST / CIFAR-10 CNNs of earlier art-stn versions, and a CIFAR-size ResNet-18
(for benchmarks), with a registry by name used by the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "MODELS",
    "ModelSpec",
    "OneOutput",
    "build_model",
    "cifar10_cnn",
    "cifar10_vgg",
    "build_optimizer",
    "digits_cnn",
    "lenet",
    "mnist_cnn",
    "mnist_small_cnn",
    "paper_optimizer",
    "resnet18_cifar",
]


def digits_cnn(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """
    A small CNN for the 8x8 scikit-learn digits: two 3x3 conv layers (32, 64 filters), max-pooling, a 128-unit
    dense layer.

    :param num_classes: Number of classes.
    :param in_channels: Input channels.
    :return: The model (input `(N, in_channels, 8, 8)`, output logits).
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


def _init_weights(model: nn.Module, init: str) -> nn.Module:
    """
    Initialise convolution and dense weights as Keras did in the reference code, biases to zero.

    :param model: The model.
    :param init: `"glorot_uniform"` (Keras' default) or `"he_normal"`.
    :return: The model.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if init == "glorot_uniform":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model


def mnist_cnn(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """
    The paper's MNIST model, as its reference code has it (`models/modelA_mnist.json` of Bai-Li/STN-Code):
    Conv(64, 5x5) - ReLU - Conv(64, 5x5) - ReLU - Dropout(0.25) - Flatten - Dense(128) - ReLU - Dropout(0.5) -
    Dense(10), valid padding, Glorot-uniform weights and zero biases (Keras' defaults). 3.3 million parameters.

    :param num_classes: Number of classes.
    :param in_channels: Input channels.
    :return: The model (input `(N, in_channels, 28, 28)`, output logits).
    """
    model = nn.Sequential(
        nn.Conv2d(in_channels, 64, 5),
        nn.ReLU(),
        nn.Conv2d(64, 64, 5),
        nn.ReLU(),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(64 * 20 * 20, 128),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, num_classes),
    )
    return _init_weights(model, "glorot_uniform")


class OneOutput(nn.Module):
    """
    The layers of an `nn.Sequential`, run in order, in a module that is not an `nn.Sequential`: ART's model wrapper
    then returns one output (the logits) instead of every layer's, which ART 1.20.1's TRADES trainer needs (it reads
    the first output as the logits). The layers keep their names, so the state dict is the Sequential's.
    """

    def __init__(self, sequential: nn.Sequential) -> None:
        """
        :param sequential: The model; its layers are shared, not copied.
        """
        super().__init__()
        for name, layer in sequential.named_children():
            self.add_module(name, layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        :param x: Inputs.
        :return: The last layer's output.
        """
        for layer in self.children():
            x = layer(x)
        return x


def lenet(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """
    LeNet as the certified-training literature trains it on MNIST (Cohen et al.'s and Jeong & Shin's code): Conv(20,
    5x5) - ReLU - MaxPool(2) - Conv(50, 5x5) - ReLU - MaxPool(2) - Flatten - Dense(500) - ReLU - Dense(10), inputs in
    [0, 1] with no normalisation, PyTorch's default initialisation. 431,080 parameters.

    :param num_classes: Number of classes.
    :param in_channels: Input channels.
    :return: The model (input `(N, in_channels, 28, 28)`, output logits).
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, 20, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 50, 500),
        nn.ReLU(),
        nn.Linear(500, num_classes),
    )


def mnist_small_cnn(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """
    A smaller MNIST CNN (what art-stn's `mnist-cnn` named in its first versions): two 3x3 conv layers of 64 filters,
    max-pooling, a 128-unit dense layer.

    :param num_classes: Number of classes.
    :param in_channels: Input channels.
    :return: The model (input `(N, in_channels, 28, 28)`, output logits).
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, 64, 3),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 12 * 12, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


def _same_max_pool() -> nn.Sequential:
    """
    Keras' `MaxPooling2D(pool_size=3, strides=2, padding="same")`: pad one row and column at the bottom and right
    (with -inf, which max-pooling ignores), then pool 3x3 with stride 2; 32 -> 16 -> 8.

    :return: The pooling layer.
    """
    return nn.Sequential(nn.ConstantPad2d((0, 1, 0, 1), float("-inf")), nn.MaxPool2d(3, 2))


def cifar10_cnn(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """
    The paper's CIFAR-10 model, as its reference code has it (`models/modelA_cifar10.json` of Bai-Li/STN-Code):
    seven convolutions with "same" padding and ELU activations, Conv(96, 5x5) - Conv(96, 1x1) - MaxPool(3, stride 2) -
    Dropout(0.5) - Conv(192, 5x5) - Conv(192, 1x1) - MaxPool(3, stride 2) - Dropout(0.5) - Conv(256, 3x3) -
    Conv(256, 1x1) - Conv(10, 1x1) - global average pooling; He-normal weights, zero biases. The reference code also
    puts an L2 penalty of 1e-4 on every kernel: :func:`paper_optimizer` applies it.

    :param num_classes: Number of classes.
    :param in_channels: Input channels.
    :return: The model (input `(N, in_channels, 32, 32)`, output logits).
    """
    layers: list[nn.Module] = []
    channels = in_channels
    for i, (width, kernel) in enumerate(((96, 5), (96, 1), (192, 5), (192, 1), (256, 3), (256, 1))):
        layers += [nn.Conv2d(channels, width, kernel, padding=kernel // 2), nn.ELU()]
        channels = width
        if i in (1, 3):
            layers += [_same_max_pool(), nn.Dropout(0.5)]
    layers += [nn.Conv2d(channels, num_classes, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return _init_weights(nn.Sequential(*layers), "he_normal")


def cifar10_vgg(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """
    A VGG-style CIFAR-10 CNN (what art-stn's `cifar10-cnn` named in its first versions): seven 3x3 conv layers (64,
    64 | 128, 128 | 256, 256, 256 filters) with batch normalisation and max-pooling after each group, then a 256-unit
    dense layer.

    :param num_classes: Number of classes.
    :param in_channels: Input channels.
    :return: The model (input `(N, in_channels, 32, 32)`, output logits).
    """
    layers: list[nn.Module] = []
    channels = in_channels
    for group in ((64, 64), (128, 128), (256, 256, 256)):
        for width in group:
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        layers.append(nn.MaxPool2d(2))
    layers += [nn.Flatten(), nn.Linear(256 * 4 * 4, 256), nn.ReLU(), nn.Linear(256, num_classes)]
    return nn.Sequential(*layers)


class _BasicBlock(nn.Module):
    """
    ResNet basic block (two 3x3 convolutions with a shortcut).
    """

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        """
        :param in_planes: Input channels.
        :param planes: Output channels.
        :param stride: Stride of the first convolution.
        """
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        :param x: Input.
        :return: Output.
        """
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet18_cifar(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """
    ResNet-18 for 32x32 inputs (3x3 stem, no stem max-pooling), as in the randomized-smoothing literature.

    :param num_classes: Number of classes.
    :param in_channels: Input channels.
    :return: The model.
    """
    layers: list[nn.Module] = [nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    in_planes = 64
    for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [_BasicBlock(in_planes, planes, stride), _BasicBlock(planes, planes, 1)]
        in_planes = planes
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class ModelSpec:
    """
    A registered model.

    :param builder: Function `(num_classes, in_channels) -> nn.Module`.
    :param input_shape: The input shape it expects.
    :param description: One line for `--help`.
    :param kernel_l2: Coefficient of the reference code's L2 penalty `kernel_l2 * sum(w^2)` on the kernels (0: none).
    """

    builder: Callable[..., nn.Module]
    input_shape: tuple[int, ...]
    description: str
    kernel_l2: float = 0.0


MODELS: dict[str, ModelSpec] = {
    "digits-cnn": ModelSpec(digits_cnn, (1, 8, 8), "small CNN for the 8x8 scikit-learn digits"),
    "mnist-cnn": ModelSpec(mnist_cnn, (1, 28, 28), "the paper's MNIST CNN (2 conv 5x5 of 64, dropout, dense 128)"),
    "lenet": ModelSpec(lenet, (1, 28, 28), "LeNet of the certified-training literature (431,080 parameters)"),
    "mnist-small-cnn": ModelSpec(mnist_small_cnn, (1, 28, 28), "a smaller MNIST CNN (2 conv 3x3, max-pool)"),
    "cifar10-cnn": ModelSpec(
        cifar10_cnn, (3, 32, 32), "the paper's CIFAR-10 CNN (7 conv, ELU, global average pooling)", kernel_l2=1e-4
    ),
    "cifar10-vgg": ModelSpec(cifar10_vgg, (3, 32, 32), "a VGG-style CIFAR-10 CNN (7 conv 3x3, batch norm)"),
    "resnet18-cifar": ModelSpec(resnet18_cifar, (3, 32, 32), "ResNet-18 for 32x32 inputs"),
}


def build_model(name: str, num_classes: int = 10) -> nn.Module:
    """
    Build a registered model by name.

    :param name: One of :data:`MODELS`.
    :param num_classes: Number of classes.
    :return: A freshly initialised model.
    :raises ValueError: for an unknown name.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}.")
    spec = MODELS[name]
    return spec.builder(num_classes=num_classes, in_channels=spec.input_shape[0])


def paper_optimizer(model: nn.Module, name: str, lr: float = 1e-3) -> torch.optim.Adam:
    """
    The reference code's optimizer for a registered model: Adam at a fixed learning rate, with the model's Keras-style
    L2 penalty on the kernels (`kernel_l2 * sum(w^2)` in the loss is `weight_decay = 2 * kernel_l2` on the kernels
    of an Adam with coupled decay; biases are not penalised).

    :param model: The model built by :func:`build_model`.
    :param name: Its registry name.
    :param lr: The learning rate (1e-3 in the reference code).
    :return: The optimizer.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}.")
    decay = 2 * MODELS[name].kernel_l2
    if decay == 0:
        return torch.optim.Adam(model.parameters(), lr=lr)
    kernels = [p for p in model.parameters() if p.ndim > 1]
    others = [p for p in model.parameters() if p.ndim <= 1]
    return torch.optim.Adam([{"params": kernels, "weight_decay": decay}, {"params": others}], lr=lr)


def build_optimizer(
    model: nn.Module,
    name: str,
    optimizer: str = "adam",
    lr: float = 1e-3,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """
    The optimizer of a registered model: the reference code's Adam (:func:`paper_optimizer`, with the model's own
    kernel penalty) or SGD with momentum and weight decay (the certified-training literature's: lr 0.01, momentum 0.9,
    weight decay 1e-4 for LeNet on MNIST).

    :param model: The model built by :func:`build_model`.
    :param name: Its registry name.
    :param optimizer: `"adam"` or `"sgd"`.
    :param lr: The learning rate, > 0.
    :param momentum: SGD's momentum, in [0, 1) (ignored by Adam).
    :param weight_decay: Weight decay on every parameter, >= 0 (SGD; Adam adds it to the model's kernel penalty).
    :return: The optimizer.
    :raises ValueError: for an unknown optimizer or model, or a bad rate, momentum or decay.
    """
    if not lr > 0 or not 0 <= momentum < 1 or not weight_decay >= 0:
        raise ValueError(
            f"need lr > 0, 0 <= momentum < 1 and weight_decay >= 0; got {lr!r}, {momentum!r}, {weight_decay!r}."
        )
    if optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    if optimizer != "adam":
        raise ValueError(f"`optimizer` must be 'adam' or 'sgd'; got {optimizer!r}.")
    adam = paper_optimizer(model, name, lr=lr)
    for group in adam.param_groups:
        group["weight_decay"] += weight_decay
    return adam
