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


# ------------------------------------------------------------------------------------------------ intervals
class Bins(torch.nn.Module):
    """
    A closed-form k-class classifier on one feature: class c where the feature falls in the c-th of k bins cut at
    `thresholds`. At x = 0 with Gaussian noise of standard deviation sigma, P(class c) is the Gaussian mass of bin c.
    """

    def __init__(self, thresholds: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("thresholds", torch.tensor(thresholds, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls = (x[:, :1] > self.thresholds[None, :]).sum(dim=1)
        return torch.nn.functional.one_hot(cls, len(self.thresholds) + 1).float()


def bins(p: list[float], sigma: float, **kwargs) -> STNClassifier:
    """A :class:`Bins` classifier whose smoothed class probabilities at x = 0 are `p`."""
    thresholds = sigma * norm.ppf(np.cumsum(p)[:-1])
    return STNClassifier(
        Bins(thresholds), torch.nn.CrossEntropyLoss(), (1,), len(p), scale=sigma, alpha=ALPHA, device_type="cpu",
        **kwargs,
    )  # fmt: skip


# Settings of the interval coverage table: (name, classes, p at the input); two-class ones on the linear classifier.
COVERAGE_SETTINGS = {
    "2 classes, p1 = 0.60 (d = 0.25 sigma)": [norm.cdf(0.25), norm.sf(0.25)],
    "2 classes, p1 = 0.84 (d = sigma)": [norm.cdf(1.0), norm.sf(1.0)],
    "2 classes, p1 = 0.98 (d = 2 sigma)": [norm.cdf(2.0), norm.sf(2.0)],
    "10 classes, p = (0.5, 0.3, 0.025 x 8)": [0.5, 0.3] + [0.025] * 8,
    "10 classes, p = (0.9, 0.05, 0.00625 x 8)": [0.9, 0.05] + [0.00625] * 8,
    "10 classes, p = (0.98, 0.01, 0.00125 x 8)": [0.98, 0.01] + [0.00125] * 8,
}


def coverage_violations(interval: str, p: list[float], repeats: int, n: int, n0: int, seed: int) -> int:
    """
    Certify `repeats` copies of the input whose class probabilities are `p` and count the bound violations: the
    selected class's probability below `p1_lower`, or the largest other probability above `p2_upper` (either one
    can make a certificate wrong).
    """
    sigma = 0.5
    if len(p) == 2:  # the linear classifier: class 0 iff x_0 > 0, so p0 = Phi(x_0 / sigma)
        clf = linear([1.0, 0.0], scale=sigma, interval=interval)
        x = np.array([sigma * norm.ppf(p[0]), 0.0], dtype=np.float32)
    else:
        clf = bins(p, sigma, interval=interval)
        x = np.zeros(1, dtype=np.float32)
    clf.set_params(seed=seed)
    report = clf.certify_report(
        np.repeat(x[None], repeats, axis=0), n=n, n0=n0, batch_size=8192, indices=np.arange(repeats)
    )
    truth = np.asarray(p)
    p_top = truth[report.top]
    p_other = np.array([np.max(np.delete(truth, t)) for t in report.top])
    return int(np.sum((report.p1_lower > p_top) | (report.p2_upper < p_other)))


@pytest.mark.parametrize("setting", list(COVERAGE_SETTINGS))
@pytest.mark.parametrize("interval", ["clopper-pearson", "goodman"])
def test_interval_coverage_within_alpha(interval, setting):
    # 2000 certifications (n = 200, n0 = 20, alpha = 0.05) per cell; false-failure probability < 1e-6 per cell.
    violations = coverage_violations(interval, COVERAGE_SETTINGS[setting], N, n=200, n0=20, seed=21)
    print(f"coverage {interval} | {setting}: {violations} / {N}")
    assert violations <= TOLERANCE, violations


SISON_GLAZ_REPEATS = 600
SISON_GLAZ_TOLERANCE = int(binom.isf(1e-6, SISON_GLAZ_REPEATS, ALPHA))


@pytest.mark.slow
def test_sison_glaz_coverage_within_alpha_for_a_peaked_ten_class_input():
    # Sison-Glaz takes 0.1 to 1 s per distinct count vector in statsmodels, so 600 repetitions of a peaked input
    # (many repeated rows); false-failure probability < 1e-6. Other settings, where it under-covers, are in the
    # Guarantees page's table.
    setting = "10 classes, p = (0.98, 0.01, 0.00125 x 8)"
    violations = coverage_violations("sison-glaz", COVERAGE_SETTINGS[setting], SISON_GLAZ_REPEATS, 200, 20, seed=22)
    print(f"coverage sison-glaz | {setting}: {violations} / {SISON_GLAZ_REPEATS}")
    assert violations <= SISON_GLAZ_TOLERANCE, violations


def raw_top_two(counts: np.ndarray, alpha: float, top: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """statsmodels' simultaneous region as it is (the reference code's bounds), without art-stn's Clopper-Pearson
    floor: the top class's lower end and the largest other upper end, clipped to [0, 1]. One call per distinct row."""
    from statsmodels.stats.proportion import multinomial_proportions_confint

    cache: dict[tuple[bytes, int], tuple[float, float]] = {}
    out = np.empty((len(counts), 2))
    for i, (row, t) in enumerate(zip(counts, top, strict=True)):
        key = (row.tobytes(), int(t))
        if key not in cache:
            region = np.clip(multinomial_proportions_confint(row, alpha=alpha, method=method), 0.0, 1.0)
            lower = float(region[t, 0])
            cache[key] = (lower, min(float(np.max(np.delete(region[:, 1], t))), 1.0 - lower))
        out[i] = cache[key]
    return out[:, 0], out[:, 1]


def test_sison_glaz_under_covers_with_two_classes_so_it_is_refused():
    # Binomial counts of the linear classifier at d = 2 sigma (p = 0.977, 0.023), n = 200: statsmodels' own
    # Sison-Glaz bounds fail about 11% of the time at alpha = 5%, beyond the binomial tolerance, which is why art-stn
    # refuses the interval below 7 classes (and floors it at Clopper-Pearson's everywhere).
    # (False-failure probability: P(Binomial(2000, 0.11) <= 149) < 1e-7.)
    from art_stn.confidence import check_interval

    p = np.array([norm.cdf(2.0), norm.sf(2.0)])
    counts = np.random.default_rng(3).multinomial(200, p, size=N)
    p1_lower, p2_upper = raw_top_two(counts, ALPHA, np.zeros(N, dtype=np.int64), "sison-glaz")
    violations = int(np.sum((p1_lower > p[0]) | (p2_upper < p[1])))
    print(f"coverage sison-glaz | 2 classes, p1 = 0.98 (d = 2 sigma): {violations} / {N}")
    assert violations > TOLERANCE
    with pytest.raises(ValueError, match="7 classes"):
        check_interval("sison-glaz", nb_classes=2)


# ------------------------------------------------------------------------------------------------ sequential
@pytest.mark.parametrize(
    ("distance_over_sigma", "radii_over_d"), [(0.5, (0.3, 0.6, 1.0, 1.5)), (1.5, (0.3, 0.6))], ids=["0.5", "1.5"]
)
def test_sequential_violation_rate_below_alpha(distance_over_sigma, radii_over_d):
    # Sequential certification (stages 50, 200, 1000; alpha = 0.05 split over them; bound="cohen", which is tight here)
    # of the linear classifier, whose true robust radius is d. A violation: any bound's radius (the largest over the
    # stages an input ran) above d, or a certificate for the wrong class. The union bound makes this at most alpha per
    # input, so the count is at most Binomial(2000, 0.05) and the test's false-failure probability is < 1e-6. At
    # d = 0.5 sigma the radii asked about straddle d (inputs run on, or stop for futility); at 1.5 sigma they are
    # below it (inputs stop once certified).
    sigma = 0.5
    d = distance_over_sigma * sigma
    clf = linear(np.eye(8)[0], scale=sigma, bound="cohen", seed=31)
    x = np.zeros((N, 8), dtype=np.float32)
    x[:, 0] = d
    radii = [f * d for f in radii_over_d]
    report = clf.certify_report(x, n=1000, n0=20, radii=radii, sequential=True, stages=[50, 200], batch_size=8192)
    for name, radius in report.radii.items():
        wrong_class = report.certified_by[name] & (report.top == 1)
        violations = int(np.sum(wrong_class | ((report.top == 0) & (radius > d))))
        print(f"sequential d={distance_over_sigma} sigma: {name} {violations} / {N}")
        assert violations <= TOLERANCE, (name, violations)
    assert len(np.unique(report.samples)) > 1  # inputs stopped at different stages: the procedure was exercised
    assert np.mean(report.certified_radius >= 0.6 * d) > 0.5  # and it certifies: the test is not vacuous
    print("samples:", dict(zip(*(a.tolist() for a in np.unique(report.samples, return_counts=True)), strict=True)))
