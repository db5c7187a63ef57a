"""Tests of STNTrainer: learning, one code path for STN and Gaussian augmentation, checkpoints, resume, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from art.data_generators import PyTorchDataGenerator
from torch.utils.data import DataLoader, TensorDataset

from art_stn import STNClassifier, STNTrainer
from art_stn.data import load_digits
from art_stn.demo import train_digits
from art_stn.models import digits_cnn


@pytest.fixture(scope="module")
def split():
    return load_digits()


def make_classifier(seed: int = 0, sigma: float = 0.25) -> STNClassifier:
    torch.manual_seed(seed)
    model = digits_cnn()
    return STNClassifier(
        model,
        torch.nn.CrossEntropyLoss(),
        (1, 8, 8),
        10,
        optimizer=torch.optim.Adam(model.parameters(), lr=2e-3),
        clip_values=(0.0, 1.0),
        scale=sigma,
        sample_size=32,
        seed=seed,
        device_type="cpu",
    )


def params(clf: STNClassifier) -> list[torch.Tensor]:
    return [p.detach().clone() for p in clf.model.parameters()]


def test_stn_and_gaussian_augmentation_learn_through_one_code_path(split, monkeypatch):
    calls = []
    original = STNTrainer.loss

    def spy(self, x, y, generator):
        calls.append(self.gamma)
        return original(self, x, y, generator)

    monkeypatch.setattr(STNTrainer, "loss", spy)
    for gamma in (1.0, 0.0):
        _, history = train_digits(gamma, 0.25, 20, seed=0, verbose=False, data=split)
        assert history[-1]["loss"] < history[0]["loss"]
        assert history[-1]["val_clean_acc"] >= 0.90, (gamma, history[-1])
        assert history[-1]["val_noisy_acc"] >= 0.80, (gamma, history[-1])
    assert set(calls) == {1.0, 0.0}


def test_stability_loss_formula():
    clf = make_classifier()
    trainer = STNTrainer(clf, gamma=0.7)
    x = torch.rand(5, 1, 8, 8)
    y = torch.arange(5)
    gen = torch.Generator().manual_seed(1)
    loss = trainer.loss(x, y, gen)
    gen = torch.Generator().manual_seed(1)
    noisy = x + torch.empty_like(x).normal_(0.0, 0.25, generator=gen)
    clf.model.train()
    clean_logits, noisy_logits = clf.model(x), clf.model(noisy)
    expected = torch.nn.functional.cross_entropy(clean_logits, y) + 0.7 * torch.nn.functional.cross_entropy(
        noisy_logits, torch.softmax(clean_logits, dim=1)
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss.requires_grad


def test_checkpoint_round_trip_restores_identical_predictions(split, tmp_path):
    (x_tr, y_tr), (x_te, _) = split
    clf = make_classifier(seed=3)
    STNTrainer(clf, gamma=1.0).fit(
        x_tr, y_tr, nb_epochs=2, batch_size=64, verbose=False, checkpoint=tmp_path / "ckpt.pt"
    )
    restored = STNClassifier.load(tmp_path / "ckpt.pt", model=digits_cnn(), device_type="cpu")
    assert restored.smoothing_settings() == clf.smoothing_settings()
    a = clf.certify_report(x_te[:20], n=64, batch_size=256)
    b = restored.certify_report(x_te[:20], n=64, batch_size=256)
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_array_equal(a.radius, b.radius)


def test_resume_after_an_interrupted_epoch_equals_an_unbroken_run(split, tmp_path, monkeypatch):
    (x_tr, y_tr), _ = split
    x_tr, y_tr = x_tr[:256], y_tr[:256]
    unbroken = make_classifier(seed=1)
    STNTrainer(unbroken, gamma=1.0, seed=4).fit(x_tr, y_tr, nb_epochs=4, batch_size=64, verbose=False)

    crashing = make_classifier(seed=1)
    trainer = STNTrainer(crashing, gamma=1.0, seed=4)
    original = STNTrainer.loss
    steps = {"n": 0}

    def crash_in_third_epoch(self, x, y, generator):
        steps["n"] += 1
        if steps["n"] == 2 * 4 + 2:  # 4 batches per epoch: the 2nd batch of epoch 3
            raise KeyboardInterrupt
        return original(self, x, y, generator)

    monkeypatch.setattr(STNTrainer, "loss", crash_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(x_tr, y_tr, nb_epochs=4, batch_size=64, verbose=False, checkpoint=tmp_path / "c.pt")
    monkeypatch.setattr(STNTrainer, "loss", original)
    assert torch.load(tmp_path / "c.pt", weights_only=True)["epoch"] == 1  # epochs 0 and 1 completed

    resumed = make_classifier(seed=99)  # different initial weights: everything must come from the checkpoint
    history = STNTrainer(resumed, gamma=1.0, seed=4).fit(
        x_tr, y_tr, nb_epochs=4, batch_size=64, verbose=False, resume_from=tmp_path / "c.pt"
    )
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    for p, q in zip(params(unbroken), params(resumed), strict=True):
        torch.testing.assert_close(p, q)


def test_fit_generator_with_dataloader_and_art_generator(split):
    (x_tr, y_tr), (x_te, y_te) = split
    loader = DataLoader(TensorDataset(torch.from_numpy(x_tr), torch.from_numpy(y_tr)), batch_size=64, shuffle=True)
    clf = make_classifier()
    history = STNTrainer(clf, gamma=1.0).fit_generator(loader, nb_epochs=2, validation_data=(x_te, y_te), verbose=False)
    assert len(history) == 2 and "val_noisy_acc" in history[0]
    gen = PyTorchDataGenerator(loader, size=len(x_tr), batch_size=64)
    history = STNTrainer(clf, gamma=0.0).fit_generator(gen, nb_epochs=1, verbose=False)
    assert len(history) == 1 and np.isfinite(history[0]["loss"])
    with pytest.raises(TypeError, match="generator"):
        STNTrainer(clf).fit_generator(42)


def test_classifier_fit_trains_through_the_trainer(split):
    (x_tr, y_tr), _ = split
    clf = make_classifier()
    before = params(clf)
    clf.fit(x_tr[:128], y_tr[:128], batch_size=64, nb_epochs=1, verbose=False)
    assert any(not torch.equal(p, q) for p, q in zip(before, params(clf), strict=True))


def test_bad_arguments(split):
    (x_tr, y_tr), _ = split
    clf = make_classifier()
    with pytest.raises(ValueError, match="gamma"):
        STNTrainer(clf, gamma=-0.1)
    with pytest.raises(TypeError, match="STNClassifier"):
        STNTrainer(object(), gamma=1.0)
    with pytest.raises(ValueError, match="width"):
        STNTrainer(clf).fit(x_tr[:10], np.zeros((10, 3)), nb_epochs=1, verbose=False)
    with pytest.raises(ValueError, match="outside"):
        STNTrainer(clf).fit(x_tr[:10], np.full(10, 10), nb_epochs=1, verbose=False)
    with pytest.raises(ValueError, match="lengths"):
        STNTrainer(clf).fit(x_tr[:10], y_tr[:9], nb_epochs=1, verbose=False)
    no_opt = STNClassifier(digits_cnn(), torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, device_type="cpu")
    with pytest.raises(ValueError, match="optimizer"):
        STNTrainer(no_opt)


def test_bad_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        STNClassifier.load(tmp_path / "missing.pt", model=digits_cnn())
    clf = make_classifier()
    path = STNTrainer(clf).save_checkpoint(tmp_path / "ok.pt", epoch=0)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        STNClassifier.load(truncated, model=digits_cnn())
    with pytest.raises(ValueError, match="does not fit"):
        STNClassifier.load(path, model=torch.nn.Linear(64, 10))
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not an art-stn checkpoint"):
        STNClassifier.load(tmp_path / "foreign.pt", model=digits_cnn())


def test_mid_epoch_checkpoint_resumes_exactly_like_an_unbroken_run(split, tmp_path, monkeypatch):
    """A run killed inside an epoch (after a `checkpoint_every` checkpoint) and resumed ends with the same weights,
    history losses and noise as an unbroken run, dropout included."""
    (x_tr, y_tr), _ = split
    x_tr, y_tr = x_tr[:320], y_tr[:320]  # 10 batches of 32 per epoch

    def make() -> STNClassifier:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.3), torch.nn.Linear(64, 10))
        return STNClassifier(
            model,
            torch.nn.CrossEntropyLoss(),
            (1, 8, 8),
            10,
            optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
            scale=0.3,
            device_type="cpu",
        )

    unbroken = make()
    ref = STNTrainer(unbroken, gamma=1.0, seed=5).fit(x_tr, y_tr, nb_epochs=2, batch_size=32, verbose=False)

    killed, ckpt = make(), tmp_path / "mid.pt"
    calls = {"n": 0}
    original = STNTrainer.loss

    def dies_in_epoch_two(self, x, y, generator):
        calls["n"] += 1
        if calls["n"] == 17:  # batch 7 of epoch 2, after the checkpoint written at batch 6
            raise KeyboardInterrupt
        return original(self, x, y, generator)

    monkeypatch.setattr(STNTrainer, "loss", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        STNTrainer(killed, gamma=1.0, seed=5).fit(
            x_tr, y_tr, nb_epochs=2, batch_size=32, verbose=False, checkpoint=ckpt, checkpoint_every=3
        )
    monkeypatch.setattr(STNTrainer, "loss", original)
    saved = torch.load(ckpt, weights_only=True)
    assert saved["epoch"] == 0 and saved["partial"]["epoch"] == 1 and saved["partial"]["step"] == 6
    torch.manual_seed(123)  # the global RNG (dropout) must come from the checkpoint, not from here
    resumed = make()
    history = STNTrainer(resumed, gamma=1.0, seed=5).fit(
        x_tr, y_tr, nb_epochs=2, batch_size=32, verbose=False, checkpoint=ckpt, resume_from=ckpt, checkpoint_every=3
    )
    for a, b in zip(params(unbroken), params(resumed), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [h["loss"] for h in history] == pytest.approx([h["loss"] for h in ref], rel=1e-6)
    assert torch.load(ckpt, weights_only=True)["partial"] is None  # the end-of-epoch checkpoint clears it
    with pytest.raises(ValueError, match="checkpoint_every"):
        STNTrainer(make(), gamma=1.0).fit(x_tr, y_tr, nb_epochs=1, checkpoint=ckpt, checkpoint_every=0)
