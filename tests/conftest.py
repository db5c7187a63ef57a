"""Shared fixtures: small models and data built in-process (nothing is downloaded)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import settings
from sklearn.datasets import load_digits

from art_stn import STNClassifier

# Property tests draw the same examples on every run (`ci`, the default): a failure is reproducible and CI never fails
# by chance. `HYPOTHESIS_PROFILE=search python -m pytest tests/test_reliability.py tests/test_rounding_soundness.py`
# searches afresh, with random draws and more examples.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("search", max_examples=3000, derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


class LinearBinary(torch.nn.Module):
    """Two-class linear model: logits (m, -m) with m = w.x + b, so class 0 iff w.x + b > 0."""

    def __init__(self, w: np.ndarray, b: float) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w, dtype=torch.float32).flatten())
        self.b = torch.nn.Parameter(torch.tensor(float(b)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1) @ self.w + self.b
        return torch.stack([m, -m], dim=1)


def write_idx(path, array: np.ndarray, magic: int) -> None:
    """Write an array in MNIST's IDX format (big-endian magic and dimensions, then uint8 data)."""
    import struct

    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape))
        f.write(array.astype(np.uint8).tobytes())


def write_mnist(root, n_train: int = 6, n_test: int = 4, seed: int = 0) -> None:
    """A tiny MNIST in torchvision's raw layout: root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), 0x00000803)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, 0x00000801)


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    return x, data.target.astype(np.int64)


@pytest.fixture(scope="session")
def trained_linear_state(digits) -> dict:
    """A softmax-regression model on digits, trained full-batch under Gaussian noise (about a second)."""
    x, y = digits
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(150):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(xt + 0.25 * torch.randn_like(xt)), yt)
        loss.backward()
        opt.step()
    return net.state_dict()


@pytest.fixture
def digits_classifier(trained_linear_state):
    def make(**kwargs) -> STNClassifier:
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
        net.load_state_dict(trained_linear_state)
        params = dict(scale=0.25, sample_size=16, alpha=0.001, device_type="cpu", seed=0, clip_values=(0.0, 1.0))
        params.update(kwargs)
        return STNClassifier(
            net,
            torch.nn.CrossEntropyLoss(),
            (1, 8, 8),
            10,
            optimizer=torch.optim.SGD(net.parameters(), lr=0.01),
            **params,
        )

    return make
