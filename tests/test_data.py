"""Tests of art_stn.data on the embedded digits and on tiny files in torchvision's real on-disk formats."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from art_stn.data import load_cifar10, load_dataset, load_digits, load_imagenet, load_mnist
from tests.conftest import write_mnist

torchvision = pytest.importorskip("torchvision")


def test_digits_split_is_fixed_scaled_and_stratified():
    (x_tr, y_tr), (x_te, y_te) = load_digits()
    assert x_tr.shape[1:] == (1, 8, 8) and x_tr.dtype == np.float32 and y_tr.dtype == np.int64
    assert len(x_tr) + len(x_te) == 1797 and len(x_te) == 450
    assert x_tr.min() >= 0.0 and x_tr.max() == 1.0
    assert set(np.unique(y_te)) == set(range(10))
    (x2, _), _ = load_digits()
    np.testing.assert_array_equal(x_tr, x2)


def test_mnist_from_idx_files(tmp_path):
    write_mnist(tmp_path, n_train=6, n_test=4)
    x, y = load_mnist(tmp_path)
    assert x.shape == (4, 1, 28, 28) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(y, [0, 1, 2, 3])
    x_train, _ = load_dataset("mnist", tmp_path, train=True)
    assert x_train.shape == (6, 1, 28, 28)


def test_cifar10_from_python_batches(tmp_path, monkeypatch):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    # The real files are Python 2 pickles that torchvision reads with encoding="latin1": str keys.
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (3, 3072)).astype(np.uint8), "labels": [1, 2, 3]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    # torchvision checks the md5 sums of the real archive's files; tiny test files cannot match them.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    x, y = load_cifar10(tmp_path)
    assert x.shape == (3, 3, 32, 32) and x.dtype == np.float32
    np.testing.assert_array_equal(y, [1, 2, 3])


def test_imagenet_folder_tree(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("n01440764", "n01443537"):
        (tmp_path / "val" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "val" / cls / f"{i}.png")
    x, y = load_imagenet(tmp_path, image_size=32)
    assert x.shape == (4, 3, 32, 32) and 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(y, [0, 0, 1, 1])
    x, _ = load_dataset("imagenet", tmp_path, max_images=3)
    assert len(x) == 3


def test_missing_data_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="CIFAR-10"):
        load_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match="val"):
        load_imagenet(tmp_path)
    with pytest.raises(ValueError, match="data folder"):
        load_dataset("cifar10", None)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("svhn", tmp_path)
