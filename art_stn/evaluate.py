"""
Evaluation: certified accuracy at given radii and curves over radius, from certificates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["certified_accuracy", "certified_accuracy_curve", "format_table"]


def _check(prediction: np.ndarray, radius: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """
    Validate certificate arrays.

    :return: The arrays as numpy arrays.
    """
    prediction, radius, labels = np.asarray(prediction), np.asarray(radius, dtype=np.float64), np.asarray(labels)
    if not (prediction.shape == radius.shape == labels.shape) or prediction.ndim != 1:
        raise ValueError(
            f"`prediction`, `radius` and `labels` must be 1-D of one length; got {prediction.shape}, "
            f"{radius.shape}, {labels.shape}."
        )
    if np.isnan(radius).any() or (radius < 0).any():
        raise ValueError("`radius` must be >= 0 and not NaN.")
    return prediction, radius, labels


def certified_accuracy(
    prediction: np.ndarray, radius: np.ndarray, labels: np.ndarray, radii: Sequence[float]
) -> np.ndarray:
    """
    Certified accuracy at each radius: the fraction of inputs whose certified prediction is correct with a
    certified radius >= r (abstentions, prediction -1, never count).

    :param prediction: Certified predictions, -1 for abstain.
    :param radius: Certified radii.
    :param labels: True labels.
    :param radii: The radii to evaluate at.
    :return: Array of accuracies, one per radius.
    """
    prediction, radius, labels = _check(prediction, radius, labels)
    correct = prediction == labels
    r = np.asarray(radii, dtype=np.float64)
    if len(labels) == 0:
        return np.zeros(len(r))
    return np.mean(correct[None, :] & (radius[None, :] >= r[:, None]), axis=1)


def certified_accuracy_curve(
    prediction: np.ndarray, radius: np.ndarray, labels: np.ndarray, max_radius: float | None = None, points: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """
    Certified accuracy as a function of the radius, on a regular grid (for plots).

    :param prediction: Certified predictions, -1 for abstain.
    :param radius: Certified radii.
    :param labels: True labels.
    :param max_radius: End of the grid (default: the largest finite radius, or 1).
    :param points: Number of grid points.
    :return: `(radii, accuracy)`.
    """
    prediction, radius, labels = _check(prediction, radius, labels)
    if max_radius is None:
        finite = radius[np.isfinite(radius)]
        max_radius = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    grid = np.linspace(0.0, max_radius, points)
    return grid, certified_accuracy(prediction, radius, labels, grid)


def format_table(rows: dict[str, Sequence[float]], radii: Sequence[float], title: str = "radius") -> str:
    """
    A plain-text table of certified accuracies: one row per model/bound, one column per radius.

    :param rows: Accuracies (fractions) by row name.
    :param radii: The radii of the columns.
    :param title: Header of the first column.
    :return: The table.
    """
    width = max([len(title), *map(len, rows)])
    head = f"{title:<{width}} " + " ".join(f"{r:>7.2f}" for r in radii)
    lines = [head, "-" * len(head)]
    for name, accs in rows.items():
        lines.append(f"{name:<{width}} " + " ".join(f"{100 * a:>6.1f}%" for a in accs))
    return "\n".join(lines)
