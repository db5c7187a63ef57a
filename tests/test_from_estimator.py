"""`STNClassifier.from_estimator`: certify what ART's randomized-smoothing estimators trained.

The Cohen-rule check injects counts: ART's `certify` samples its own noise (on the host, from `np.random`), so its two
`_prediction_counts` calls are replaced by the counts that art-stn's `certify_report` sampled from the shared model;
ART's radius must then equal Cohen et al.'s CERTIFY rule computed from the report's counts (the one-sided
Clopper-Pearson lower bound `pA_lower` at level alpha on the top class, radius `sigma * Phi^-1(pA_lower)`).
The rule is computed here from `report.counts` and `report.top` with scipy, not taken from `report.radii["cohen"]`
(today that is Cohen's two-class form), so the test holds whichever Cohen form `bound="cohen"` reports.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from art.estimators.certification.randomized_smoothing import (
    PyTorchMACER,
    PyTorchRandomizedSmoothing,
    PyTorchSmoothAdv,
    PyTorchSmoothMix,
)
from art.estimators.classification import PyTorchClassifier
from scipy.stats import beta, chi2_contingency, norm

from art_stn import STNClassifier

SIGMA = 0.25


def mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))


def art_estimator(kind: str, net: torch.nn.Module, **kwargs):
    cls = {
        "randomized_smoothing": PyTorchRandomizedSmoothing,
        "macer": PyTorchMACER,
        "smooth_adv": PyTorchSmoothAdv,
        "smooth_mix": PyTorchSmoothMix,
    }[kind]
    return cls(
        model=net,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(1, 8, 8),
        nb_classes=10,
        optimizer=torch.optim.Adam(net.parameters(), lr=1e-2),
        clip_values=(0.0, 1.0),
        device_type="cpu",
        sample_size=40,
        scale=SIGMA,
        alpha=0.001,
        **kwargs,
    )


@pytest.fixture(scope="module")
def trained(digits) -> dict:
    """ART's PyTorchRandomizedSmoothing (Gaussian augmentation) and PyTorchMACER, each trained briefly on digits."""
    x, y = digits
    out = {}
    for kind, epochs in (("randomized_smoothing", 3), ("macer", 2)):
        torch.manual_seed(0)
        np.random.seed(0)  # noqa: NPY002 - ART draws its noise from the global numpy state
        kwargs = {"gaussian_samples": 4} if kind == "macer" else {}
        est = art_estimator(kind, mlp(), **kwargs)
        est.fit(x[:1200], y[:1200], nb_epochs=epochs, batch_size=64)
        out[kind] = est
    return out


def cohen_certify_rule(counts: np.ndarray, top: np.ndarray, alpha: float, sigma: float):
    """Cohen et al.'s CERTIFY from counts: one-sided Clopper-Pearson lower bound at alpha on the top class."""
    n = counts.sum(axis=1)
    k = counts[np.arange(len(top)), top]
    p_lower = np.where(k > 0, beta.ppf(alpha, np.maximum(k, 1), n - k + 1), 0.0)
    certified = p_lower >= 0.5  # ART abstains when pA_lower < 0.5 (Cohen: <= 0.5; equal only on a null set)
    radius = np.where(certified, sigma * norm.ppf(np.clip(p_lower, 0.5, 1.0)), 0.0)
    return np.where(certified, top, -1), radius


@pytest.mark.parametrize("kind", ["randomized_smoothing", "macer"])
def test_certify_report_of_art_trained_model_gives_arts_cohen_radius(kind, trained, digits, monkeypatch):
    est = trained[kind]
    clf = STNClassifier.from_estimator(est, n0=40, seed=0)
    assert clf.model is est.model and clf.scale == SIGMA and clf.sample_size == 40 and clf.alpha == 0.001
    assert clf.device == est.device and clf.preprocessing is est.preprocessing
    assert np.array_equal(clf.clip_values, est.clip_values)
    x, y = digits[0][1500:1560], digits[1][1500:1560]
    report = clf.certify_report(x, n=500)
    assert np.mean(report.prediction == y) > 0.5  # the ART-trained model certifies most test digits

    # ART's certify on the same counts: selection counts pick report.top, estimation counts are report.counts.
    injected = []
    for i in range(len(x)):
        injected += [np.eye(10)[report.top[i]] * clf.n0, report.counts[i].astype(float)]
    calls = iter(injected)
    monkeypatch.setattr(est, "_prediction_counts", lambda x_i, n=None, batch_size=128: next(calls))
    art_pred, art_radius = est.certify(x, n=500)
    assert next(calls, None) is None  # ART asked for exactly two count vectors per input

    rule_pred, rule_radius = cohen_certify_rule(report.counts, report.top, clf.alpha, clf.scale)
    assert np.array_equal(art_pred, rule_pred)
    np.testing.assert_allclose(art_radius, rule_radius, rtol=1e-9, atol=1e-12)
    assert (art_pred >= 0).sum() > len(x) // 2 and art_radius.max() > 0.3 * SIGMA


@pytest.mark.parametrize("kind", ["randomized_smoothing", "macer"])
def test_shared_model_gives_arts_noise_statistics(kind, trained, digits):
    """
    The counts art-stn samples through the shared model follow the same distribution as ART's own sampling.

    Pooled over 40 inputs, the class histograms of 200 noisy copies per input from each sampler are compared by a
    chi-square test of homogeneity at level 1e-6 (conservative for pooled multinomials): false failure <= 1e-6.
    """
    est = trained[kind]
    clf = STNClassifier.from_estimator(est, seed=1)
    x = digits[0][1600:1640]
    np.random.seed(1)  # noqa: NPY002 - ART draws its noise from the global numpy state
    art_counts = np.stack([est._prediction_counts(x_i, n=200, batch_size=200) for x_i in x]).sum(axis=0)
    stn_counts = clf.certify_report(x, n=200, n0=0).counts.sum(axis=0)
    table = np.stack([art_counts, stn_counts])
    table = table[:, table.sum(axis=0) > 0]
    assert chi2_contingency(table).pvalue > 1e-6


@pytest.mark.parametrize("kind", ["smooth_adv", "smooth_mix"])
def test_from_smoothadv_and_smoothmix(kind, digits):
    est = art_estimator(kind, mlp())
    clf = STNClassifier.from_estimator(est, sample_size=32)
    assert clf.model is est.model and clf.scale == SIGMA and clf.sample_size == 32 and clf.noise == "gaussian"
    prob = clf.predict(digits[0][:5])
    assert prob.shape == (5, 10) and np.all((prob.sum(1) == 0) | np.isclose(prob.sum(1), 1.0))


def test_from_estimator_settings_and_errors(digits_classifier):
    net = mlp()
    plain = PyTorchClassifier(net, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, clip_values=(0, 1), device_type="cpu")
    with pytest.raises(ValueError, match="scale"):
        STNClassifier.from_estimator(plain)
    clf = STNClassifier.from_estimator(plain, noise="laplace", scale=0.3, n0=10)
    assert clf.model is net and clf.noise == "laplace" and clf.bound == "laplace" and clf.scale == 0.3
    assert clf.n0 == 10 and clf.optimizer is None
    with pytest.raises(TypeError, match="estimator"):
        STNClassifier.from_estimator(net, scale=0.3)
    with pytest.raises(TypeError, match="sigma"):
        STNClassifier.from_estimator(plain, scale=0.3, sigma=0.5)

    stn = digits_classifier(bound="cohen", eot_samples=4, sample_size=20)  # an STNClassifier: every setting carries
    copy = STNClassifier.from_estimator(stn)
    assert copy.smoothing_settings() == stn.smoothing_settings() and copy.model is stn.model
    other = STNClassifier.from_estimator(stn, noise="laplace")  # the Gaussian bound does not carry over
    assert other.bound == "laplace" and other.scale == stn.scale and other.eot_samples == 4
