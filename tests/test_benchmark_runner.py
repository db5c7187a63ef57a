"""benchmarks/certified_training.py's queue and budget rule, on stand-in checkpoint records (fast, no training)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
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
    full = [job for job in runner.jobs() if job.folder == runner.FULL and job.bounds != ("cohen-chosen",)]
    kinds = [job.bounds for job in full]
    assert kinds == [("cohen",)] * 3 + [("renyi",)] * 3
    # The Renyi runs in reverse: STN (the paper's method under the paper's bound, its Table 1's row) first.
    assert [job.name for job in full[3:]] == [job.name for job in full[:3]][::-1] and full[3].method == "stn"
    chosen = [i for i, job in enumerate(runner.jobs()) if job.bounds == ("cohen-chosen",)]
    first_renyi = next(i for i, job in enumerate(runner.jobs()) if job.bounds == ("renyi",))
    assert len(chosen) == 1 and chosen[0] < first_renyi and runner.jobs()[chosen[0]].name == "gaussian-sigma0.5"
    runs = [(job.folder, job.name) for job in runner.jobs() if job.bounds not in (("renyi",), ("cohen-chosen",))]
    assert len(runs) == len(set(runs))  # one job per model and folder, apart from the Renyi and chosen-schedule runs


@pytest.fixture(scope="module")
def replay():
    spec = importlib.util.spec_from_file_location("sequential_schedule", ROOT / "benchmarks/sequential_schedule.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_schedule_replay_starts_from_the_package_schedule_and_fills_its_gaps(replay):
    """The replay's baseline is exactly `--stages radii`; a fill never lets consecutive stages grow by more than it
    (rounded up to whole samples), and the early stages share alpha / 2 whatever their number."""
    from art_stn.certification import radius_stages

    base, alphas = replay.schedule(None)
    assert base == radius_stages(replay.N, replay.ALPHA, replay.RADII, replay.SIGMA, "gaussian", "cohen") + [replay.N]
    assert sum(alphas) == pytest.approx(replay.ALPHA) and alphas[-1] == replay.ALPHA / 2
    for fill in (2.0, 1.5):
        sizes, alphas = replay.schedule(fill)
        assert len(sizes) > len(base) and sizes[-1] == replay.N
        assert all(b <= math.ceil(a * fill) for a, b in zip(sizes, sizes[1:], strict=False))
        assert sum(alphas[:-1]) == pytest.approx(replay.ALPHA / 2)


def test_the_chosen_schedule_reaches_the_certify_command(runner, monkeypatch, tmp_path):
    """The Gaussian model's second CERTIFY run takes its stages and futility level from the committed choice."""
    commands = []
    monkeypatch.setattr(runner, "checkpoint_state", lambda path: (90, 1.0))
    monkeypatch.setattr(runner, "run", lambda cmd, log: commands.append(cmd))
    monkeypatch.setattr(runner, "finish", lambda ckpt: None)
    job = next(job for job in runner.jobs() if job.bounds == ("cohen-chosen",))
    runner.run_job(job, tmp_path / "log")
    (cmd,) = commands
    choice = json.loads(runner.SCHEDULE.read_text())
    schedule = choice["schedules"][choice["chosen"]]
    assert cmd[cmd.index("--stages") + 1] == ",".join(map(str, schedule["stages"]))
    assert float(cmd[cmd.index("--futility") + 1]) == schedule["futility"]
    assert cmd[cmd.index("--bound") + 1] == "cohen" and cmd[cmd.index("--out") + 1].endswith("-cohen-chosen.tsv")


def test_the_anytime_confidence_sequence_covers_at_every_size_where_peeking_at_clopper_pearson_does_not(replay):
    """The confidence sequence of the replay's anytime alternative holds at every sample size at once (Ville's
    inequality): on 400 sequences of 20,000 draws of a Bernoulli mean of 0.99 (fixed seed), checked after every draw,
    it excludes the true mean from below on at most alpha = 5% of them under each prior. The same check fails for a
    fixed-n Clopper-Pearson bound looked at as the draws grow (about 30% here). False failure: each sequence crosses
    with probability at most alpha, so more than `binom.isf(1e-6, 400, alpha)` = 44 crossings has probability below
    1e-6 per prior."""
    from scipy.stats import binom

    from art_stn.confidence import clopper_pearson_lower

    alpha, p, sequences, length = 0.05, 0.99, 400, 20_000
    k = np.cumsum(np.random.default_rng(0).random((sequences, length)) < p, axis=1)
    n = np.arange(1, length + 1)
    limit = binom.isf(1e-6, sequences, alpha)
    for prior in replay.PRIORS:
        evidence = replay.mixture_log_evidence(k, n, p, prior)
        crossed = ((k / n > p) & (evidence >= np.log(1 / alpha))).any(axis=1)
        assert crossed.sum() <= limit, (prior, crossed.sum())
    looks = np.unique(np.geomspace(10, length, 100).astype(int)) - 1
    peeking = (clopper_pearson_lower(k[:, looks], n[looks], alpha) > p).any(axis=1)
    assert peeking.sum() > limit  # the check can fail: a bound valid at one fixed n is not valid at every n
