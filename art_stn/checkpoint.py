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
    "optimizer_settings",
    "schedule_settings",
    "load_checkpoint",
    "model_from_checkpoint",
    "restore_rng_state",
    "rng_state",
    "save_checkpoint",
    "strip_resume_state",
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


#: What only a resume needs: a finished model's checkpoint can drop it (:func:`strip_resume_state`).
RESUME_STATE = ("optimizer_state", "scheduler_state", "rng_state", "partial")


def strip_resume_state(path: str | Path) -> Path:
    """
    Rewrite a finished run's checkpoint without what only a resume needs (the optimizer's and scheduler's state, the
    random state and mid-epoch progress): the weights, settings, method, history and metadata stay, so
    :meth:`art_stn.STNClassifier.load` and `art-stn certify` read it as before, while a resume is refused (its
    optimizer settings are missing). Written atomically.

    :param path: The checkpoint.
    :return: The path.
    """
    ckpt = load_checkpoint(path)
    ckpt.pop("format", None)
    return save_checkpoint(path, {k: v for k, v in ckpt.items() if k not in RESUME_STATE})


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
    # The memory format is the loading machine's choice (measured there), not the model's: a stored one is ignored.
    settings.pop("channels_last", None)
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


#: The meaning of settings that an earlier art-stn checkpoint format did not store: a checkpoint without `method` that
#: has `gamma` was written by STNTrainer, and one without `detach_target` (added with the reference code's variant)
#: did not detach. Any other missing setting is unknown, and so a difference.
def _legacy_setting(ckpt: dict[str, Any], key: str) -> Any:
    """
    :param ckpt: A checkpoint without `key`.
    :param key: A setting.
    :return: What the setting was, where the format's history says so, else `_MISSING`.
    """
    method = ckpt.get("method", "stn" if "gamma" in ckpt else None)
    if key == "method" and method is not None:
        return method
    if key == "detach_target" and method == "stn":
        return False
    return _MISSING


class _Missing:
    """A setting the checkpoint does not record."""

    def __repr__(self) -> str:
        return "not recorded"


_MISSING = _Missing()
# Scheduler state that is progress, not a setting; `base_lrs` repeats the optimizer's starting rates.
_SCHEDULE_PROGRESS = ("last_epoch", "_step_count", "_last_lr", "_get_lr_called_within_step", "_is_initial", "base_lrs")


def optimizer_settings(param_groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """
    The hyperparameters of an optimizer's parameter groups, live or from a saved state dict: every entry but the
    parameters, with the rate the run started from (`initial_lr`, which a scheduler keeps) as `lr`.

    :param param_groups: `optimizer.param_groups` or `optimizer.state_dict()["param_groups"]`.
    :return: One dict per group.
    """
    settings = []
    for group in param_groups:
        plain = {k: v for k, v in group.items() if k not in ("params", "lr", "initial_lr")}
        plain["lr"] = group.get("initial_lr", group.get("lr"))
        settings.append(plain)
    return settings


def schedule_settings(state: dict[str, Any] | None) -> dict[str, Any] | None:
    """
    The settings of a learning-rate scheduler from its state dict (e.g. `T_max` of a cosine schedule, `step_size`
    and `gamma` of a step schedule), without its progress.

    :param state: `scheduler.state_dict()`, or None for no scheduler.
    :return: The settings, or None.
    """
    return None if state is None else {k: v for k, v in state.items() if k not in _SCHEDULE_PROGRESS}


def check_resume_settings(
    ckpt: dict[str, Any],
    now: dict[str, Any],
    path: str | Path,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
) -> None:
    """
    Refuse to continue a checkpoint trained under other settings. A setting the checkpoint does not record is a
    difference, except where an earlier format's meaning is known (a method-less checkpoint with `gamma` is STN's).

    :param ckpt: The checkpoint.
    :param now: The settings of the run that would continue it: `noise` and `scale` (compared with the stored
           smoothing settings) and any top-level checkpoint keys (`method`, `gamma`, `seed`, `batch_size`, ...).
    :param path: Its file, for the message.
    :param optimizer: The optimizer that would continue it: its hyperparameters (the starting `lr`, `momentum`,
           `weight_decay`, ...) must equal the stored optimizer's.
    :param scheduler: The scheduler that would continue it (None: none): its kind and settings (e.g. the cosine
           period `T_max`, set by the total number of epochs) must equal the stored scheduler's.
    :raises ValueError: naming the settings that differ.
    """
    smoothing = ckpt.get("smoothing", {})
    source = {**ckpt, **{k: smoothing[k] for k in ("noise", "scale") if k in smoothing}}
    stored = {k: source[k] if k in source else _legacy_setting(ckpt, k) for k in now}
    differ = {k: (stored[k], v) for k, v in now.items() if stored[k] is _MISSING or stored[k] != v}
    if optimizer is not None:
        saved = ckpt.get("optimizer_state")
        old = optimizer_settings(saved["param_groups"]) if saved else [{}]
        new = optimizer_settings(optimizer.param_groups)
        if len(old) != len(new):
            differ["optimizer parameter groups"] = (len(old), len(new))
        for a, b in zip(old, new, strict=False):
            differ |= {
                k: (a.get(k, _MISSING), b.get(k, _MISSING))
                for k in {**a, **b}
                if a.get(k, _MISSING) != b.get(k, _MISSING)
            }
        old_schedule = schedule_settings(ckpt.get("scheduler_state"))
        new_schedule = schedule_settings(None if scheduler is None else scheduler.state_dict())
        if (old_schedule is None) != (new_schedule is None):
            differ["scheduler"] = (
                "none" if old_schedule is None else "a scheduler",
                "none" if new_schedule is None else type(scheduler).__name__,
            )
        elif old_schedule is not None and new_schedule is not None:
            keys = {**old_schedule, **new_schedule}
            differ |= {k: (old_schedule.get(k, _MISSING), new_schedule.get(k, _MISSING)) for k in keys
                       if old_schedule.get(k, _MISSING) != new_schedule.get(k, _MISSING)}  # fmt: skip
    if differ:
        names = ", ".join(differ)
        hint = (
            " (T_max is the cosine schedule's length: --epochs of the run that wrote it)" if "T_max" in differ else ""
        )
        raise ValueError(
            f"cannot resume {path}: {names} differ (checkpoint, now): {differ}{hint}. Resume with the checkpoint's "
            "settings or start a new run."
        )
