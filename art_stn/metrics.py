"""
Metrics of certificates: certified accuracy at given radii, curves over radius, paired differences between two
classifiers, the largest radius a protocol can certify, and plain-text tables.

Layer 3: pure functions of arrays (numpy / scipy) and of :mod:`art_stn.certification`; no ART, no model.
:mod:`art_stn.evaluate` re-exports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from art_stn.certification import certify_counts
from art_stn.validation import check_int

__all__ = [
    "bound_predictions",
    "certified_accuracy",
    "certified_accuracy_curve",
    "certified_accuracy_difference",
    "format_table",
    "max_certifiable_radius",
    "paired_difference",
    "summary_table",
]


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


def certified_accuracy_difference(
    a: tuple[np.ndarray, np.ndarray],
    b: tuple[np.ndarray, np.ndarray],
    labels: np.ndarray,
    radii: Sequence[float],
    confidence: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Difference of certified accuracy between two classifiers certified on the same examples (e.g. STN minus its
    ablation), with a paired confidence interval per radius.

    Per example `d_i = correct_a(r) - correct_b(r)` in {-1, 0, 1}; the difference is `mean(d)` and the interval
    that of :func:`paired_difference` (the examples, not the Monte Carlo noise, are the sample).

    :param a: `(prediction, radius)` of the first classifier.
    :param b: `(prediction, radius)` of the second, on the same examples in the same order.
    :param labels: True labels.
    :param radii: The radii.
    :param confidence: Two-sided confidence level, in (0, 1).
    :return: `(difference, lower, upper)`, one entry per radius (fractions).
    """
    pa, ra, labels = _check(*a, labels)
    pb, rb, _ = _check(*b, labels)
    r = np.asarray(radii, dtype=np.float64)[:, None]
    return paired_difference((pa == labels) & (ra >= r), (pb == labels) & (rb >= r), confidence)


def paired_difference(
    a: np.ndarray, b: np.ndarray, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Difference of two accuracies measured on the same examples, with a paired confidence interval: per example
    `d_i = a_i - b_i` in {-1, 0, 1}, the difference `mean(d)`, and Tango's score interval for matched proportions
    (Statistics in Medicine 17, 1998), one of the intervals Fagerland, Lydersen and Laake recommend (Statistics in
    Medicine 32, 2013): the differences `D` whose score statistic `(n_ab - n_ba - N D) / sqrt(N (2 q + D (1 - D)))`
    lies within `+-z`, where `n_ab` counts the examples only `a` gets right, `n_ba` those only `b` gets right, and
    `q` is the maximum-likelihood probability of the latter given `D`: it excludes 0 exactly when McNemar's test
    (asymptotic, uncorrected) rejects. The plain paired Wald interval, `mean(d) +- z * sd(d) / sqrt(N)`, has zero
    width when no example is discordant and covers far below its level when few are: in 400 simulated comparisons
    of 500 examples with a true difference of 0.2 points, it covered it 258 times, the score interval 397.

    :param a: Whether each example is correct for the first classifier (0 or 1), shape `(..., N)` (e.g. one row per
           radius or attack size).
    :param b: The same for the second, on the same examples in the same order.
    :param confidence: Two-sided confidence level, in (0, 1).
    :return: `(difference, lower, upper)`, one entry per row (fractions).
    :raises ValueError: when the shapes differ, an entry is not 0 or 1, or `confidence` is outside (0, 1).
    """
    from scipy.optimize import brentq
    from scipy.stats import norm

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` must lie in (0, 1); got {confidence!r}.")
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim == 0 or a.shape[-1] < 2:
        raise ValueError(f"`a` and `b` must have one shape with at least 2 examples; got {a.shape} and {b.shape}.")
    if not (np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all()):
        raise ValueError("`a` and `b` must hold 0 or 1 (correct or not) for every example.")
    d = a - b
    n, z = d.shape[-1], norm.ppf(0.5 + confidence / 2)
    n_ab, n_ba = (d > 0).sum(axis=-1).ravel(), (d < 0).sum(axis=-1).ravel()

    def score(delta: float, ab: int, ba: int, target: float = 0.0) -> float:
        """:return: Tango's statistic at the difference `delta` for `ab` and `ba` discordant examples, less `target`."""
        b_ = (2 * n - ab + ba) * delta - ab - ba
        c_ = -ba * delta * (1.0 - delta)
        q = (np.sqrt(max(b_ * b_ - 8.0 * n * c_, 0.0)) - b_) / (4.0 * n)
        return (ab - ba - n * delta) / np.sqrt(max(n * (2.0 * q + delta * (1.0 - delta)), 1e-300)) - target

    lower, upper = np.empty(n_ab.shape), np.empty(n_ab.shape)
    edge = 1.0 - 1e-12
    for i, (ab, ba) in enumerate(zip(n_ab.tolist(), n_ba.tolist(), strict=True)):
        mid = (ab - ba) / n  # the score is 0 there and decreases over [-1, 1]
        lower[i] = -1.0 if score(-edge, ab, ba, z) <= 0 else brentq(score, -edge, mid, args=(ab, ba, z))
        upper[i] = 1.0 if score(edge, ab, ba, -z) >= 0 else brentq(score, mid, edge, args=(ab, ba, -z))
    shape = d.shape[:-1]
    return d.mean(axis=-1), lower.reshape(shape)[()], upper.reshape(shape)[()]


def max_certifiable_radius(
    n: int,
    alpha: float,
    scale: float,
    noise: str = "gaussian",
    interval: str = "clopper-pearson",
    nb_classes: int = 2,
) -> dict[str, float]:
    """
    The largest radius a protocol can certify at all, per bound: the certificate of counts `[n, 0, ..., 0]` (every
    estimation sample on the top class), through the same bound code as :meth:`STNClassifier.certify_report`.

    No input gets a larger radius with these settings, however robust the model; e.g. `n = 100`, `alpha = 0.05`,
    sigma 0.7 caps the Renyi radius at about 1.02. The number of selection samples `n0` does not enter: the cap is
    reached when the selected class gets all `n` estimation samples. For sequential certification pass the last
    stage's sample size and failure probability (:func:`art_stn.confidence.stage_schedule`).

    :param n: Estimation samples per input, >= 1.
    :param alpha: Failure probability, in (0, 1).
    :param scale: Gaussian sigma or Laplace lambda, > 0.
    :param noise: `"gaussian"` or `"laplace"`.
    :param interval: The interval of `p1_lower` / `p2_upper` (one of :data:`art_stn.confidence.INTERVALS`).
    :param nb_classes: Number of classes (matters for the multinomial intervals only), >= 2.
    :return: The radius per bound name (L2 for Gaussian noise, L1 for Laplace noise).
    """
    n = check_int(n, "n", 1)
    nb_classes = check_int(nb_classes, "nb_classes", 2)
    counts = np.zeros((1, nb_classes), dtype=np.int64)
    counts[0, 0] = n
    report = certify_counts(counts, alpha, scale, noise=noise, interval=interval)
    return {name: float(r[0]) for name, r in report.radii.items()}


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


def bound_predictions(table: dict[str, np.ndarray], bound: str) -> np.ndarray:
    """
    The certified prediction under one bound, from a certify results table: the selected class (`top`) where the
    bound's radius is > 0, else -1. Files written before the `top` column have only the configured bound's
    prediction (`predict`): for them an input that this bound certifies but the configured one does not counts as
    not certified, so other bounds' accuracies are lower bounds.

    :param table: Columns of a certify results file (:func:`art_stn.results.read_results`).
    :param bound: A bound with a `radius_<bound>` column.
    :return: Per example the class, -1 where `bound` gives no certificate.
    :raises ValueError: if the table has no `radius_<bound>` column.
    """
    if f"radius_{bound}" not in table:
        raise ValueError(f"`bound` {bound!r} has no radius column; the table has {sorted(table)}.")
    top = table["top"] if "top" in table else table["predict"]
    return np.where(table[f"radius_{bound}"] > 0, top, -1)


def summary_table(results: dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]], radii: Sequence[float]) -> str:
    """
    The paper's Table 1 format from certify results files: a header line, then per file and bound the certified
    accuracy at radius 0 (correct and certified under that bound; it differs by bound, and is not the base model's
    clean accuracy) and "radius (accuracy%)" at each radius.

    :param results: `label -> (settings, columns)` as returned by :func:`read_results`.
    :param radii: The radii to report.
    :return: The table as text.
    """
    lines = [
        'certified accuracy by radius, "radius (accuracy)"; at r=0: correct and certified (not the base model\'s '
        "clean accuracy)"
    ]
    for label, (_, table) in results.items():
        for column in [c for c in table if c.startswith("radius_")]:
            pred = bound_predictions(table, column.removeprefix("radius_"))
            acc = certified_accuracy(pred, table[column], table["label"], [0.0, *radii])
            cells = "  ".join(f"{r:g} ({100 * a:.1f}%)" for r, a in zip(radii, acc[1:], strict=True))
            lines.append(f"{label} [{column[7:]}]  certified accuracy at r=0 {100 * acc[0]:.1f}%  {cells}")
    return "\n".join(lines)
