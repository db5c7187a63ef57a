"""
Figures (matplotlib, written as PNG): certified accuracy against radius (the paper's Figure 1 style) and robust
accuracy against attack size (Figures 3 and 4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_certified_accuracy", "plot_robust_accuracy"]


def _pyplot():
    """
    :return: `matplotlib.pyplot` on the non-interactive Agg backend.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(curves: Mapping[str, Any]) -> tuple[Any, Any]:
    """
    Refuse an empty set of curves, then open a figure.

    :param curves: The curves to plot.
    :return: `(figure, axes)`.
    """
    if not curves:
        raise ValueError("`curves` is empty: nothing to plot.")
    return _pyplot().subplots(figsize=(6.4, 4.4), constrained_layout=True)


def _finish(fig, ax, xlabel: str, ylabel: str, title: str, out: str | Path) -> Path:
    """
    Label the axes, add grid and legend, write the PNG and close the figure.

    :return: The path written.
    """
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, ylim=(0, 100))
    ax.grid(alpha=0.3)
    ax.legend()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    _pyplot().close(fig)
    return out


def plot_certified_accuracy(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    out: str | Path,
    norm: int = 2,
    title: str = "Certified accuracy",
) -> Path:
    """
    Plot certified accuracy against radius, one curve per model and bound.

    :param curves: `name -> (radii, accuracy)`, e.g. from :func:`art_stn.evaluate.certified_accuracy_curve`.
    :param out: The PNG file to write.
    :param norm: The norm of the radius (2 or 1), for the axis label.
    :param title: Figure title.
    :return: The path written.
    """
    fig, ax = _figure(curves)
    styles = ["-", "--", "-.", ":"]
    for i, (name, (radii, acc)) in enumerate(curves.items()):
        ax.plot(radii, 100 * np.asarray(acc), styles[i % len(styles)], lw=2, label=name)
    return _finish(fig, ax, f"L{norm} radius", "certified accuracy (%)", title, out)


def plot_robust_accuracy(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    out: str | Path,
    xlabel: str = "attack size (L2)",
    title: str = "Robust accuracy under attack",
) -> Path:
    """
    Plot robust accuracy against attack size, one curve per model or attack.

    :param curves: `name -> (attack sizes, accuracy per size)` (fractions).
    :param out: The PNG file to write.
    :param xlabel: Label of the x axis.
    :param title: Figure title.
    :return: The path written.
    """
    fig, ax = _figure(curves)
    for name, (eps, acc) in curves.items():
        if len(acc) != len(eps):
            raise ValueError(f"curve {name!r} has {len(acc)} points for {len(eps)} attack sizes.")
        ax.plot(eps, 100 * np.asarray(acc), "o-", lw=2, label=name)
    return _finish(fig, ax, xlabel, "accuracy (%)", title, out)
