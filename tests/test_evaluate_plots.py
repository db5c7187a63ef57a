"""Tests of art_stn.evaluate and art_stn.plots."""

from __future__ import annotations

import numpy as np
import pytest

from art_stn.evaluate import certified_accuracy, certified_accuracy_curve, format_table
from art_stn.plots import plot_certified_accuracy, plot_robust_accuracy

PNG = b"\x89PNG\r\n\x1a\n"


def test_certified_accuracy():
    pred = np.array([0, 1, -1, 2, 3])
    radius = np.array([0.5, 1.0, 0.0, 0.2, 2.0])
    labels = np.array([0, 1, 2, 0, 3])
    np.testing.assert_allclose(certified_accuracy(pred, radius, labels, [0, 0.5, 1.0, 3.0]), [0.6, 0.6, 0.4, 0.0])
    grid, acc = certified_accuracy_curve(pred, radius, labels, points=5)
    assert grid[-1] == 2.0 and acc[0] == 0.6 and acc[-1] == 0.2
    with pytest.raises(ValueError, match="one length"):
        certified_accuracy(pred, radius[:3], labels, [0])
    with pytest.raises(ValueError, match="radius"):
        certified_accuracy(pred, -radius, labels, [0])
    table = format_table({"model": [0.6, 0.4]}, [0.0, 1.0])
    assert "60.0%" in table and "1.00" in table


def test_plots_write_readable_pngs(tmp_path):
    grid = np.linspace(0, 1, 50)
    out = plot_certified_accuracy({"STN": (grid, 1 - grid), "GA": (grid, (1 - grid) ** 2)}, tmp_path / "a.png")
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 10_000
    out = plot_robust_accuracy({"PGD": ([0.5, 1.0, 1.5], [0.9, 0.7, 0.4])}, tmp_path / "b.png")
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 10_000
    import matplotlib.image

    assert matplotlib.image.imread(out).shape[2] in (3, 4)
    with pytest.raises(ValueError, match="empty"):
        plot_certified_accuracy({}, tmp_path / "c.png")
    with pytest.raises(ValueError, match="points"):
        plot_robust_accuracy({"PGD": ([0.5], [0.9, 0.7])}, tmp_path / "d.png")


def test_certified_accuracy_difference_is_paired_and_covers_the_truth():
    from art_stn.evaluate import certified_accuracy_difference

    labels = np.zeros(8, dtype=int)
    a = (np.array([0, 0, 0, 0, 0, 0, -1, 1]), np.array([1.0, 1, 1, 1, 0.2, 0.2, 0, 0.5]))
    b = (np.array([0, 0, 0, 0, -1, -1, -1, 1]), np.array([1.0, 1, 1, 1, 0, 0, 0, 0.5]))
    diff, lo, hi = certified_accuracy_difference(a, b, labels, [0.0, 0.5])
    np.testing.assert_allclose(diff, [2 / 8, 0.0])
    d = np.array([0, 0, 0, 0, 1, 1, 0, 0])
    half = 1.959963984540054 * d.std(ddof=1) / np.sqrt(8)
    np.testing.assert_allclose([lo[0], hi[0]], [0.25 - half, 0.25 + half])
    assert lo[1] == hi[1] == 0.0  # identical at 0.5: no spread
    # Coverage: two independent noisy copies of one classifier differ by 0 in expectation.
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(200):
        y = np.zeros(400, dtype=int)
        # Each classifier is right (prediction 0) with probability 0.7, else abstains (-1).
        pred_a, pred_b = np.where(rng.random((2, 400)) < 0.7, 0, -1)
        _, lo, hi = certified_accuracy_difference((pred_a, np.ones(400)), (pred_b, np.ones(400)), y, [0.5])
        hits += lo[0] <= 0.0 <= hi[0]
    # 95% intervals: expected 190 of 200; P(fewer than 180) < 1e-3 under the binomial.
    assert hits >= 180, hits
    with pytest.raises(ValueError, match="confidence"):
        certified_accuracy_difference(a, b, labels, [0.0], confidence=1.0)
