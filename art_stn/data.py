"""
Data sets as numpy arrays in `[0, 1]`, channels first: the scikit-learn digits (embedded, the default), and MNIST,
CIFAR-10 and ImageNet (a folder tree) through torchvision (extra `vision`). Nothing downloads unless asked with
`download=True`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DATASETS", "load_cifar10", "load_dataset", "load_digits", "load_imagenet", "load_mnist"]

Split = tuple[np.ndarray, np.ndarray]


def load_digits(test_size: float = 0.25, seed: int = 0) -> tuple[Split, Split]:
    """
    The 8x8 handwritten digits that ship with scikit-learn (1797 images, 10 classes), scaled to `[0, 1]`, with a
    fixed stratified train/test split.

    :param test_size: Fraction of the images in the test split.
    :param seed: Seed of the split (fixed by default, so every run sees the same split).
    :return: `((x_train, y_train), (x_test, y_test))`, `x` of shape `(N, 1, 8, 8)` float32, `y` int64.
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    data = sk_load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    y = data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    return (x_tr, y_tr), (x_te, y_te)


def _torchvision() -> Any:
    """
    :return: The `torchvision.datasets` module.
    :raises ImportError: naming the `vision` extra when torchvision is missing.
    """
    try:
        import torchvision.datasets as datasets
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("MNIST, CIFAR-10 and ImageNet need torchvision: pip install 'art-stn[vision]'") from err
    return datasets


def _missing(name: str, root: Path, err: Exception) -> FileNotFoundError:
    """
    :return: A clear error for a data set that is not on disk.
    """
    return FileNotFoundError(
        f"{name} not found under {root} ({err}). Put the files there (torchvision's layout) or pass download=True "
        f"(--download on the command line) on a machine with internet access."
    )


def load_mnist(root: str | Path, train: bool = False, download: bool = False) -> Split:
    """
    MNIST through `torchvision.datasets.MNIST` (IDX files under `root/MNIST/raw`).

    :param root: The data folder.
    :param train: The training split (60,000) instead of the test split (10,000).
    :param download: Let torchvision download the files if missing.
    :return: `(x, y)`: `x` of shape `(N, 1, 28, 28)` float32 in `[0, 1]`, `y` int64.
    """
    root = Path(root)
    try:
        ds = _torchvision().MNIST(str(root), train=train, download=download)
    except RuntimeError as err:
        raise _missing("MNIST", root, err) from err
    return (ds.data.numpy().astype(np.float32) / 255.0)[:, None], ds.targets.numpy().astype(np.int64)


def load_cifar10(root: str | Path, train: bool = False, download: bool = False) -> Split:
    """
    CIFAR-10 through `torchvision.datasets.CIFAR10` (python batches under `root/cifar-10-batches-py`).

    :param root: The data folder.
    :param train: The training split (50,000) instead of the test split (10,000).
    :param download: Let torchvision download the archive if missing.
    :return: `(x, y)`: `x` of shape `(N, 3, 32, 32)` float32 in `[0, 1]`, `y` int64.
    """
    root = Path(root)
    try:
        ds = _torchvision().CIFAR10(str(root), train=train, download=download)
    except RuntimeError as err:
        raise _missing("CIFAR-10", root, err) from err
    x = np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)).astype(np.float32) / 255.0
    return x, np.asarray(ds.targets, dtype=np.int64)


def load_imagenet(root: str | Path, split: str = "val", image_size: int = 224, max_images: int | None = None) -> Split:
    """
    An ImageNet-style folder tree (`root/split/<class>/<image>`) through `torchvision.datasets.ImageFolder`,
    resized to 256 and centre-cropped to `image_size`, as in Cohen et al.

    :param root: The data folder.
    :param split: Sub-folder of `root` with one folder per class (`"val"`, `"train"`).
    :param image_size: Side of the centre crop.
    :param max_images: Load at most this many images (evenly spread over the folder, for quick runs).
    :return: `(x, y)`: `x` of shape `(N, 3, image_size, image_size)` float32 in `[0, 1]`, `y` int64.
    """
    datasets = _torchvision()
    import torchvision.transforms as T

    folder = Path(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(f"ImageNet folder not found: {folder} (expected {folder}/<class>/<image>).")
    transform = T.Compose([T.Resize(int(image_size * 256 / 224)), T.CenterCrop(image_size), T.ToTensor()])
    ds = datasets.ImageFolder(str(folder), transform=transform)
    idx = np.arange(len(ds))
    if max_images is not None and max_images < len(ds):
        idx = np.linspace(0, len(ds) - 1, max_images).round().astype(int)
    xs, ys = zip(*(ds[int(i)] for i in idx), strict=True)
    return np.stack([x.numpy() for x in xs]).astype(np.float32), np.asarray(ys, dtype=np.int64)


#: Data sets by name: (number of classes, input shape).
DATASETS: dict[str, tuple[int, tuple[int, ...]]] = {
    "digits": (10, (1, 8, 8)),
    "mnist": (10, (1, 28, 28)),
    "cifar10": (10, (3, 32, 32)),
    "imagenet": (1000, (3, 224, 224)),
}


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    train: bool = False,
    download: bool = False,
    max_images: int | None = None,
) -> Split:
    """
    Load a data set by name, as used by the command line.

    :param name: `"digits"`, `"mnist"`, `"cifar10"` or `"imagenet"`.
    :param data_dir: The data folder (not needed for digits).
    :param train: The training split instead of the test split.
    :param download: Let torchvision download missing files (MNIST, CIFAR-10).
    :param max_images: Keep at most this many images.
    :return: `(x, y)`.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}.")
    if name == "digits":
        x, y = load_digits()[0 if train else 1]
    else:
        if data_dir is None:
            raise ValueError(f"dataset {name!r} needs a data folder (--data-dir).")
        if name == "mnist":
            x, y = load_mnist(data_dir, train=train, download=download)
        elif name == "cifar10":
            x, y = load_cifar10(data_dir, train=train, download=download)
        else:
            return load_imagenet(data_dir, split="train" if train else "val", max_images=max_images)
    if max_images is not None:
        x, y = x[:max_images], y[:max_images]
    return x, y
