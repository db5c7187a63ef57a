"""Reproducers of ART 1.20.1's SmoothAdv defects named on docs/certified-training.md ("ART's estimators, as they
are"). Each asserts ART's current output, so it fails when ART changes that behaviour, and the page must then change
with it. Deterministic (seeded), so no false failures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("art")
from art.estimators.certification.randomized_smoothing import PyTorchSmoothAdv  # noqa: E402


def smoothadv(scale: float = 0.5, **kwargs) -> PyTorchSmoothAdv:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    return PyTorchSmoothAdv(
        model, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        scale=scale, device_type="cpu", clip_values=(0.0, 1.0), **kwargs,
    )  # fmt: skip


def training_inputs(est: PyTorchSmoothAdv, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The inputs SmoothAdv's fit feeds the model in training mode (one epoch, one batch)."""
    seen = []
    hook = est.model.register_forward_hook(lambda m, i, o: seen.append(i[0].detach().clone()) if m.training else None)
    try:
        est.fit(x, y, nb_epochs=1, batch_size=len(x))
    finally:
        hook.remove()
    return torch.cat(seen).numpy()


def test_warmup_sets_the_norm_of_the_pgd_wrapper_while_the_attack_that_runs_stays_linf_with_step_0_1():
    est = smoothadv(epsilon=1.0, num_steps=1, warmup=10)
    x, y = np.full((8, 1, 8, 8), 0.5, dtype=np.float32), np.arange(8) % 10
    est.fit(x, y, nb_epochs=1, batch_size=8)
    assert est.attack.norm == pytest.approx(0.1)  # warm-up epoch 1 of 10 wrote epsilon / 10 into the wrapper's norm
    inner = est.attack._attack
    assert inner.norm == np.inf and inner.eps == 1.0 and inner.eps_step == pytest.approx(0.1)
    step = est.attack.generate(x) - x  # mid-range inputs: no clipping
    assert np.allclose(np.abs(step), 0.1, atol=1e-6)  # an L-infinity sign step of 0.1 on every pixel


def test_the_perturbation_is_the_last_steps_increment_not_the_sum_of_the_steps(monkeypatch):
    est = smoothadv(scale=1e-6, epsilon=1.0, num_steps=2, warmup=1)
    monkeypatch.setattr(est.attack, "generate", lambda x, **kwargs: x + 0.05)  # each step adds 0.05
    x, y = np.full((4, 1, 8, 8), 0.5, dtype=np.float32), np.arange(4)
    fed = training_inputs(est, x, y)
    assert np.allclose(fed, 0.55, atol=1e-4)  # the attack's output after two steps is 0.6


def test_one_step_pulls_the_training_noise_towards_the_input_range_and_two_steps_do_not():
    """The attack clips into [0, 1], then projects into its epsilon-ball around its own input x + noise, so with one
    step the training input is the noisy input pulled towards [0, 1] by up to epsilon (measured on 256 digits at sigma
    0.5: 1.4% of pixels below 0, against 32.5% under the certification noise). With two steps the training input is
    x + noise + (the last step's increment): the noise survives (32.1%)."""
    from art_stn.data import load_digits

    (x, y), _ = load_digits()
    x, y = x[:256], y[:256]
    below_certification = float((x + np.random.default_rng(0).normal(0, 0.5, x.shape) < 0).mean())
    one = training_inputs(smoothadv(scale=0.5, epsilon=1.0, num_steps=1, warmup=1), x, y)
    assert float((one < 0).mean()) < 0.05 < 0.3 < below_certification
    two = training_inputs(smoothadv(scale=0.5, epsilon=1.0, num_steps=2, warmup=1), x, y)
    assert abs(float((two < 0).mean()) - below_certification) < 0.03


def test_trades_reads_a_sequential_models_first_layer_as_its_logits():
    """ART 1.20.1's TRADES trainer computes its training accuracy from `model_outputs_pert[0]`: for an nn.Sequential
    that is the first layer's output, and LeNet's (a convolution) does not fit the labels. art-stn passes such a model
    as `art_stn.models.OneOutput` (the same layers, one output)."""
    from art.attacks.evasion import ProjectedGradientDescent
    from art.defences.trainer import AdversarialTrainerTRADESPyTorch
    from art.estimators.classification import PyTorchClassifier

    from art_stn.models import OneOutput, lenet

    x = np.random.default_rng(0).uniform(0, 1, (8, 1, 28, 28)).astype(np.float32)
    y = np.arange(8) % 10

    def trades(model: torch.nn.Module) -> AdversarialTrainerTRADESPyTorch:
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        plain = PyTorchClassifier(model, torch.nn.CrossEntropyLoss(), (1, 28, 28), 10, optimizer=opt,
                                  clip_values=(0.0, 1.0), device_type="cpu")  # fmt: skip
        return AdversarialTrainerTRADESPyTorch(plain, ProjectedGradientDescent(plain, max_iter=1, verbose=False), 1.0)

    torch.manual_seed(0)
    with pytest.raises(RuntimeError, match="must match the size"):
        trades(lenet()).fit(x, y, nb_epochs=1, batch_size=8)
    net = lenet()
    wrapped = OneOutput(net)
    assert list(wrapped.state_dict()) == list(net.state_dict())
    trades(wrapped).fit(x, y, nb_epochs=1, batch_size=8)  # runs
