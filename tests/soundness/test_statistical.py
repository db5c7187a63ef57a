"""Statistical soundness: classifiers whose smoothed probabilities are known in closed form, certified many times.

Each test repeats a certification N times (N copies of one input, each with its own noise stream) and counts
violations: a certified radius above the true robust radius, or a certificate for the wrong class. A correct
implementation violates with probability <= alpha per certification, so the count is at most
Binomial(N, alpha); each test allows the 1 - 1e-6 quantile, i.e. its false-failure probability is < 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import binom, norm

from art_stn import STNClassifier
from art_stn.bounds import renyi_l2_radius
from art_stn.confidence import top_two_bounds
from tests.conftest import LinearBinary

N = 2000
ALPHA = 0.05
TOLERANCE = int(binom.isf(1e-6, N, ALPHA))


def linear(w, noise="gaussian", scale=1.0, **kwargs) -> STNClassifier:
    return STNClassifier(
        LinearBinary(np.asarray(w, dtype=np.float32), 0.0),
        torch.nn.CrossEntropyLoss(),
        (len(w),),
        2,
        noise=noise,
        scale=scale,
        alpha=ALPHA,
        device_type="cpu",
        **kwargs,
    )


def repeated(clf: STNClassifier, x: np.ndarray, n: int, n0: int, seed: int):
    clf.set_params(seed=seed)
    return clf.certify_report(
        np.repeat(x[None], N, axis=0), n=n, n0=n0, batch_size=8192, indices=np.arange(N) + seed * N
    )


@pytest.mark.parametrize("distance_over_sigma", [0.25, 1.0, 2.0])
def test_gaussian_linear_violation_rate_below_alpha(distance_over_sigma):
    # Class 0 iff w.x > 0 with ||w|| = 1: the smoothed classifier has p0 = Phi(d / sigma) and its decision boundary
    # is the same hyperplane, so its true robust L2 radius is exactly d.
    sigma = 0.5
    w = np.zeros(8)
    w[0] = 1.0
    x = np.zeros(8, dtype=np.float32)
    x[0] = distance_over_sigma * sigma
    report = repeated(linear(w, scale=sigma), x, n=200, n0=20, seed=int(distance_over_sigma * 4))
    d = distance_over_sigma * sigma
    for name, radius in report.radii.items():
        wrong_class = (report.prediction == 1) & (radius > 0)
        too_large = (report.prediction == 0) & (radius > d)
        violations = int(np.sum(wrong_class | too_large))
        assert violations <= TOLERANCE, (name, violations)
    # Cohen's radius is tight for this classifier: it must sometimes come close to d, or the test is vacuous.
    assert np.quantile(report.radii["cohen"], 0.9) > 0.5 * d
    p1 = norm.cdf(distance_over_sigma)
    assert abs(report.counts[:, 0].mean() / 200 - p1) < 0.01


def test_laplace_1d_violation_rate_below_alpha():
    lam, d = 0.4, 0.5
    report = repeated(linear([1.0], noise="laplace", scale=lam), np.array([d], dtype=np.float32), n=200, n0=20, seed=11)
    violations = int(np.sum(((report.prediction == 0) & (report.radius > d)) | (report.prediction == 1)))
    assert violations <= TOLERANCE
    assert np.quantile(report.radius, 0.9) > 0.5 * d  # Theorem 3 is tight here


class Constant(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((x.shape[0], 5))
        out[:, 3] = 1.0
        return out


def test_constant_classifier_certifies_its_class_with_the_sample_cap():
    clf = STNClassifier(
        Constant(), torch.nn.CrossEntropyLoss(), (4,), 5, scale=0.5, alpha=ALPHA, n0=10, seed=0, device_type="cpu"
    )
    report = clf.certify_report(np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32), n=300)
    assert np.all(report.prediction == 3)
    cap = top_two_bounds(np.array([[300, 0]]), alpha=ALPHA)
    np.testing.assert_allclose(report.radius, renyi_l2_radius(cap.p1_lower, cap.p2_upper, 0.5)[0])
    freq = clf.predict(np.zeros((3, 4), dtype=np.float32))
    np.testing.assert_array_equal(freq.argmax(1), 3)


@pytest.mark.parametrize("distance_over_sigma", [0.0, 0.05, 0.3])
def test_abstaining_predict_returns_the_wrong_class_at_most_alpha(distance_over_sigma):
    # The smoothed classifier's class is 0 (or a tie at distance 0). predict may abstain, but it may return class 1
    # with probability <= alpha.
    sigma = 1.0
    clf = linear([1.0, 0.0], scale=sigma, sample_size=200, seed=7)
    x = np.repeat(np.array([[distance_over_sigma * sigma, 0.0]], dtype=np.float32), N, axis=0)
    freq = clf.predict(x, batch_size=8192)
    answered = freq.sum(axis=1) > 0
    wrong = int(np.sum(answered & (freq.argmax(axis=1) == 1)))
    if distance_over_sigma == 0.0:  # a tie: either answer is wrong
        wrong = int(answered.sum())
    assert wrong <= TOLERANCE, wrong
