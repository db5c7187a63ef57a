"""ART's own attacks run unchanged against STNClassifier and return valid adversarial arrays."""

from __future__ import annotations

import numpy as np
import pytest
from art.attacks.evasion import (
    BoundaryAttack,
    CarliniL2Method,
    CarliniLInfMethod,
    ProjectedGradientDescent,
    ProjectedGradientDescentNumpy,
)
from art.attacks.evasion.projected_gradient_descent.projected_gradient_descent_pytorch import (
    ProjectedGradientDescentPyTorch,
)


@pytest.fixture
def batch(digits):
    x, y = digits
    return x[:6], y[:6]


def _valid(x_adv: np.ndarray, x: np.ndarray) -> None:
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert np.all(np.isfinite(x_adv))
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


@pytest.mark.parametrize("norm", [2, np.inf])
def test_pgd_pytorch_implementation(digits_classifier, batch, norm):
    x, y = batch
    clf = digits_classifier(sample_size=8)
    eps = 1.0 if norm == 2 else 0.1
    attack = ProjectedGradientDescent(clf, norm=norm, eps=eps, eps_step=eps / 4, max_iter=5, verbose=False)
    assert isinstance(attack._attack, ProjectedGradientDescentPyTorch)  # ART picks its PyTorch implementation
    x_adv = attack.generate(x, y=y)
    _valid(x_adv, x)
    delta = (x_adv - x).reshape(len(x), -1)
    size = np.linalg.norm(delta, axis=1) if norm == 2 else np.abs(delta).max(axis=1)
    assert np.all(size <= eps + 1e-5) and np.any(size > 0)


@pytest.mark.parametrize("norm", [2, np.inf])
def test_pgd_numpy_implementation_lowers_smoothed_accuracy(digits_classifier, digits, norm):
    x, y = digits[0][:60], digits[1][:60]
    clf = digits_classifier(sample_size=16)
    eps = 1.5 if norm == 2 else 0.2
    attack = ProjectedGradientDescentNumpy(clf, norm=norm, eps=eps, eps_step=eps / 5, max_iter=10, verbose=False)
    x_adv = attack.generate(x, y=y)
    _valid(x_adv, x)
    clean = np.mean(clf.predict(x, is_abstain=False).argmax(1) == y)
    adv = np.mean(clf.predict(x_adv, is_abstain=False).argmax(1) == y)
    assert adv < clean  # noise-averaged gradients are informative


def test_carlini_l2(digits_classifier, batch):
    x, y = batch
    attack = CarliniL2Method(digits_classifier(sample_size=8), max_iter=3, binary_search_steps=2, verbose=False)
    _valid(attack.generate(x), x)


def test_carlini_linf(digits_classifier, batch):
    x, y = batch
    attack = CarliniLInfMethod(digits_classifier(sample_size=8), max_iter=3, verbose=False)
    _valid(attack.generate(x), x)


def test_boundary_attack(digits_classifier, batch):
    x, y = batch
    clf = digits_classifier(sample_size=8)
    attack = BoundaryAttack(clf, targeted=False, max_iter=3, num_trial=3, sample_size=3, init_size=20, verbose=False)
    _valid(attack.generate(x[:2]), x[:2])
