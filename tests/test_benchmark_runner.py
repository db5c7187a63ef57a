"""benchmarks/certified_training.py's queue and budget rule, on stand-in checkpoint records (fast, no training)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runner():
    spec = importlib.util.spec_from_file_location("certified_training", ROOT / "benchmarks/certified_training.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["certified_training"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("certified_training", None)


@pytest.mark.parametrize(
    ("epoch_seconds", "epochs"),
    [(505.0, 3), (576.0, 3), (708.0, 2), (175.0, 8), (2000.0, 1)],  # budget 1462 s: 2.9, 2.5, 2.1, 8.4, 0.7 epochs
)
def test_art_methods_train_the_epochs_nearest_the_budget(runner, monkeypatch, tmp_path, epoch_seconds, epochs):
    """Equal compute within half an epoch: the floor of budget / epoch gave SmoothMix 2 epochs, 70% of the budget,
    where 3 epochs use 104%."""
    records = {"consistency-sigma0.5.pt": (30, 1462.0), "smoothmix-sigma0.5-probe.pt": (1, epoch_seconds)}
    monkeypatch.setattr(runner, "checkpoint_state", lambda path: records.get(Path(path).name, (0, 0.0)))
    monkeypatch.setattr(runner, "run", lambda *a, **k: pytest.fail("the measured epoch is on record: no new probe"))
    assert runner.art_epochs("smoothmix", tmp_path, tmp_path / "log") == epochs
    records["consistency-sigma0.5.pt"] = (29, 1400.0)  # the budget's run is not finished: wait for it
    assert runner.art_epochs("smoothmix", tmp_path, tmp_path / "log") is None


def test_every_full_protocol_model_is_decided_by_certify_before_any_by_renyi(runner):
    """The Renyi runs (about four times slower per image) wait until each model has its CERTIFY run."""
    full = [job for job in runner.jobs() if job.folder == runner.FULL]
    kinds = [job.bounds for job in full]
    assert kinds == [("cohen",)] * 3 + [("renyi",)] * 3
    assert [job.name for job in full[:3]] == [job.name for job in full[3:]]
    runs = [(job.folder, job.name) for job in runner.jobs() if job.bounds != ("renyi",)]
    assert len(runs) == len(set(runs))  # one job per model and folder, apart from the Renyi pass
