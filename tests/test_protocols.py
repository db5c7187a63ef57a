"""Certification protocols: Cohen et al.'s exact rule (against a direct implementation and ART), the multinomial
intervals, sequential certification and the largest certifiable radius."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing
from scipy.stats import norm
from statsmodels.stats.proportion import multinomial_proportions_confint, proportion_confint

from art_stn import STNClassifier
from art_stn.bounds import cohen_certify_l2_radius, cohen_l2_radius, renyi_l2_radius
from art_stn.classifier import BOUNDS, certify_counts
from art_stn.confidence import stage_schedule, top_two_bounds
from art_stn.evaluate import max_certifiable_radius
from tests.conftest import LinearBinary


def random_counts(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Count vectors of many shapes (n from 1 to 100,000, 2 to 10 classes, flat to peaked) and a selected class."""
    out, tops = [], []
    for _ in range(rows):
        k = int(rng.integers(2, 11))
        n = int(rng.choice([1, 7, 100, 1000, 10_000, 100_000]))
        p = rng.dirichlet(np.full(k, float(rng.choice([0.05, 0.3, 1.0, 5.0]))))
        row = np.zeros(10, dtype=np.int64)
        row[:k] = rng.multinomial(n, p)
        out.append(row)
        # The selected class: usually the argmax (as from n0 samples), sometimes another class.
        tops.append(int(np.argmax(row)) if rng.random() < 0.8 else int(rng.integers(0, k)))
    return np.array(out), np.array(tops)


def cohen_direct(count: int, n: int, alpha: float, sigma: float) -> tuple[bool, float]:
    """Cohen et al.'s CERTIFY as their code/core.py writes it (statsmodels' interval, scipy's norm.ppf)."""
    pa = proportion_confint(count, n, alpha=2 * alpha, method="beta")[0]
    if pa < 0.5:
        return False, 0.0
    return True, sigma * norm.ppf(pa)


def test_cohen_bound_is_cohens_certify_on_random_counts():
    rng = np.random.default_rng(13)
    counts, top = random_counts(rng, 3000)
    worst = 0.0
    for alpha, sigma in [(0.001, 0.25), (0.05, 1.0)]:
        report = certify_counts(counts, alpha, sigma, bound="cohen", top=top, n0=100)
        for i, row in enumerate(counts):
            certified, radius = cohen_direct(int(row[top[i]]), int(row.sum()), alpha, sigma)
            assert report.prediction[i] == (top[i] if certified else -1)
            worst = max(worst, abs(report.radius[i] - radius))
        assert 0.2 < report.certified.mean() < 0.95  # both outcomes are exercised
    print(f"max |radius - Cohen's CERTIFY| over 6000 count vectors: {worst:.3g}")
    assert worst <= 1e-12


def test_cohen_bound_equals_art_certify_on_the_same_counts(monkeypatch):
    # ART's certify and ours get identical counts: ART's _prediction_counts and our _sample_counts are replaced by
    # functions returning fixed arrays (selection counts for n = n0, estimation counts otherwise).
    rng = np.random.default_rng(5)
    n0, n, m, sigma, alpha = 64, 5000, 300, 0.5, 0.001
    p = rng.dirichlet(np.full(10, 0.2), size=m)
    selection = np.array([rng.multinomial(n0, q) for q in p])
    estimation = np.array([rng.multinomial(n, q) for q in p])
    x = rng.random((m, 1, 8, 8)).astype(np.float32)

    def net() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))

    art = PyTorchRandomizedSmoothing(
        net(), torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, sample_size=n0, scale=sigma, alpha=alpha, device_type="cpu"
    )
    ours = STNClassifier(
        net(), torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, scale=sigma, alpha=alpha, n0=n0, bound="cohen",
        device_type="cpu",
    )  # fmt: skip
    queue = {n0: iter(selection), n: iter(estimation)}
    monkeypatch.setattr(art, "_prediction_counts", lambda x_i, n=None, batch_size=128: next(queue[n]).astype(float))
    monkeypatch.setattr(ours, "_sample_counts", lambda x_t, size, *args, **kwargs: {n0: selection, n: estimation}[size])
    art_pred, art_radius = art.certify(x, n=n)
    pred, radius = ours.certify(x, n=n)
    np.testing.assert_array_equal(pred, art_pred)
    difference = float(np.max(np.abs(radius - art_radius)))
    print(f"max |radius - ART certify| over {m} inputs: {difference:.3g}; certified {np.mean(pred >= 0):.2f}")
    assert difference <= 1e-12
    assert 0.1 < np.mean(pred >= 0) < 0.95


def test_cohen_top2_is_theorem_1_with_both_bounds_and_when_each_is_larger():
    counts = np.array([[900, 100, 0], [900, 50, 50], [600, 20] + [0], [5200, 4700, 100]])
    report = certify_counts(counts, 0.001, 0.5)
    assert set(report.radii) == set(BOUNDS["gaussian"]) == {"renyi", "cohen", "cohen-top2", "pixeldp"}
    ok = report.certified_by["cohen-top2"]
    np.testing.assert_allclose(
        report.radii["cohen-top2"][ok], cohen_l2_radius(report.p1_lower[ok], report.p2_upper[ok], 0.5)
    )
    np.testing.assert_allclose(report.radii["cohen"], np.maximum(cohen_certify_l2_radius(report.pa_lower, 0.5), 0))
    # Two classes: the runner-up bound is 1 - p1_lower, so cohen (pa_lower at alpha) beats cohen-top2 (alpha / 2).
    assert report.radii["cohen"][0] > report.radii["cohen-top2"][0] > report.radii["renyi"][0]
    # Mass spread over the other classes: p2_upper well below 1 - p1_lower, and cohen-top2 is the larger.
    assert report.radii["cohen-top2"][1] > report.radii["cohen"][1]
    two = STNClassifier(LinearBinary(np.ones(2, dtype=np.float32), 0.0), torch.nn.CrossEntropyLoss(), (2,), 2)
    assert two.bound == "renyi" and BOUNDS["laplace"] == ("laplace",)


def test_cohen_rule_abstains_below_one_half_and_certifies_at_exactly_one_half():
    assert cohen_certify_l2_radius(0.5, 1.0) == 0.0
    assert cohen_certify_l2_radius(0.3, 1.0) == 0.0
    assert cohen_certify_l2_radius(norm.cdf(1.5), 2.0) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="pa_lower"):
        cohen_certify_l2_radius(1.5, 1.0)
    report = certify_counts(np.array([[40, 30, 30]]), 0.05, 1.0, bound="cohen")
    assert report.prediction[0] == -1 and report.radius[0] == 0.0 and not report.certified_by["cohen"][0]


# ------------------------------------------------------------------------------------------------ intervals
@pytest.mark.parametrize("method", ["goodman", "sison-glaz"])
def test_multinomial_intervals_are_statsmodels_top_and_runner_up(method):
    # statsmodels' region, each bound widened to Clopper-Pearson's with Bonferroni where the region claims more.
    from art_stn.confidence import clopper_pearson_lower, clopper_pearson_upper

    rng = np.random.default_rng(2)
    counts = rng.multinomial(60, [0.7, 0.1, 0.05, 0.05, 0.04, 0.03, 0.03], size=6)
    counts = np.concatenate([counts, counts[:2]])  # repeated rows come from the cache
    top = np.argmax(counts, axis=1)
    bounds = top_two_bounds(counts, 0.05, top=top, interval=method)
    for i, row in enumerate(counts):
        region = multinomial_proportions_confint(row, alpha=0.05, method=method)
        lower = min(region[top[i], 0], clopper_pearson_lower(row[top[i]], 60, 0.025))
        assert bounds.p1_lower[i] == pytest.approx(lower)
        upper = max(np.max(np.delete(region[:, 1], top[i])), clopper_pearson_upper(bounds.count2[i], 60, 0.025))
        assert bounds.p2_upper[i] == pytest.approx(min(upper, 1 - lower))


def test_interval_parameter_is_validated_stored_and_overridable(digits_classifier, tmp_path):
    from art_stn import STNTrainer

    clf = digits_classifier(interval="goodman")
    assert clf.get_params()["interval"] == "goodman" and clf.smoothing_settings()["interval"] == "goodman"
    x = np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32)
    assert clf.certify_report(x, n=50, n0=10).interval == "goodman"
    report = clf.certify_report(x, n=50, n0=10, interval="clopper-pearson")
    assert report.interval == "clopper-pearson"
    np.testing.assert_allclose(report.p1_lower, top_two_bounds(report.counts, clf.alpha, top=report.top).p1_lower)
    STNTrainer(clf, gamma=1.0).save_checkpoint(tmp_path / "c.pt", epoch=0)
    restored = STNClassifier.load(tmp_path / "c.pt", model=clf.model, device_type="cpu")
    assert restored.interval == "goodman"
    with pytest.raises(ValueError, match="interval"):
        digits_classifier(interval="wilson")
    with pytest.raises(ValueError, match="interval"):
        clf.certify_report(x, n=50, interval="exact")
    with pytest.raises(ValueError, match="7 classes"):
        STNClassifier(
            LinearBinary(np.ones(2, dtype=np.float32), 0.0), torch.nn.CrossEntropyLoss(), (2,), 2, interval="sison-glaz"
        )


# ------------------------------------------------------------------------------------------------ sequential
class Constant(torch.nn.Module):
    """Always class 3 of 5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((x.shape[0], 5))
        out[:, 3] = 1.0
        return out


def test_stage_schedule():
    sizes, alphas = stage_schedule(10_000, 0.001)
    assert sizes == [100, 200, 400, 800, 1600, 3200, 6400, 10_000]
    assert alphas[-1] == 0.0005 and alphas[:-1] == [0.0005 / 7] * 7
    assert stage_schedule(10_000, 0.001, growth=10) == ([100, 1000, 10_000], [0.00025, 0.00025, 0.0005])
    sizes, alphas = stage_schedule(5000, 0.01, first=200, growth=4)
    assert sizes == [200, 800, 3200, 5000] and sum(alphas) == pytest.approx(0.01) and alphas[-1] == 0.005
    assert stage_schedule(80, 0.05) == ([80], [0.05])
    assert stage_schedule(1000, 0.05, stages=[50, 300]) == ([50, 300, 1000], [0.0125, 0.0125, 0.025])
    for bad in ([300, 200], [0, 10], [50, 2000], [1.5]):
        with pytest.raises(ValueError, match="stages"):
            stage_schedule(1000, 0.05, stages=bad)


def test_sequential_stops_at_the_first_stage_when_every_input_is_decided():
    clf = STNClassifier(Constant(), torch.nn.CrossEntropyLoss(), (4,), 5, scale=0.5, n0=10, seed=0, device_type="cpu")
    x = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    sizes, alphas = stage_schedule(10_000, 0.001)
    cap = max_certifiable_radius(100, alphas[0], 0.5)["renyi"]  # the first stage's Renyi ceiling
    report = clf.certify_report(x, n=10_000, alpha=0.001, radii=[0.1, 0.9 * cap], sequential=True)
    assert report.stages == tuple(sizes)
    np.testing.assert_array_equal(report.samples, 100 + 10)
    np.testing.assert_array_equal(report.prediction, 3)
    np.testing.assert_array_equal(report.certified_radius, 0.9 * cap)
    np.testing.assert_array_equal(report.counts.sum(axis=1), 100)


def test_sequential_stops_for_futility_at_the_first_stage():
    # On the boundary of a linear classifier p1 = p2 = 1/2: no radius is reachable, every input stops at stage 1.
    clf = STNClassifier(
        LinearBinary(np.array([1.0, 0.0], dtype=np.float32), 0.0), torch.nn.CrossEntropyLoss(), (2,), 2,
        scale=1.0, n0=20, seed=1, device_type="cpu",
    )  # fmt: skip
    x = np.zeros((40, 2), dtype=np.float32)
    report = clf.certify_report(x, n=100_000, radii=[0.5, 1.0], sequential=True, stages=[200, 2000])
    np.testing.assert_array_equal(report.samples, 200 + 20)
    np.testing.assert_array_equal(report.certified_radius, -1.0)
    assert np.all(report.prediction == -1)


def test_sequential_certificates_match_fixed_n_on_a_linear_classifier():
    # Inputs at known distances 0.1 to 1.6 from a linear boundary: sequential certification spends fewer samples,
    # never certifies beyond the true distance, and decides most inputs before the last stage.
    sigma = 0.5
    dist = np.linspace(0.1, 1.6, 60)
    x = np.stack([dist, np.zeros_like(dist)], axis=1).astype(np.float32)
    clf = STNClassifier(
        LinearBinary(np.array([1.0, 0.0], dtype=np.float32), 0.0), torch.nn.CrossEntropyLoss(), (2,), 2,
        scale=sigma, n0=20, seed=2, device_type="cpu", alpha=0.001,
    )  # fmt: skip
    radii = [0.25, 0.5, 0.75]
    fixed = clf.certify_report(x, n=20_000, radii=radii, batch_size=8192)
    seq = clf.certify_report(x, n=20_000, radii=radii, sequential=True, batch_size=8192)
    assert seq.samples.sum() < 0.5 * fixed.samples.sum()
    assert np.all(seq.certified_radius <= dist) and np.all(fixed.certified_radius <= dist)
    for r in radii:  # a Monte Carlo difference of a few inputs near each radius at most
        assert abs(np.sum(seq.certified_radius >= r) - np.sum(fixed.certified_radius >= r)) <= 3
    np.testing.assert_array_equal(fixed.samples, 20_020)
    assert set(np.unique(seq.samples)) <= {size + 20 for size in stage_schedule(20_000, 0.001)[0]}


def test_certified_radius_convention_and_sequential_argument_checks(digits_classifier):
    clf = digits_classifier(n0=10)
    x = np.random.default_rng(1).random((5, 1, 8, 8)).astype(np.float32)
    report = clf.certify_report(x, n=100, radii=[0.5, 0.0, 0.25])
    assert report.requested_radii == (0.0, 0.25, 0.5) and report.stages is None
    levels = [max([r for r in (0.0, 0.25, 0.5) if rad >= r]) if ok else -1.0 for rad, ok in
              zip(report.radius, report.certified, strict=True)]  # fmt: skip
    np.testing.assert_array_equal(report.certified_radius, levels)
    np.testing.assert_array_equal(report.samples, 110)
    with pytest.raises(ValueError, match="radii"):
        clf.certify_report(x, n=100, sequential=True)
    with pytest.raises(ValueError, match="n0"):
        clf.certify_report(x, n=100, radii=[0.1], sequential=True, n0=0)
    with pytest.raises(ValueError, match="stages"):
        clf.certify_report(x, n=100, radii=[0.1], stages=[10])
    with pytest.raises(ValueError, match="radii"):
        clf.certify_report(x, n=100, radii=[-1.0])
    with pytest.raises(ValueError, match="radii"):
        clf.certify_report(x, n=100, radii=[])
    with pytest.raises(TypeError, match="sequential"):
        clf.certify_report(x, n=100, radii=[0.1], sequential="yes")
    with pytest.raises(ValueError, match="futility"):
        clf.certify_report(x, n=100, radii=[0.1], sequential=True, futility=1.5)


# ------------------------------------------------------------------------------------------------ ceiling
def test_max_certifiable_radius():
    ceiling = max_certifiable_radius(100, 0.05, 0.7)
    assert set(ceiling) == set(BOUNDS["gaussian"])
    assert ceiling["renyi"] == pytest.approx(1.02, abs=0.01)
    cap = top_two_bounds(np.array([[100, 0]]), 0.05)
    assert ceiling["renyi"] == pytest.approx(renyi_l2_radius(cap.p1_lower, cap.p2_upper, 0.7)[0])
    assert ceiling["cohen"] == pytest.approx(0.7 * norm.ppf(0.05 ** (1 / 100)))
    assert ceiling["pixeldp"] < ceiling["renyi"] < ceiling["cohen-top2"] < ceiling["cohen"]
    assert max_certifiable_radius(1000, 0.05, 0.7)["renyi"] > ceiling["renyi"]
    assert set(max_certifiable_radius(100, 0.05, 0.3, noise="laplace")) == {"laplace"}
    goodman = max_certifiable_radius(100, 0.05, 0.7, interval="goodman", nb_classes=10)
    assert 0 < goodman["renyi"] and goodman["cohen"] == ceiling["cohen"]
    with pytest.raises(ValueError, match="n"):
        max_certifiable_radius(0, 0.05, 0.7)
