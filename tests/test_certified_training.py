"""Certified training: the consistency trainer's loss and gradients, the three losses over one loop, exact resume,
ART's MACER / SmoothAdv / SmoothMix through their own `fit` with art-stn checkpoints, LeNet and the optimizer options,
and `art-stn train --method` for all six methods on the real MNIST."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from art_stn import STNClassifier, STNTrainer
from art_stn.art_trainer import ARTEstimatorTrainer
from art_stn.data import load_digits
from art_stn.losses import consistency_loss
from art_stn.models import build_model, build_optimizer
from art_stn.trainer import ConsistencyTrainer, GaussianAugmentationTrainer, NoiseTrainer, build_scheduler


def make_classifier(seed: int = 0, sigma: float = 0.5, noise: str = "gaussian", dropout: bool = False):
    torch.manual_seed(seed)
    layers = [torch.nn.Flatten(), *([torch.nn.Dropout(0.3)] if dropout else []), torch.nn.Linear(64, 10)]
    model = torch.nn.Sequential(*layers)
    return STNClassifier(
        model,
        torch.nn.CrossEntropyLoss(),
        (1, 8, 8),
        10,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        clip_values=(0.0, 1.0),
        noise=noise,
        scale=sigma,
        device_type="cpu",
    )


def hand_consistency(logits: list[torch.Tensor], y: torch.Tensor, lbd: float, eta: float, detach: bool = False):
    """The loss of Jeong & Shin written out term by term, one noisy copy at a time."""
    m = len(logits)
    probs = [torch.softmax(z, dim=1) for z in logits]
    p_hat = sum(probs) / m
    if detach:
        p_hat = p_hat.detach()
    ce = sum(torch.nn.functional.cross_entropy(z, y) for z in logits) / m
    kl = sum((p_hat * (torch.log(p_hat) - torch.log(p))).sum(dim=1) for p in probs) / m
    entropy = -(p_hat * torch.log(p_hat)).sum(dim=1)
    return ce + lbd * kl.mean() + eta * entropy.mean()


def test_consistency_loss_on_a_fixed_batch_and_noise_equals_the_hand_computation():
    clf = make_classifier()
    trainer = ConsistencyTrainer(clf, lbd=5.0, m=3, eta=0.5)
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 3, 3, 9])
    loss = trainer.loss(x, y, torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    noise = torch.empty(12, 1, 8, 8).normal_(0.0, 0.5, generator=gen)  # copy 1, copy 2, copy 3 of the batch
    logits = [clf.model(x + noise[4 * i : 4 * (i + 1)]) for i in range(3)]
    assert loss.item() == pytest.approx(hand_consistency(logits, y, 5.0, 0.5).item(), rel=1e-5)
    assert loss.requires_grad


def test_consistency_with_one_copy_and_no_regulariser_is_gaussian_augmentation():
    for noise in ("gaussian", "laplace"):
        clf = make_classifier(noise=noise)
        x, y = torch.rand(6, 1, 8, 8), torch.arange(6)
        plain = GaussianAugmentationTrainer(clf).loss(x, y, torch.Generator().manual_seed(3))
        consistency = ConsistencyTrainer(clf, lbd=0.0, m=1, eta=0.0).loss(x, y, torch.Generator().manual_seed(3))
        stn_zero = STNTrainer(clf, gamma=0.0).loss(x, y, torch.Generator().manual_seed(3))
        assert consistency.item() == plain.item() == stn_zero.item()


def test_consistency_gradient_flows_through_p_hat():
    torch.manual_seed(0)
    logits = torch.randn(2 * 5, 10, requires_grad=True)
    y = torch.tensor([1, 2, 3, 4, 5])
    (grad,) = torch.autograd.grad(consistency_loss(logits, y, m=2, lbd=5.0, eta=0.5), logits)
    chunks = [logits[:5], logits[5:]]
    (through,) = torch.autograd.grad(hand_consistency(chunks, y, 5.0, 0.5), logits)
    (detached,) = torch.autograd.grad(hand_consistency(chunks, y, 5.0, 0.5, detach=True), logits)
    torch.testing.assert_close(grad, through, rtol=1e-5, atol=1e-6)
    assert (grad - detached).abs().max() > 1e-3  # a detached p_hat gives another gradient: this test would fail
    # The entropy term reaches the logits only through p_hat: with lbd = 0 its gradient is not the CE gradient.
    (ent,) = torch.autograd.grad(consistency_loss(logits, y, m=2, lbd=0.0, eta=1.0), logits)
    (ce,) = torch.autograd.grad(consistency_loss(logits, y, m=2, lbd=0.0, eta=0.0), logits)
    assert (ent - ce).abs().max() > 1e-3


def test_three_methods_are_three_losses_over_one_loop(monkeypatch):
    (x, y), _ = load_digits()
    seen = []
    original = NoiseTrainer._train

    def spy(self, *args, **kwargs):
        seen.append(type(self).__name__)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(NoiseTrainer, "_train", spy)
    for trainer in (
        GaussianAugmentationTrainer(make_classifier()),
        STNTrainer(make_classifier(), gamma=1.0),
        ConsistencyTrainer(make_classifier(), lbd=5.0),
    ):
        history = trainer.fit(x[:128], y[:128], nb_epochs=1, batch_size=64, verbose=False)
        assert len(history) == 1 and np.isfinite(history[0]["loss"])
    assert seen == ["GaussianAugmentationTrainer", "STNTrainer", "ConsistencyTrainer"]


def test_killed_and_resumed_consistency_run_equals_an_unbroken_one(tmp_path, monkeypatch):
    (x, y), _ = load_digits()
    x, y = x[:320], y[:320]  # 10 batches of 32 per epoch
    ref = ConsistencyTrainer(unbroken := make_classifier(dropout=True), lbd=5.0, seed=2)
    ref_history = ref.fit(x, y, nb_epochs=2, batch_size=32, verbose=False)

    ckpt, calls = tmp_path / "c.pt", {"n": 0}
    original = ConsistencyTrainer.loss

    def dies(self, xb, yb, generator):
        calls["n"] += 1
        if calls["n"] == 15:  # batch 5 of epoch 2, after the checkpoint at batch 4
            raise KeyboardInterrupt
        return original(self, xb, yb, generator)

    monkeypatch.setattr(ConsistencyTrainer, "loss", dies)
    with pytest.raises(KeyboardInterrupt):
        ConsistencyTrainer(make_classifier(dropout=True), lbd=5.0, seed=2).fit(
            x, y, nb_epochs=2, batch_size=32, verbose=False, checkpoint=ckpt, checkpoint_every=2
        )
    monkeypatch.setattr(ConsistencyTrainer, "loss", original)
    saved = torch.load(ckpt, weights_only=True)
    assert saved["method"] == "consistency" and saved["lbd"] == 5.0 and saved["partial"]["step"] == 4
    torch.manual_seed(123)
    resumed = make_classifier(seed=9, dropout=True)
    history = ConsistencyTrainer(resumed, lbd=5.0, seed=2).fit(
        x, y, nb_epochs=2, batch_size=32, verbose=False, checkpoint=ckpt, resume_from=ckpt, checkpoint_every=2
    )
    for a, b in zip(unbroken.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [h["loss"] for h in history] == pytest.approx([h["loss"] for h in ref_history], rel=1e-6)
    # Another method or other settings cannot continue it.
    with pytest.raises(ValueError, match="lbd"):
        ConsistencyTrainer(make_classifier(dropout=True), lbd=10.0, seed=2).fit(x, y, nb_epochs=3, resume_from=ckpt)
    with pytest.raises(ValueError, match="method"):
        STNTrainer(make_classifier(dropout=True), gamma=1.0, seed=2).fit(x, y, nb_epochs=3, resume_from=ckpt)


def test_trainer_arguments_are_checked():
    clf = make_classifier()
    for kwargs, error, match in [
        ({"lbd": -1.0}, ValueError, "lbd"),
        ({"lbd": "5"}, TypeError, "lbd"),
        ({"lbd": 5.0, "m": 0}, ValueError, "m"),
        ({"lbd": 5.0, "eta": float("nan")}, ValueError, "eta"),
    ]:
        with pytest.raises(error, match=match):
            ConsistencyTrainer(clf, **kwargs)
    with pytest.raises(ValueError, match="m \\* B"):
        consistency_loss(torch.zeros(5, 10), torch.zeros(2, dtype=torch.int64), m=2, lbd=1.0)
    with pytest.raises(TypeError, match="STNClassifier"):
        GaussianAugmentationTrainer(object())


def test_lenet_and_the_literature_optimizer_and_schedule():
    model = build_model("lenet")
    assert sum(p.numel() for p in model.parameters()) == 431_080
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    sgd = build_optimizer(model, "lenet", "sgd", lr=0.01, momentum=0.9, weight_decay=1e-4)
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["momentum"] == 0.9 and sgd.defaults["weight_decay"] == 1e-4
    step = build_scheduler(sgd, "step", epochs=90, step_size=30, decay=0.1)
    rates = []
    for _ in range(90):
        rates.append(sgd.param_groups[0]["lr"])
        sgd.step()
        step.step()
    assert rates[0] == rates[29] == 0.01 and rates[30] == pytest.approx(1e-3) and rates[89] == pytest.approx(1e-4)
    assert build_scheduler(sgd, "constant", epochs=3) is None
    adam = build_optimizer(build_model("cifar10-cnn"), "cifar10-cnn", "adam", lr=1e-3, weight_decay=1e-5)
    assert [g["weight_decay"] for g in adam.param_groups] == pytest.approx([2e-4 + 1e-5, 1e-5])
    with pytest.raises(ValueError, match="optimizer"):
        build_optimizer(model, "lenet", "rmsprop")
    with pytest.raises(ValueError, match="momentum"):
        build_optimizer(model, "lenet", "sgd", momentum=1.0)
    with pytest.raises(ValueError, match="schedule"):
        build_scheduler(sgd, "linear", epochs=3)
    with pytest.raises(ValueError, match="decay"):
        build_scheduler(sgd, "step", epochs=3, decay=2.0)


def test_art_estimator_trainer_resumes_like_an_unbroken_run(tmp_path):
    from art.estimators.certification.randomized_smoothing import PyTorchMACER, PyTorchSmoothMix

    (x, y), _ = load_digits()
    x, y = x[:128], y[:128]

    def make(cls=PyTorchMACER, **kwargs):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        est = cls(
            model,
            torch.nn.CrossEntropyLoss(),
            (1, 8, 8),
            10,
            optimizer=opt,
            scale=0.5,
            device_type="cpu",
            clip_values=(0.0, 1.0),
            **kwargs,
        )
        return ARTEstimatorTrainer(STNClassifier.from_estimator(est, alpha=0.001), est, seed=1), est

    unbroken, est_a = make(gaussian_samples=4)
    unbroken.fit(x, y, nb_epochs=2, batch_size=64, verbose=False)
    first, _ = make(gaussian_samples=4)
    first.fit(x, y, nb_epochs=1, batch_size=64, verbose=False, checkpoint=tmp_path / "m.pt")
    resumed, est_b = make(gaussian_samples=4)
    history = resumed.fit(x, y, nb_epochs=2, batch_size=64, verbose=False, resume_from=tmp_path / "m.pt")
    assert [h["epoch"] for h in history] == [1, 2]
    for a, b in zip(est_a.model.parameters(), est_b.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    saved = torch.load(tmp_path / "m.pt", weights_only=True)
    assert saved["method"] == "macer" and saved["gaussian_samples"] == 4
    restored = STNClassifier.load(
        tmp_path / "m.pt", model=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    )
    assert restored.scale == 0.5 and restored.alpha == 0.001
    with pytest.raises(ValueError, match="gaussian_samples"):
        make(gaussian_samples=8)[0].fit(x, y, nb_epochs=2, resume_from=tmp_path / "m.pt", verbose=False)

    # SmoothMix's warm-up follows the run's epochs although ART's fit restarts its count at every call.
    mix, est = make(PyTorchSmoothMix, num_noise_vec=2, num_steps=1, warmup=4, alpha=0.5)
    seen = []
    original_fit = type(est).fit

    def spy(self, *args, **kwargs):
        seen.append(min(1.0, 1 / self.warmup))  # ART's warm-up factor in a one-epoch call
        return original_fit(self, *args, **kwargs)

    type(est).fit = spy
    try:
        mix.fit(x, y, nb_epochs=3, batch_size=64, verbose=False)
    finally:
        type(est).fit = original_fit
    assert seen == pytest.approx([0.25, 0.5, 0.75]) and est.warmup == 4
    with pytest.raises(TypeError, match="estimator"):
        ARTEstimatorTrainer(make_classifier(), object())
    with pytest.raises(ValueError, match="share"):
        ARTEstimatorTrainer(make_classifier(), est)


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """`art-stn ARGS` in this process: (exit status, stdout, stderr)."""
    from art_stn.cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("method", ["gaussian", "stn", "consistency", "macer", "smoothadv", "smoothmix"])
def test_train_command_every_method_on_real_mnist_then_certify(tmp_path, method, capsys):
    from art_stn.data import mnist_cache_path

    if not mnist_cache_path().is_file():
        pytest.fail(f"the real MNIST cache {mnist_cache_path()} is missing: run `art-stn data mnist` (README set-up).")
    ckpt = tmp_path / f"{method}.pt"
    extra = {
        "consistency": ["--lbd", "5"],
        "smoothmix": ["--art-args", "num_steps=2"],
        "macer": ["--art-args", "gaussian_samples=4"],
    }
    code, out, err = run_cli(
        capsys, "train", "--dataset", "mnist", "--model", "lenet", "--method", method, "--scale", "0.5",
        "--epochs", "1", "--max-train", "300", "--batch-size", "100", "--optimizer", "sgd", "--lr", "0.01",
        "--weight-decay", "1e-4", "--lr-schedule", "step", "--out", ckpt, "--quiet", *extra.get(method, []),
    )  # fmt: skip
    assert code == 0, err[-2000:]
    assert out.startswith(f"epoch 1 ({method}):")
    saved = torch.load(ckpt, weights_only=True)
    assert saved["method"] == method
    assert saved["metadata"] == {"model": "lenet", "dataset": "mnist", "train_images": 270, "val_images": 30}
    assert saved["history"][0]["cpu_seconds"] > 0
    tsv = tmp_path / f"{method}.tsv"
    code, out, err = run_cli(
        capsys, "certify", "--checkpoint", ckpt, "--dataset", "mnist", "--n", "20", "--n0", "5", "--max", "2",
        "--out", tsv, "--quiet",
    )  # fmt: skip
    assert code == 0, err[-2000:]
    assert len([line for line in tsv.read_text().splitlines() if line[:1].isdigit()]) == 2


def test_train_command_refuses_bad_method_arguments(tmp_path, capsys, monkeypatch):
    base = ["train", "--dataset", "digits", "--epochs", "1", "--out", tmp_path / "x.pt"]
    for extra, message in [
        (["--method", "consistency"], "--lbd"),
        (["--method", "macer", "--art-args", "beta"], "key=value"),
        (["--method", "macer", "--art-args", "epsilon=1"], "key=value"),
        (["--method", "macer", "--art-args", "beta=x"], "beta"),
        (["--method", "macer", "--noise", "laplace"], "Gaussian"),
        (["--method", "gaussian", "--gamma", "1"], "--gamma applies to --method stn"),
        (["--method", "consistency", "--lbd", "5", "--detach-target"], "--detach-target applies"),
        (["--method", "stn", "--lbd", "5"], "--lbd applies to --method consistency"),
        (["--method", "macer", "--eta", "1"], "--eta applies"),
        (["--method", "consistency", "--lbd", "5", "--art-args", "beta=1"], "--art-args applies"),
    ]:
        code, _, err = run_cli(capsys, *base, *extra)
        assert code == 2 and message in err, (extra, err)
        assert not (tmp_path / "x.pt").exists()
    monkeypatch.setenv("WORLD_SIZE", "2")  # under torchrun
    code, _, err = run_cli(capsys, *base, "--method", "smoothmix")
    assert code == 2 and "no DDP" in err and not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("method", ["standard", "trades", "madry"])
def test_deterministic_models_train_attack_and_are_refused_by_certify(tmp_path, method, capsys):
    """Standard training, TRADES and Madry through ART's own fit on 300 real MNIST images: the checkpoint records a
    deterministic model, `art-stn attack` evaluates it as the plain classifier, `art-stn certify` refuses it in one
    line."""
    from art_stn.data import mnist_cache_path

    if not mnist_cache_path().is_file():
        pytest.fail(f"the real MNIST cache {mnist_cache_path()} is missing: run `art-stn data mnist` (README set-up).")
    ckpt = tmp_path / f"{method}.pt"
    extra = [] if method == "standard" else ["--art-args", "max_iter=3,eps_step=0.1"]
    code, out, err = run_cli(
        capsys, "train", "--dataset", "mnist", "--model", "lenet", "--method", method, "--epochs", "1",
        "--max-train", "300", "--batch-size", "100", "--optimizer", "sgd", "--lr", "0.01", "--out", ckpt, "--quiet",
        *extra,
    )  # fmt: skip
    assert code == 0, err[-2000:]
    saved = torch.load(ckpt, weights_only=True)
    assert saved["deterministic"] is True and saved["method"] == method and saved["smoothing"]["noise"] == "none"
    if method != "standard":
        assert saved["eps"] == 0.3 and saved["max_iter"] == 3 and saved["norm"] == "inf"
    assert saved.get("beta") == (6.0 if method == "trades" else None)
    tsv = tmp_path / f"{method}-pgd.tsv"
    code, out, err = run_cli(
        capsys, "attack", "--checkpoint", ckpt, "--attack", "pgd-linf", "--eps", "0,0.1", "--max", "20",
        "--max-iter", "3", "--out", tsv, "--quiet",
    )  # fmt: skip
    assert code == 0, err[-2000:]
    lines = [line for line in tsv.read_text().splitlines() if line[:1].isdigit()]
    assert len(lines) == 2 * 20 and '"noise": "none"' in tsv.read_text().splitlines()[0]
    code, out, err = run_cli(
        capsys, "certify", "--checkpoint", ckpt, "--n", "20", "--n0", "5", "--max", "2", "--out", tmp_path / "c.tsv"
    )  # fmt: skip
    assert code == 2 and "deterministic model" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    for bad in (["--scale", "0.5"], ["--noise", "laplace"]):
        code, _, err = run_cli(
            capsys, "train", "--dataset", "digits", "--method", method, "--out", tmp_path / "x.pt", "--quiet", *bad
        )  # fmt: skip
        assert code == 2 and "deterministic" in err
