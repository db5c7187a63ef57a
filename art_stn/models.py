"""
Base models: the paper's MNIST and CIFAR-10 CNNs, a small CNN for the 8x8 digits, and a CIFAR-size ResNet-18
(for benchmarks), with a registry by name used by the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["MODELS", "ModelSpec", "build_model", "cifar10_cnn", "digits_cnn", "mnist_cnn", "resnet18_cifar"]


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


def mnist_cnn(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """
    The paper's MNIST model: two 3x3 conv layers of 64 filters, max-pooling, a 128-unit dense layer.

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


def cifar10_cnn(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """
    The paper's CIFAR-10 model: seven 3x3 conv layers (64, 64 | 128, 128 | 256, 256, 256 filters) with batch
    normalisation and max-pooling after each group, then a 256-unit dense layer.

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
    """

    builder: Callable[..., nn.Module]
    input_shape: tuple[int, ...]
    description: str


MODELS: dict[str, ModelSpec] = {
    "digits-cnn": ModelSpec(digits_cnn, (1, 8, 8), "small CNN for the 8x8 scikit-learn digits"),
    "mnist-cnn": ModelSpec(mnist_cnn, (1, 28, 28), "the paper's MNIST CNN (2 conv of 64, dense 128)"),
    "cifar10-cnn": ModelSpec(cifar10_cnn, (3, 32, 32), "the paper's CIFAR-10 CNN (7 conv, max-pooling)"),
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
