"""
Argument checks shared by every layer: each raises a `TypeError` or `ValueError` that names the argument.

Layer 1 (numpy / torch only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["check_alpha", "check_inputs", "check_int", "check_labels", "check_number", "check_radii"]


def check_int(value: Any, name: str, minimum: int) -> int:
    """
    Validate an integer argument.

    :param value: The value.
    :param name: The argument's name, for the error message.
    :param minimum: The smallest allowed value.
    :return: The value as an int.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an integer; got {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {value}.")
    return int(value)


def check_number(value: Any, name: str, low: float = 0.0) -> float:
    """
    Check a real number argument.

    :param value: A number.
    :param name: Its argument name.
    :param low: The smallest allowed value.
    :return: It as a float.
    :raises TypeError: if it is not a real number.
    :raises ValueError: if it is not finite or below `low`.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a number >= {low:g}; got {type(value).__name__}.")
    if not math.isfinite(value) or value < low:
        raise ValueError(f"`{name}` must be finite and >= {low:g}; got {value!r}.")
    return float(value)


def check_labels(y: np.ndarray | torch.Tensor, nb_classes: int, name: str = "y") -> np.ndarray:
    """
    Validate labels given as class indices `(N,)` or one-hot rows `(N, nb_classes)`.

    :param y: The labels (numpy array, torch tensor or sequence).
    :param nb_classes: The number of classes.
    :param name: The argument's name, for the error message.
    :return: Class indices, int64.
    :raises ValueError: on a wrong shape or width, non-integer indices, or a label outside `[0, nb_classes)`.
    """
    y_np = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if y_np.ndim == 2:
        if y_np.shape[1] != nb_classes:
            raise ValueError(f"`{name}` one-hot rows must have width nb_classes={nb_classes}; got {y_np.shape[1]}.")
        y_np = np.argmax(y_np, axis=1)
    if y_np.ndim != 1 or y_np.dtype.kind not in "iuf":
        raise ValueError(f"`{name}` must be class indices (N,) or one-hot rows (N, {nb_classes}); got {y_np.shape}.")
    if y_np.dtype.kind == "f" and not np.all(np.mod(y_np, 1) == 0):
        raise ValueError(f"`{name}` must hold integer class indices.")
    if y_np.size and ((y_np < 0) | (y_np >= nb_classes)).any():
        raise ValueError(f"`{name}` holds a label outside [0, {nb_classes}).")
    return y_np.astype(np.int64)


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """
    Validate a failure probability.

    :param alpha: The failure probability, in the open interval (0, 1).
    :param name: The argument's name, for the error message.
    :return: `alpha` as a float.
    :raises TypeError: if `alpha` is not a real number.
    :raises ValueError: if `alpha` is not in (0, 1).
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a float in (0, 1); got {type(alpha).__name__}.")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"`{name}` must lie in the open interval (0, 1); got {alpha!r}.")
    return float(alpha)


def check_radii(radii: Sequence[float]) -> tuple[float, ...]:
    """
    Validate the radii asked about.

    :param radii: A non-empty sequence of finite radii >= 0.
    :return: The distinct radii, ascending.
    """
    try:
        values = np.asarray(radii, dtype=np.float64).ravel()
    except (TypeError, ValueError) as err:
        raise TypeError(f"`radii` must be a sequence of numbers: {err}") from err
    if values.size == 0 or not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"`radii` must be a non-empty list of finite radii >= 0; got {radii!r}.")
    return tuple(float(r) for r in np.unique(values))


def check_inputs(
    x: np.ndarray | torch.Tensor, input_shape: Sequence[int], name: str = "x", channels_first: bool = True
) -> torch.Tensor:
    """
    Validate a batch of inputs and return it as a float32 tensor (on the host for numpy input).

    :param x: Inputs of shape `(N, *input_shape)`: a numpy array, a torch tensor, or a (nested) list.
    :param input_shape: The shape of one input.
    :param name: The argument's name, for the error message.
    :param channels_first: The layout of `input_shape`, quoted in the error message.
    :return: The inputs as a float32 tensor (detached; on `x`'s device for a tensor).
    :raises TypeError: on a non-numeric array or another type.
    :raises ValueError: on a wrong shape, an empty batch, or NaN / inf values.
    """
    if isinstance(x, (list, tuple)):
        x = np.asarray(x)
    if isinstance(x, torch.Tensor):
        if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int32, torch.int64)):
            raise TypeError(f"`{name}` must hold real numbers; got dtype {x.dtype}.")
        x_t = x.detach().float()
    elif isinstance(x, np.ndarray):
        if x.dtype.kind not in "fiu":
            raise TypeError(f"`{name}` must be a numeric array; got dtype {x.dtype}.")
        x_t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    else:
        raise TypeError(f"`{name}` must be a numpy array or torch tensor; got {type(x).__name__}.")
    expected = tuple(input_shape)
    if x_t.ndim != len(expected) + 1 or tuple(x_t.shape[1:]) != expected:
        raise ValueError(
            f"`{name}` must have shape (N, {', '.join(map(str, expected))}) (input_shape={expected}, "
            f"channels_first={channels_first}); got {tuple(x_t.shape)}."
        )
    if x_t.shape[0] == 0:
        raise ValueError(f"`{name}` is empty: pass at least one input.")
    if not torch.isfinite(x_t).all():
        raise ValueError(f"`{name}` contains NaN or inf.")
    return x_t
