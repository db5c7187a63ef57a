"""Issue-29 defects of resume and arguments: a resume never continues under other settings silently (a missing
setting is a difference), the batch size, schedule and optimizer are compared, every ART method setting is recorded,
`--checkpoint-every` is refused where it cannot be honoured, and bad arguments are refused before anything trains.
Every resume test carries momentum and a scheduler."""

from __future__ import annotations

import pytest
import torch

from art_stn import STNClassifier, STNTrainer
from art_stn.art_trainer import ARTEstimatorTrainer
from art_stn.checkpoint import load_checkpoint
from art_stn.data import load_digits
from art_stn.trainer import ConsistencyTrainer, GaussianAugmentationTrainer, build_scheduler
from tests.test_cli import call


def classifier(lr: float = 0.05, momentum: float = 0.9) -> STNClassifier:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    return STNClassifier(
        model, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, clip_values=(0.0, 1.0), scale=0.5, device_type="cpu",
        optimizer=torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=1e-4),
    )  # fmt: skip


@pytest.fixture(scope="module")
def data():
    (x, y), _ = load_digits()
    return x[:256], y[:256]


def test_a_checkpoint_without_method_is_continued_only_by_its_known_legacy_method(tmp_path, data):
    x, y = data
    clf = classifier()
    sched = build_scheduler(clf.optimizer, "step", 4, 1, 0.5)
    STNTrainer(clf, gamma=1.0).fit(
        x, y, nb_epochs=1, batch_size=64, verbose=False, scheduler=sched, checkpoint=tmp_path / "a.pt"
    )
    ckpt = load_checkpoint(tmp_path / "a.pt")
    for key in ("method", "detach_target"):  # art-stn's earlier format: STN with gamma, no method, no detach_target
        del ckpt[key]
    torch.save(ckpt, tmp_path / "legacy.pt")
    other = classifier()
    with pytest.raises(ValueError, match="method"):
        ConsistencyTrainer(other, lbd=5.0).fit(
            x, y, nb_epochs=2, batch_size=64, verbose=False, resume_from=tmp_path / "legacy.pt",
            scheduler=build_scheduler(other.optimizer, "step", 4, 1, 0.5),
        )  # fmt: skip
    stn = classifier()
    history = STNTrainer(stn, gamma=1.0).fit(
        x, y, nb_epochs=2, batch_size=64, verbose=False, resume_from=tmp_path / "legacy.pt",
        scheduler=build_scheduler(stn.optimizer, "step", 4, 1, 0.5),
    )  # fmt: skip
    assert [h["epoch"] for h in history] == [1, 2]
    del ckpt["gamma"]  # nothing says what it was: refused, naming what is missing
    torch.save(ckpt, tmp_path / "unknown.pt")
    with pytest.raises(ValueError, match="gamma"):
        STNTrainer(classifier(), gamma=1.0).fit(
            x, y, nb_epochs=2, batch_size=64, verbose=False, resume_from=tmp_path / "unknown.pt"
        )


def test_resume_with_another_batch_size_is_refused(tmp_path, data):
    x, y = data
    clf = classifier()
    GaussianAugmentationTrainer(clf).fit(
        x, y, nb_epochs=1, batch_size=32, verbose=False, checkpoint=tmp_path / "b.pt", checkpoint_every=2,
        scheduler=build_scheduler(clf.optimizer, "step", 4, 1, 0.5),
    )  # fmt: skip
    assert load_checkpoint(tmp_path / "b.pt")["batch_size"] == 32
    again = classifier()
    with pytest.raises(ValueError, match="batch_size"):
        GaussianAugmentationTrainer(again).fit(
            x, y, nb_epochs=2, batch_size=64, verbose=False, resume_from=tmp_path / "b.pt",
            scheduler=build_scheduler(again.optimizer, "step", 4, 1, 0.5),
        )  # fmt: skip


def test_resume_follows_the_schedule_of_the_total_or_refuses(tmp_path, data):
    x, y = data
    clf = classifier()
    cosine = build_scheduler(clf.optimizer, "cosine", 2)
    GaussianAugmentationTrainer(clf).fit(
        x, y, nb_epochs=1, batch_size=64, verbose=False, scheduler=cosine, checkpoint=tmp_path / "c.pt"
    )
    longer = classifier()  # a 4-epoch cosine schedule cannot continue a 2-epoch one
    with pytest.raises(ValueError, match="T_max"):
        GaussianAugmentationTrainer(longer).fit(
            x, y, nb_epochs=4, batch_size=64, verbose=False, resume_from=tmp_path / "c.pt",
            scheduler=build_scheduler(longer.optimizer, "cosine", 4),
        )  # fmt: skip
    for changed, name in ((classifier(lr=0.1), "lr"), (classifier(momentum=0.5), "momentum")):
        with pytest.raises(ValueError, match=name):
            GaussianAugmentationTrainer(changed).fit(
                x, y, nb_epochs=2, batch_size=64, verbose=False, resume_from=tmp_path / "c.pt",
                scheduler=build_scheduler(changed.optimizer, "cosine", 2),
            )  # fmt: skip
    without = classifier()
    with pytest.raises(ValueError, match="scheduler"):
        GaussianAugmentationTrainer(without).fit(
            x, y, nb_epochs=2, batch_size=64, verbose=False, resume_from=tmp_path / "c.pt"
        )
    # A step schedule does not depend on the total: 2 epochs resumed to 4 equals an unbroken 4-epoch run.
    unbroken = classifier()
    GaussianAugmentationTrainer(unbroken).fit(
        x,
        y,
        nb_epochs=4,
        batch_size=64,
        verbose=False,
        scheduler=build_scheduler(unbroken.optimizer, "step", 4, 1, 0.5),
    )
    first = classifier()
    GaussianAugmentationTrainer(first).fit(
        x, y, nb_epochs=2, batch_size=64, verbose=False, checkpoint=tmp_path / "s.pt",
        scheduler=build_scheduler(first.optimizer, "step", 2, 1, 0.5),
    )  # fmt: skip
    resumed = classifier()
    sched = build_scheduler(resumed.optimizer, "step", 4, 1, 0.5)
    GaussianAugmentationTrainer(resumed).fit(
        x, y, nb_epochs=4, batch_size=64, verbose=False, scheduler=sched, resume_from=tmp_path / "s.pt"
    )
    for a, b in zip(unbroken.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert resumed.optimizer.param_groups[0]["lr"] == unbroken.optimizer.param_groups[0]["lr"] == 0.05 / 16


def _art(cls, sched_epochs: int = 4, **kwargs):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    est = cls(
        model, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, optimizer=opt, scale=0.5, device_type="cpu",
        clip_values=(0.0, 1.0), **kwargs,
    )  # fmt: skip
    trainer = ARTEstimatorTrainer(STNClassifier.from_estimator(est, alpha=0.001), est, seed=1)
    return trainer, est, build_scheduler(opt, "step", sched_epochs, 1, 0.5)


def test_art_resume_restores_momentum_and_scheduler_and_records_every_setting(tmp_path, data):
    from art.estimators.certification.randomized_smoothing import PyTorchMACER, PyTorchSmoothMix

    x, y = data
    unbroken, est_a, sched_a = _art(PyTorchMACER, gaussian_samples=4)
    unbroken.fit(x, y, nb_epochs=3, batch_size=64, verbose=False, scheduler=sched_a)
    first, _, sched = _art(PyTorchMACER, gaussian_samples=4)
    first.fit(x, y, nb_epochs=2, batch_size=64, verbose=False, scheduler=sched, checkpoint=tmp_path / "m.pt")
    resumed, est_b, sched_b = _art(PyTorchMACER, gaussian_samples=4)
    resumed.fit(x, y, nb_epochs=3, batch_size=64, verbose=False, scheduler=sched_b, resume_from=tmp_path / "m.pt")
    for a, b in zip(est_a.model.parameters(), est_b.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert sched_a.get_last_lr() == sched_b.get_last_lr()
    mix, _, _ = _art(PyTorchSmoothMix, num_noise_vec=2, num_steps=1, warmup=1, alpha=0.5)
    mix.fit(x[:64], y[:64], nb_epochs=1, batch_size=64, verbose=False, checkpoint=tmp_path / "mix.pt")
    assert load_checkpoint(tmp_path / "mix.pt")["alpha"] == 0.5  # SmoothMix's attack step
    other, _, _ = _art(PyTorchSmoothMix, num_noise_vec=2, num_steps=1, warmup=1, alpha=0.25)
    with pytest.raises(ValueError, match="alpha"):
        other.fit(x[:64], y[:64], nb_epochs=2, batch_size=64, verbose=False, resume_from=tmp_path / "mix.pt")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--method", "gaussian", "--max-train", "-5"], "--max-train"),
        (["--method", "gaussian", "--val-size", "-1"], "--val-size"),
        (["--method", "smoothmix", "--art-args", "num_steps=0"], "num_steps"),
        (["--method", "smoothmix", "--art-args", "alpha=-1"], "alpha"),
        (["--method", "smoothmix", "--art-args", "num_noise_vec=0"], "num_noise_vec"),
        (["--method", "smoothmix", "--art-args", "num_steps=2.5"], "num_steps"),
        (["--method", "smoothadv", "--art-args", "num_noise_vec=2"], "num_noise_vec"),
        (["--method", "smoothadv", "--art-args", "warmup=0"], "warmup"),
        (["--method", "macer", "--checkpoint-every", "5"], "--checkpoint-every"),
    ],
)
def test_bad_training_arguments_are_refused_before_anything_trains(tmp_path, capsys, args, needle):
    out = tmp_path / "m.pt"
    code, err = call(capsys, "train", "--dataset", "digits", "--epochs", "1", "--out", out, "--quiet", *args)
    assert code == 2 and needle in err and "Traceback" not in err, err
    assert not out.exists()


def test_a_trained_checkpoint_records_its_run(tmp_path, capsys):
    out = tmp_path / "g.pt"
    args = ["--max-train", "300", "--val-size", "50", "--batch-size", "32"]
    code, err = call(capsys, "train", "--dataset", "digits", "--epochs", "1", "--out", out, "--quiet", *args)
    assert code == 0, err
    ckpt = load_checkpoint(out)
    assert ckpt["batch_size"] == 32
    assert ckpt["metadata"]["train_images"] == 250 and ckpt["metadata"]["val_images"] == 50
    assert 0.0 <= ckpt["history"][0]["val_clean_acc"] <= 1.0


def test_help_names_every_model_and_what_seed_seeds(capsys):
    from art_stn.cli import build_parser
    from art_stn.models import MODELS

    parser = build_parser()
    helps = {}
    for command in ("train", "certify", "attack"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        raw = capsys.readouterr().out
        assert not [line for line in raw.splitlines() if line.rstrip().endswith("-") and line.strip() != "-"], raw
        helps[command] = " ".join(raw.split())
    assert all(name in helps["train"] for name in MODELS)
    assert "initial weights" in helps["train"]
    assert "initial weights" not in helps["certify"] and "initial weights" not in helps["attack"]


def test_a_finished_runs_checkpoint_keeps_weights_and_records_only(tmp_path, data):
    from art_stn.checkpoint import RESUME_STATE, strip_resume_state

    x, y = data
    clf = classifier()
    sched = build_scheduler(clf.optimizer, "step", 2, 1, 0.5)
    GaussianAugmentationTrainer(clf).fit(
        x, y, nb_epochs=1, batch_size=64, verbose=False, scheduler=sched, checkpoint=tmp_path / "f.pt"
    )
    before = (tmp_path / "f.pt").stat().st_size
    strip_resume_state(tmp_path / "f.pt")
    ckpt = load_checkpoint(tmp_path / "f.pt")
    assert not set(RESUME_STATE) & set(ckpt) and ckpt["history"] and ckpt["method"] == "gaussian"
    assert (tmp_path / "f.pt").stat().st_size < before
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    loaded = STNClassifier.load(tmp_path / "f.pt", model=model, device_type="cpu")
    for a, b in zip(loaded.model.parameters(), clf.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    again = classifier()
    with pytest.raises(ValueError, match="cannot resume"):
        GaussianAugmentationTrainer(again).fit(
            x, y, nb_epochs=2, batch_size=64, verbose=False, resume_from=tmp_path / "f.pt",
            scheduler=build_scheduler(again.optimizer, "step", 2, 1, 0.5),
        )  # fmt: skip
