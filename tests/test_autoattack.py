"""AutoAttack in EoT form against the smoothed classifier: the DLR loss, the noise-averaged view, the attack."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from art_stn.attacks import DifferenceLogitsRatioLoss, EoTLogits, eot_autoattack


def test_dlr_loss_matches_its_definition_and_is_shift_and_scale_invariant():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 10))
    labels = rng.integers(0, 10, 50)
    expected = []
    for z, y in zip(logits, labels, strict=True):
        s = np.sort(z)[::-1]
        other = np.max(np.delete(z, y))
        expected.append(-(z[y] - other) / (s[0] - s[2] + 1e-12))
    loss = DifferenceLogitsRatioLoss(reduction="none")
    got = loss(torch.tensor(logits), torch.tensor(labels)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    shifted = loss(torch.tensor(3.0 * logits + 7.0), torch.nn.functional.one_hot(torch.tensor(labels), 10)).numpy()
    np.testing.assert_allclose(shifted, got, rtol=1e-6)
    assert float(DifferenceLogitsRatioLoss()(torch.tensor(logits), torch.tensor(labels))) == pytest.approx(np.mean(got))
    with pytest.raises(ValueError, match="reduction"):
        DifferenceLogitsRatioLoss(reduction="max")
    with pytest.raises(ValueError, match="3 classes"):
        loss(torch.zeros(2, 2), torch.zeros(2))


def test_eot_view_averages_logits_and_losses_over_the_noise(digits_classifier, digits):
    """
    The view's averages over 64 draws agree with averages over 4096 independent draws to within 6 standard errors of
    the 64-draw mean (per value; normal approximation, false failure about 2e-9 each, < 1e-7 for the 88 values).
    """
    clf = digits_classifier(eot_samples=64)
    view = EoTLogits.from_estimator(clf)
    assert view.model is clf.model and view.scale == clf.scale and view._eot() == 64
    x, y = digits[0][:8], digits[1][:8]
    with torch.no_grad():
        noisy = torch.from_numpy(x).repeat_interleave(4096, 0)
        noisy = noisy + clf.scale * torch.randn(noisy.shape, generator=torch.Generator().manual_seed(5))
        logits = clf.model(noisy)
        labels = torch.from_numpy(y).repeat_interleave(4096)
        losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    logits, losses = logits.view(8, 4096, 10).numpy(), losses.view(8, 4096).numpy()
    assert np.all(np.abs(view.predict(x) - logits.mean(1)) <= 6 * logits.std(1) / 8 + 1e-6)
    assert np.all(np.abs(view.compute_loss(x, y) - losses.mean(1)) <= 6 * losses.std(1) / 8 + 1e-6)
    assert view.compute_loss(x, y, reduction="mean").shape == ()
    exact = EoTLogits.from_estimator(clf, scale=1e-7, eot_samples=2)  # no noise: the base model itself
    np.testing.assert_allclose(exact.predict(x), clf.model(torch.from_numpy(x)).detach().numpy(), atol=1e-4)
    assert view.get_params()["eot_samples"] == 64 and clf.predict(x).min() >= 0  # the smoothed predict is unchanged


def test_eot_autoattack_lowers_smoothed_accuracy_within_eps(digits_classifier, digits):
    clf = digits_classifier(sample_size=64, eot_samples=8)
    x, y = digits[0][:30], digits[1][:30]
    attack = eot_autoattack(clf, norm=2, eps=1.0, max_iter=5)
    assert [type(a.estimator).__name__ for a in attack.attacks] == ["EoTLogits", "EoTLogits"]
    assert all(a.estimator.model is clf.model for a in attack.attacks)
    x_adv = attack.generate(x, y=y)
    assert x_adv.shape == x.shape and np.all(np.isfinite(x_adv)) and x_adv.min() >= 0 and x_adv.max() <= 1
    assert np.all(np.linalg.norm((x_adv - x).reshape(len(x), -1), axis=1) <= 1.0 + 1e-5)
    clean = clf.predict(x)
    adv = clf.predict(x_adv)
    accuracy = np.mean((clean.argmax(1) == y) & (clean.sum(1) > 0))
    robust = np.mean((adv.argmax(1) == y) & (adv.sum(1) > 0))
    assert robust < accuracy - 0.2  # an L2 budget of 1.0 breaks many 8x8 digits of this linear model


def test_eot_autoattack_checks_its_arguments(digits_classifier):
    clf = digits_classifier()
    with pytest.raises(TypeError, match="classifier"):
        eot_autoattack(clf.model)
    with pytest.raises(ValueError, match="eps"):
        eot_autoattack(clf, eps=0)
    with pytest.raises(ValueError, match="max_iter"):
        eot_autoattack(clf, max_iter=0)
