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
    from art_stn.metrics import paired_difference

    labels = np.zeros(8, dtype=int)
    a = (np.array([0, 0, 0, 0, 0, 0, -1, 1]), np.array([1.0, 1, 1, 1, 0.2, 0.2, 0, 0.5]))
    b = (np.array([0, 0, 0, 0, -1, -1, -1, 1]), np.array([1.0, 1, 1, 1, 0, 0, 0, 0.5]))
    diff, lo, hi = certified_accuracy_difference(a, b, labels, [0.0, 0.5])
    np.testing.assert_allclose(diff, [2 / 8, 0.0])
    # Correct at radius 0 per example: a on 0-5 and 7, b on 0-3 and 7 (a pairs by example, not by sorted order).
    _, lo0, hi0 = paired_difference(np.array([1, 1, 1, 1, 1, 1, 0, 1]), np.array([1, 1, 1, 1, 0, 0, 0, 1]))
    np.testing.assert_allclose([lo[0], hi[0]], [lo0, hi0])
    assert lo[0] < 0.25 < hi[0]
    assert lo[1] < 0.0 < hi[1]  # identical at 0.5: no discordant example, an interval of nonzero width
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
    # Two examples, a tie and a loss for a (d = [0, -1]): the interval stays inside [-1, 1] and holds -0.5.
    diff, lo, hi = certified_accuracy_difference(
        (np.array([0, -1]), np.ones(2)), (np.array([0, 0]), np.ones(2)), np.zeros(2, dtype=int), [0.5]
    )
    assert -1.0 <= lo[0] < diff[0] == -0.5 < hi[0] < 1.0


def test_results_files_record_the_selected_class_for_every_bound(digits_classifier, digits, tmp_path):
    from art_stn.evaluate import certify_to_file, read_results
    from art_stn.metrics import bound_predictions

    x, y = digits[0][:8], digits[1][:8]
    clf = digits_classifier(seed=4, scale=0.5)
    out = certify_to_file(clf, x, y, np.arange(8), tmp_path / "c.tsv", n=64, n0=16, alpha=0.05, verbose=False)
    _, table, _ = read_results(out)
    report = clf.certify_report(x, n=64, n0=16, alpha=0.05)
    assert list(table["top"].astype(int)) == list(report.top)
    for bound in ("renyi", "cohen", "cohen-top2", "pixeldp"):
        expected = np.where(report.radii[bound] > 0, report.top, -1)
        assert list(bound_predictions(table, bound).astype(int)) == list(expected)
    with pytest.raises(ValueError, match="laplace"):
        bound_predictions(table, "laplace")


def test_results_file_without_the_top_column_resumes_in_its_own_layout(digits_classifier, digits, tmp_path):
    from art_stn.evaluate import certify_to_file, read_results

    x, y = digits[0][:6], digits[1][:6]
    clf = digits_classifier(seed=4)
    args = dict(n=32, n0=8, alpha=0.05, verbose=False)
    full = certify_to_file(clf, x, y, np.arange(6), tmp_path / "full.tsv", **args)
    # A file written before the `top` column: the same rows, without it, cut after three examples.
    lines = full.read_text().splitlines()
    columns = lines[1].split("\t")
    keep = [i for i, c in enumerate(columns) if c != "top"]
    legacy_lines = lines[:1] + ["\t".join(line.split("\t")[i] for i in keep) for line in lines[1:5]]
    legacy = tmp_path / "legacy.tsv"
    legacy.write_text("\n".join(legacy_lines) + "\n")
    certify_to_file(clf, x, y, np.arange(6), legacy, resume=True, **args)
    _, table, _ = read_results(legacy)
    _, full_table, _ = read_results(full)
    assert "top" not in table and sorted(table["idx"].astype(int)) == [0, 1, 2, 3, 4, 5]
    assert list(table["radius"]) == list(full_table["radius"])
