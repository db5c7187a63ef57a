"""
The checkpoint format of art-stn: a dict saved with `torch.save`, read back with `torch.load(weights_only=True)`.

Keys: `format`, `model_state` (the base model's `state_dict`), `smoothing` (the classifier's settings:
:meth:`art_stn.STNClassifier.smoothing_settings`), `epoch`, `gamma`, `detach_target`, `seed`, `optimizer_state`,
`scheduler_state`, `history`, `metadata` (the command line stores the model's registry name and the data set),
`rng_state` and `partial` (progress inside an epoch). :class:`art_stn.STNTrainer` writes it,
:meth:`art_stn.STNClassifier.load` reads it.

Layer 3: torch and :mod:`art_stn.models` only.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from art_stn.models import build_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "check_resume_settings",
    "classifier_settings",
    "load_checkpoint",
    "model_from_checkpoint",
    "restore_rng_state",
    "rng_state",
    "save_checkpoint",
]

#: The version of the checkpoint layout.
CHECKPOINT_FORMAT = 1


def _why_unreadable(path: Path, err: Exception) -> str:
    """
    What is wrong with a file that `torch.load(..., weights_only=True)` refused, in a few words (PyTorch's own
    message advises retrying with `weights_only=False`, which is unsafe for a file from elsewhere).

    :param path: The file.
    :param err: The error of `torch.load`.
    :return: The reason, for a one-line message.
    """
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(4)
        if not head:
            return "the file is empty"
        if head.startswith(b"PK"):
            return "it is a truncated zip archive (an interrupted save, copy or download?)"
        return "it is not a file written by torch.save (a results file, text or another format?)"
    text = str(err)
    # PyTorch's own lines advise `weights_only=False` or filing an issue: keep only what names the problem.
    advice = ("weights only load failed", "weights_only", "please file an issue", "check the documentation")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = next((line for line in lines if not any(a in line.lower() for a in advice)), "")
    detail = re.sub(r"^WeightsUnpickler error:\s*", "", detail).split(". ")[0].rstrip(".")
    if "weights only load failed" in text.lower():
        detail = f" ({detail})" if detail else ""
        return f"it holds objects other than tensors and plain containers{detail}, which art-stn does not load"
    return (detail or type(err).__name__)[:200]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """
    Load an art-stn checkpoint safely (`torch.load(..., weights_only=True)`).

    :param path: The checkpoint file.
    :return: The checkpoint dict (`model_state`, `smoothing`, `epoch`, `optimizer_state`, ...).
    :raises FileNotFoundError: if the file does not exist.
    :raises ValueError: if the file is not a readable art-stn checkpoint: one line naming the file and what is wrong
            (the error of `torch.load` is its `__cause__`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, tampered or foreign pickles all land here
        raise ValueError(f"{path} is not a readable checkpoint: {_why_unreadable(path, err)}.") from err
    if not isinstance(ckpt, dict) or "model_state" not in ckpt or "smoothing" not in ckpt:
        raise ValueError(f"{path} is not an art-stn checkpoint (no model_state / smoothing settings).")
    return ckpt


def save_checkpoint(path: str | Path, ckpt: dict[str, Any]) -> Path:
    """
    Write a checkpoint dict to a temporary file, then rename it: a killed run never leaves a half-written file.

    :param path: Destination file (its folder is created).
    :param ckpt: The checkpoint dict; `format` is set to :data:`CHECKPOINT_FORMAT`.
    :return: The path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, **ckpt}, tmp)
    tmp.replace(path)
    return path


def model_from_checkpoint(
    ckpt: dict[str, Any], path: str | Path, model: torch.nn.Module | None = None
) -> torch.nn.Module:
    """
    The base model with the checkpoint's weights.

    :param ckpt: A checkpoint from :func:`load_checkpoint`.
    :param path: Its file, for messages.
    :param model: A model of the same architecture (its weights are replaced); None builds the model named in the
           checkpoint's metadata from :data:`art_stn.models.MODELS`.
    :return: The model.
    :raises ValueError: if the checkpoint names no model and none is given, or its weights do not fit the model.
    """
    if model is None:
        name = (ckpt.get("metadata") or {}).get("model")
        if name is None:
            raise ValueError(f"checkpoint {path} names no model: pass `model=` (an instance of its architecture).")
        model = build_model(name, num_classes=int(ckpt["smoothing"]["nb_classes"]))
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as err:
        raise ValueError(f"checkpoint {path} does not fit the given model: {err}") from err
    return model


def classifier_settings(ckpt: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """
    The constructor arguments of :class:`art_stn.STNClassifier` stored in a checkpoint.

    :param ckpt: A checkpoint from :func:`load_checkpoint`.
    :param overrides: Settings that replace the stored ones (e.g. `sample_size=1000`).
    :return: Keyword arguments (`input_shape` and `clip_values` as tuples).
    """
    settings = dict(ckpt["smoothing"])
    settings["input_shape"] = tuple(settings["input_shape"])
    clip = settings.pop("clip_values", None)
    settings["clip_values"] = None if clip is None else tuple(clip)
    settings.update(overrides)
    return settings


def rng_state(device: str | torch.device) -> dict[str, torch.Tensor]:
    """
    The state of torch's global generators that dropout (and a user's `DataLoader` shuffling) draw from.

    :param device: The training device.
    :return: The CPU generator's state and, on a CUDA device, that device's generator state.
    """
    state = {"cpu": torch.get_rng_state()}
    device = torch.device(device)
    if device.type == "cuda":  # pragma: no cover - needs a GPU
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, torch.Tensor], device: str | torch.device) -> None:
    """
    Restore the global generators saved by :func:`rng_state` (a checkpoint without them changes nothing).

    :param state: The saved state.
    :param device: The training device.
    """
    if "cpu" in state:
        torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.device(device).type == "cuda":  # pragma: no cover - needs a GPU
        torch.cuda.set_rng_state(state["cuda"], torch.device(device))


def check_resume_settings(ckpt: dict[str, Any], now: dict[str, Any], path: str | Path) -> None:
    """
    Refuse to continue a checkpoint trained under other settings.

    :param ckpt: The checkpoint.
    :param now: The settings of the run that would continue it: `noise` and `scale` (compared with the stored
           smoothing settings) and any top-level checkpoint keys (`gamma`, `seed`).
    :param path: Its file, for the message.
    :raises ValueError: naming the settings that differ.
    """
    smoothing = ckpt.get("smoothing", {})
    stored = {k: smoothing.get(k) if k in ("noise", "scale") else ckpt.get(k) for k in now}
    differ = {k: (stored[k], v) for k, v in now.items() if stored[k] is not None and stored[k] != v}
    if differ:
        names = ", ".join(differ)
        raise ValueError(
            f"cannot resume {path}: {names} differ (checkpoint, now): {differ}. Resume with the checkpoint's "
            "settings or start a new run."
        )
