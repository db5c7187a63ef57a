"""
ART's evasion attacks against STNClassifier, as the table "Which ART attacks run against STNClassifier" in
docs/guide.md says: every row of the table is a case here and every case a row; "yes" and "via ..." rows run on a few
digits with small budgets and return valid adversarial inputs, "no" rows fail the way their note says.
"""

from __future__ import annotations

import re
from pathlib import Path

import art.attacks.evasion as E
import numpy as np
import pytest
import torch
from art.estimators.classification import PyTorchClassifier

from art_stn.attacks import EoTLogits, eot_autoattack

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide.md"
HEADING = "## Which ART attacks run against STNClassifier"


def table() -> dict[str, str]:
    """`attack -> the first word of its "Runs" cell`, from the guide's table."""
    section = GUIDE.read_text().split(HEADING, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows[cells[0].replace("`", "")] = cells[1].split()[0]
    return rows


def eot(clf):
    return EoTLogits.from_estimator(clf, eot_samples=4)


# name -> (status, attack factory on the classifier, generate's keyword arguments from (x, y), L2 / Linf bound)
L2, LINF = 2, np.inf
YES = {
    "FastGradientMethod": (lambda c: E.FastGradientMethod(c, norm=2, eps=1.0), {}, (L2, 1.0)),
    "BasicIterativeMethod": (
        lambda c: E.BasicIterativeMethod(c, eps=0.2, eps_step=0.05, max_iter=3, verbose=False),
        {},
        (LINF, 0.2),
    ),
    "ProjectedGradientDescent": (
        lambda c: E.ProjectedGradientDescent(c, norm=2, eps=1.0, eps_step=0.25, max_iter=3, verbose=False),
        {"y": True},
        (L2, 1.0),
    ),
    "MomentumIterativeMethod": (
        lambda c: E.MomentumIterativeMethod(c, norm=2, eps=1.0, eps_step=0.25, max_iter=3, verbose=False),
        {},
        (L2, 1.0),
    ),
    "CarliniL2Method": (lambda c: E.CarliniL2Method(c, max_iter=2, binary_search_steps=1, verbose=False), {}, None),
    "CarliniL0Method": (lambda c: E.CarliniL0Method(c, max_iter=2, binary_search_steps=1, verbose=False), {}, None),
    "DeepFool": (lambda c: E.DeepFool(c, max_iter=3, nb_grads=3, verbose=False), {}, None),
    "NewtonFool": (lambda c: E.NewtonFool(c, max_iter=3, verbose=False), {}, None),
    "ElasticNet": (lambda c: E.ElasticNet(c, max_iter=2, binary_search_steps=1, verbose=False), {}, None),
    "SaliencyMapMethod": (lambda c: E.SaliencyMapMethod(c, theta=0.5, gamma=0.1, verbose=False), {}, None),
    "UniversalPerturbation": (
        lambda c: E.UniversalPerturbation(c, attacker="fgsm", max_iter=1, eps=1.0, norm=2, verbose=False),
        {},
        None,
    ),
    "TargetedUniversalPerturbation": (
        lambda c: E.TargetedUniversalPerturbation(c, attacker="fgsm", max_iter=1, eps=1.0, norm=2),
        {"y": "target"},
        None,
    ),
    "Wasserstein": (
        lambda c: E.Wasserstein(c, max_iter=2, regularization=100, kernel_size=3, eps=0.3, eps_step=0.1, verbose=False),
        {},
        None,
    ),
    "ShadowAttack": (
        lambda c: E.ShadowAttack(c, nb_steps=2, batch_size=8, verbose=False),
        {"y": "one-hot", "one": True},
        None,
    ),
    "FeatureAdversariesPyTorch": (
        lambda c: E.FeatureAdversariesPyTorch(c, delta=0.2, layer=0, max_iter=3, step_size=0.05, verbose=False),
        {"y": "guide"},
        (LINF, 0.2),
    ),
    "SpatialTransformation": (
        lambda c: E.SpatialTransformation(
            c, max_translation=10, num_translations=2, max_rotation=10, num_rotations=2, verbose=False
        ),
        {},
        None,
    ),
    "FrameSaliencyAttack": (
        lambda c: E.FrameSaliencyAttack(
            c, E.FastGradientMethod(c, eps=0.2), method="iterative_saliency", frame_index=2
        ),
        {},
        None,
    ),
    "BoundaryAttack": (
        lambda c: E.BoundaryAttack(
            c, targeted=False, max_iter=2, num_trial=3, sample_size=3, init_size=10, verbose=False
        ),
        {},
        None,
    ),
    "HopSkipJump": (
        lambda c: E.HopSkipJump(c, max_iter=1, max_eval=10, init_eval=5, init_size=10, verbose=False),
        {},
        None,
    ),
    "SquareAttack": (
        lambda c: E.SquareAttack(c, norm=np.inf, eps=0.2, max_iter=5, nb_restarts=1, verbose=False),
        {},
        (LINF, 0.2),
    ),
    "SimBA": (lambda c: E.SimBA(c, attack="px", max_iter=10, epsilon=0.2, verbose=False), {"one": True}, None),
    "ZooAttack": (
        lambda c: E.ZooAttack(
            c, max_iter=2, binary_search_steps=1, nb_parallel=4, use_resize=False, use_importance=False, verbose=False
        ),
        {},
        None,
    ),
    "PixelAttack": (lambda c: E.PixelAttack(c, th=2, es=1, max_iter=1, verbose=False), {"one": True}, None),
}
SLOW = {
    "CarliniLInfMethod": (lambda c: E.CarliniLInfMethod(c, max_iter=1, verbose=False), {"one": True}, None),
    "SignOPTAttack": (
        lambda c: E.SignOPTAttack(c, targeted=False, max_iter=1, query_limit=100, num_trial=5, k=5, verbose=False),
        {"one": True},
        None,
    ),
    "ThresholdAttack": (lambda c: E.ThresholdAttack(c, th=None, es=1, max_iter=1, verbose=False), {"one": True}, None),
}
VIA = {
    "AutoProjectedGradientDescent": (
        lambda c: E.AutoProjectedGradientDescent(
            eot(c), norm=2, eps=1.0, eps_step=2.0, max_iter=3, nb_random_init=1, verbose=False
        ),
        {"y": True},
        (L2, 1.0),
    ),
    "AutoConjugateGradient": (
        lambda c: E.AutoConjugateGradient(
            eot(c), norm=2, eps=1.0, eps_step=2.0, max_iter=3, nb_random_init=1, verbose=False
        ),
        {"y": True},
        (L2, 1.0),
    ),
    "RescalingAutoConjugateGradient": (
        lambda c: E.RescalingAutoConjugateGradient(
            eot(c), norm=2, eps=1.0, eps_step=2.0, max_iter=3, nb_random_init=1, verbose=False
        ),
        {"y": True},
        (L2, 1.0),
    ),
    "AutoAttack": (lambda c: eot_autoattack(c, norm=2, eps=1.0, max_iter=3, eot_samples=4), {"y": True}, (L2, 1.0)),
}
NO = ("AutoAttack (default attack list)", "VirtualAdversarialMethod", "GeoDA")
CASES = {**YES, **SLOW, **VIA}


def test_table_and_cases_agree():
    rows = table()
    assert set(rows) == set(CASES) | set(NO)
    assert {name for name, status in rows.items() if status == "yes"} == set(YES) | set(SLOW)
    assert {name for name, status in rows.items() if status == "via"} == set(VIA)
    assert {name for name, status in rows.items() if status == "no"} == set(NO)


def run(name, digits_classifier, digits):
    make, gen, bound = CASES[name]
    clf = digits_classifier(sample_size=32)
    x, y = digits[0][:3], digits[1][:3]
    if gen.get("one"):
        x, y = x[:1], y[:1]
    kwargs = {}
    if gen.get("y") is True:
        kwargs["y"] = y
    elif gen.get("y") == "one-hot":
        kwargs["y"] = np.eye(10)[y]
    elif gen.get("y") == "target":
        kwargs["y"] = np.eye(10)[(y + 1) % 10]
    elif gen.get("y") == "guide":
        kwargs["y"] = digits[0][100 : 100 + len(x)]
    x_adv = make(clf).generate(x, **kwargs)
    assert x_adv.shape == x.shape and np.all(np.isfinite(x_adv))
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    if bound is not None:
        delta = (x_adv - x).reshape(len(x), -1)
        size = np.linalg.norm(delta, axis=1) if bound[0] == L2 else np.abs(delta).max(axis=1)
        assert np.all(size <= bound[1] + 1e-4)


@pytest.mark.parametrize("name", sorted(YES) + sorted(VIA))
def test_attack_runs(name, digits_classifier, digits):
    run(name, digits_classifier, digits)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW))
def test_slow_attack_runs(name, digits_classifier, digits):
    run(name, digits_classifier, digits)


def test_default_autoattack_does_not_attack_the_smoothed_classifier(digits_classifier):
    clf = digits_classifier(sample_size=32)
    try:
        attack = E.AutoAttack(clf, norm=2, eps=1.0)
    except ValueError as err:  # ART's check on `predict(ones)` sees probabilities
        assert "probabilities" in str(err)
    else:  # the probe abstained: the APGD attacks wrap the bare model, with no noise
        apgd = [a for a in attack.attacks if isinstance(a, E.AutoProjectedGradientDescent)]
        assert apgd and all(type(a.estimator) is PyTorchClassifier for a in apgd)
        assert all(a.estimator.model is clf.model for a in apgd)


def test_virtual_adversarial_method_returns_nan_where_predict_abstains(digits_classifier, digits):
    clf = digits_classifier(sample_size=8)  # 8 copies can never pass the abstain test at alpha = 0.001
    assert np.all(clf.predict(digits[0][:3]).sum(1) == 0)
    x_adv = E.VirtualAdversarialMethod(clf, max_iter=1, eps=0.5, verbose=False).generate(digits[0][:3])
    assert np.isnan(x_adv).any()


def test_geoda_fails_in_art_for_every_classifier(digits_classifier, digits):
    clf = digits_classifier()
    plain = PyTorchClassifier(
        clf.model, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, clip_values=(0, 1), device_type="cpu"
    )
    for estimator in (clf, plain):
        with pytest.raises((AttributeError, IndexError), match=re.escape("np.mat") + "|list index out of range"):
            E.GeoDA(estimator, max_iter=400, sub_dim=4, verbose=False).generate(digits[0][:1])
