"""Tests of STNClassifier: ART compatibility, certificates against known distances, gradients, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from art.estimators.classification import PyTorchClassifier
from scipy.stats import binom, norm

from art_stn import STNClassifier
from tests.conftest import LinearBinary


def linear_classifier(w: np.ndarray, b: float, noise: str = "gaussian", scale: float = 0.5, **kwargs):
    model = LinearBinary(w, b)
    return STNClassifier(
        model, torch.nn.CrossEntropyLoss(), (len(w),), 2, noise=noise, scale=scale, device_type="cpu", **kwargs
    )


# ------------------------------------------------------------------------------------------------ certificates
def test_gaussian_certificates_below_true_distance_and_cohen_close():
    # Linear boundary w.x + b = 0; the true L2 distance of x is |w.x + b| / ||w||. 40 inputs at 0.5 to 2.5 sigma.
    # Each certificate is wrong with probability <= alpha = 0.001 over the sampling; the test allows one wrong
    # radius, so a correct implementation fails it with probability <= P(Binomial(40, 0.001) >= 2) < 1e-3.
    rng = np.random.default_rng(0)
    d, sigma = 20, 0.5
    w = rng.normal(size=d)
    w /= np.linalg.norm(w)
    dist = np.linspace(0.5, 2.5, 40) * sigma
    side = np.where(np.arange(40) % 2 == 0, 1.0, -1.0)
    base = rng.normal(size=(40, d))
    base -= np.outer(base @ w, w)  # on the boundary (b = 0) ...
    x = (base + (side * dist)[:, None] * w).astype(np.float32)  # ... then moved to the known distance
    clf = linear_classifier(w, 0.0, scale=sigma, seed=1, n0=64)
    report = clf.certify_report(x, n=4000, batch_size=2048)
    expected_class = np.where(side > 0, 0, 1)
    assert np.all(report.prediction == expected_class)
    for name in ("renyi", "cohen", "pixeldp"):
        assert np.sum(report.radii[name] > dist) <= 1, name
    assert np.all(report.radii["renyi"] <= report.radii["cohen"])
    assert np.all(report.radii["pixeldp"] < report.radii["renyi"])
    np.testing.assert_array_less(np.abs(report.radii["cohen"] - dist) / dist, 0.30)
    assert binom.sf(1, 40, 0.001) < 1e-3
    # counts follow the closed form p = Phi(d / sigma) (a loose 6-sigma check on each)
    p = norm.cdf(dist / sigma)
    c1 = report.counts[np.arange(40), expected_class]
    assert np.all(np.abs(c1 - 4000 * p) <= 6 * np.sqrt(4000 * p * (1 - p)) + 1)


def test_laplace_certificates_below_true_l1_distance():
    # w = e_1: the L1 distance to the boundary x_1 = 0 is |x_1|, and p1 = 1 - exp(-|x_1| / lambda) / 2 exactly, for
    # which Theorem 3 is tight. Same failure budget as the Gaussian test.
    lam = 0.4
    dist = np.linspace(0.5, 2.5, 40) * lam
    x = np.zeros((40, 4), dtype=np.float32)
    x[:, 0] = dist * np.where(np.arange(40) % 2 == 0, 1, -1)
    x[:, 1:] = np.random.default_rng(1).normal(size=(40, 3))
    clf = linear_classifier(np.array([1.0, 0, 0, 0]), 0.0, noise="laplace", scale=lam, seed=2)
    assert clf.bound == "laplace" and clf.norm == 1
    report = clf.certify_report(x, n=4000, batch_size=4096)
    assert set(report.radii) == {"laplace"}
    assert np.all(report.certified)
    assert np.sum(report.radius > dist) <= 1
    np.testing.assert_array_less(np.abs(report.radius - dist) / dist, 0.30)


def test_abstain_at_the_boundary_and_certify_signature():
    clf = linear_classifier(np.array([1.0, 0.0]), 0.0, scale=1.0, seed=3, sample_size=400)
    x = np.array([[0.0, 0.3], [3.0, 0.0]], dtype=np.float32)
    pred, radius = clf.certify(x, n=400)
    assert pred.dtype.kind == "i" and radius.dtype == np.float64
    assert pred[0] == -1 and radius[0] == 0.0  # 50/50: abstain
    assert pred[1] == 0 and radius[1] > 0
    p = clf.predict(x)
    np.testing.assert_array_equal(p[0], [0.0, 0.0])
    assert p[1].sum() == pytest.approx(1.0)
    p = clf.predict(x, is_abstain=False, training_mode=False)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)


def test_n0_zero_uses_the_papers_single_sample_protocol():
    clf = linear_classifier(np.array([1.0, 0.0]), 0.0, scale=1.0, seed=3, n0=0)
    report = clf.certify_report(np.array([[2.0, 0.0]], dtype=np.float32), n=500)
    assert report.n0 == 0 and report.prediction[0] == 0 and report.counts.sum() == 500


def test_same_seed_same_certificates_and_batching_invariance(digits_classifier, digits):
    x = digits[0][:12]
    a = digits_classifier(seed=5).certify_report(x, n=200, batch_size=64)
    b = digits_classifier(seed=5).certify_report(x, n=200, batch_size=64)
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_array_equal(a.radius, b.radius)
    c = digits_classifier(seed=6).certify_report(x, n=200, batch_size=64)
    assert not np.array_equal(a.counts, c.counts)
    # Noise streams are keyed by example index: a shard of the inputs gets the same counts.
    shard = digits_classifier(seed=5).certify_report(x[1::3], n=200, batch_size=64, indices=np.arange(12)[1::3])
    np.testing.assert_array_equal(shard.counts, a.counts[1::3])


def test_unseeded_sampling_is_random_and_on_device(digits_classifier, digits, monkeypatch):
    def no_host_noise(*args, **kwargs):
        raise AssertionError("noise must not be drawn on the host with numpy")

    monkeypatch.setattr(np.random, "normal", no_host_noise)
    monkeypatch.setattr(np.random, "laplace", no_host_noise)
    clf = digits_classifier(seed=None)
    x = digits[0][:5]
    r1 = clf.certify_report(x, n=300)
    r2 = clf.certify_report(x, n=300)
    assert r1.counts.sum() == 5 * 300 and not np.array_equal(r1.counts, r2.counts)


def test_counts_mix_examples_in_one_batch(digits_classifier, digits):
    clf = digits_classifier()
    sizes = []
    original = clf._logits

    def spy(batch):
        sizes.append(batch.shape[0])
        return original(batch)

    clf._logits = spy
    counts = clf._sample_counts(torch.from_numpy(digits[0][:10]), n=16, batch_size=64)
    assert sizes == [64, 64, 32]  # 4 examples of 16 copies per model call, not one call per example
    np.testing.assert_array_equal(counts.sum(axis=1), 16)


def test_smoothed_accuracy_on_digits(digits_classifier, digits):
    x, y = digits
    clf = digits_classifier(sample_size=32)
    pred = clf.predict(x[:300], is_abstain=False)
    assert np.mean(pred.argmax(1) == y[:300]) > 0.85


# ------------------------------------------------------------------------------------------------ gradients
def test_loss_gradient_matches_art_at_vanishing_noise(digits_classifier, digits, trained_linear_state):
    x, y = digits[0][:8], digits[1][:8]
    clf = digits_classifier(scale=1e-6, eot_samples=4)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    net.load_state_dict(trained_linear_state)
    art = PyTorchClassifier(net, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, device_type="cpu")
    onehot = np.eye(10, dtype=np.float32)[y]
    reference = art.loss_gradient(x, onehot)
    np.testing.assert_allclose(clf.loss_gradient(x, y), reference, rtol=1e-3, atol=1e-7)
    # one-hot labels and small backward chunks give the same answer
    np.testing.assert_allclose(clf.loss_gradient(x, onehot, batch_size=4), reference, rtol=1e-3, atol=1e-7)


def test_loss_gradient_tensor_in_tensor_out(digits_classifier, digits):
    clf = digits_classifier()
    x = torch.from_numpy(digits[0][:4])
    g = clf.loss_gradient(x, torch.from_numpy(digits[1][:4]))
    assert isinstance(g, torch.Tensor) and g.shape == x.shape and torch.isfinite(g).all()
    g_np = clf.loss_gradient(digits[0][:4], digits[1][:4])
    assert isinstance(g_np, np.ndarray) and g_np.dtype == np.float32


def test_class_gradient_is_gradient_of_the_log_smoothed_softmax(digits_classifier, digits, trained_linear_state):
    x = digits[0][:3]
    clf = digits_classifier(scale=1e-6, eot_samples=2)
    weight = trained_linear_state["1.weight"].numpy()
    all_classes = clf.class_gradient(x)
    assert all_classes.shape == (3, 10, 1, 8, 8)
    probs = torch.softmax(
        torch.from_numpy(x.reshape(3, 64)) @ torch.from_numpy(weight).T + trained_linear_state["1.bias"], dim=1
    ).numpy()
    for i in range(3):
        expected = weight - probs[i] @ weight  # d log softmax_c / dx = W_c - sum_j p_j W_j (noise 1e-6: no averaging)
        np.testing.assert_allclose(all_classes[i].reshape(10, 64), expected, rtol=1e-3, atol=1e-6)
    one = clf.class_gradient(x, label=3)
    np.testing.assert_allclose(one[:, 0], all_classes[:, 3], rtol=1e-3, atol=1e-6)
    per = clf.class_gradient(x, label=np.array([1, 2, 3]))
    assert per.shape == (3, 1, 1, 8, 8)
    np.testing.assert_allclose(per[2, 0], all_classes[2, 3], rtol=1e-3, atol=1e-6)


# ------------------------------------------------------------------------------------------------ ART APIs
def test_art_params_set_params_and_clone(digits_classifier):
    clf = digits_classifier(noise="gaussian", scale=0.3, bound="cohen", n0=10, eot_samples=3, seed=4)
    params = clf.get_params()
    for key in ("noise", "scale", "alpha", "bound", "n0", "eot_samples", "seed", "sample_size"):
        assert key in params
    clf.set_params(scale=0.6, sample_size=20)
    assert clf.scale == 0.6 and clf.sample_size == 20
    with pytest.raises(ValueError, match="scale"):
        clf.set_params(scale=0.0)
    clf.set_params(scale=0.6)
    clone = clf.clone_for_refitting()
    assert isinstance(clone, STNClassifier)
    assert (clone.scale, clone.bound, clone.n0, clone.eot_samples, clone.seed) == (0.6, "cohen", 10, 3, 4)
    assert clone.model is not clf.model


def test_is_accepted_where_art_wants_randomized_smoothing(digits_classifier):
    from art.estimators.certification.randomized_smoothing import RandomizedSmoothingMixin

    assert isinstance(digits_classifier(), RandomizedSmoothingMixin)
    assert isinstance(digits_classifier(), PyTorchClassifier)


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"scale": 0.0}, ValueError, "scale"),
        ({"scale": -1.0}, ValueError, "scale"),
        ({"scale": float("nan")}, ValueError, "scale"),
        ({"sample_size": 0}, ValueError, "sample_size"),
        ({"sample_size": 2.5}, TypeError, "sample_size"),
        ({"alpha": 0.0}, ValueError, "alpha"),
        ({"alpha": 1.0}, ValueError, "alpha"),
        ({"noise": "uniform"}, ValueError, "noise"),
        ({"bound": "renyi", "noise": "laplace"}, ValueError, "bound"),
        ({"bound": "nope"}, ValueError, "bound"),
        ({"n0": -1}, ValueError, "n0"),
        ({"eot_samples": 0}, ValueError, "eot_samples"),
    ],
)
def test_bad_constructor_arguments(digits_classifier, kwargs, error, match):
    with pytest.raises(error, match=match):
        digits_classifier(**kwargs)


def test_bad_inputs(digits_classifier, digits):
    clf = digits_classifier()
    x = digits[0][:2].copy()
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        clf.predict(bad)
    bad[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        clf.certify(bad, n=10)
    with pytest.raises(ValueError, match="shape"):
        clf.predict(x.reshape(2, 8, 8, 1))
    with pytest.raises(ValueError, match="empty"):
        clf.predict(x[:0])
    with pytest.raises(TypeError, match="x"):
        clf.predict("digits")
    with pytest.raises(TypeError, match="x"):
        clf.predict(np.array([["a"] * 64] * 2).reshape(2, 1, 8, 8))
    assert clf.predict(x.tolist()).shape == (2, 10)
    with pytest.raises(ValueError, match="`n`"):
        clf.certify(x, n=0)
    with pytest.raises(ValueError, match="alpha"):
        clf.certify(x, n=10, alpha=1.5)
    with pytest.raises(ValueError, match="`y`"):
        clf.loss_gradient(x, np.array([0, 10]))
    with pytest.raises(ValueError, match="label"):
        clf.class_gradient(x, label=12)


def test_model_output_width_must_match_nb_classes():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    clf = STNClassifier(net, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, device_type="cpu")
    with pytest.raises(ValueError, match="nb_classes"):
        clf.predict(np.zeros((2, 1, 8, 8), dtype=np.float32))


def test_bf16_channels_last_and_automatic_batch_size(digits_classifier, digits):
    x = digits[0][:8]
    fp32 = digits_classifier(seed=9).certify_report(x, n=200)
    clf = digits_classifier(seed=9, precision="bf16", channels_last=True)
    assert clf._batch_size(None) == 256  # the documented CPU default
    bf16 = clf.certify_report(x, n=200)  # batch_size=None: automatic
    # bf16 is another base classifier: certificates are its own, but close to fp32's on this easy model
    assert np.mean(bf16.prediction == fp32.prediction) >= 0.75
    assert clf.smoothing_settings()["precision"] == "bf16"
    with pytest.raises(ValueError, match="precision"):
        digits_classifier(precision="fp16")
    with pytest.raises(ValueError, match="batch_size"):
        clf.certify(x, n=10, batch_size=0)
