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
