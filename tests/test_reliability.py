"""Reliability: property tests of the bounds, faults (kills, full disks, out-of-memory) and hostile inputs."""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from art_stn import STNClassifier, STNTrainer
from art_stn.bounds import cohen_l2_radius, laplace_l1_radius, pixeldp_l2_radius, renyi_l2_radius
from art_stn.models import digits_cnn
from tests.test_cli import call

EXE = shutil.which("art-stn")


# ------------------------------------------------------------------------------------------------ properties
@st.composite
def top_two(draw):
    p1 = draw(st.floats(0.0, 1.0, allow_nan=False))
    p2 = draw(st.floats(0.0, min(p1, 1.0 - p1), allow_nan=False))
    return p1, p2


@settings(max_examples=300, deadline=None)
@given(top_two(), st.floats(1e-3, 10.0), st.floats(0.0, 1.0))
def test_bounds_are_finite_nonnegative_monotone_and_below_cohen(pair, sigma, shift):
    p1, p2 = pair
    if p1 >= 1.0:
        return  # p1 = 1 is the one input whose bound is infinite (tested in test_bounds)
    radii = {f.__name__: f(p1, p2, sigma) for f in (renyi_l2_radius, laplace_l1_radius, pixeldp_l2_radius)}
    for name, r in radii.items():
        assert np.isfinite(r) and r >= 0, name
    cohen = cohen_l2_radius(p1, p2, sigma)
    assert radii["renyi_l2_radius"] <= cohen * (1 + 1e-9) + 1e-12
    # monotone: more scale, a larger p1 (p2 fixed), a smaller p2 (p1 fixed)
    assert renyi_l2_radius(p1, p2, 2 * sigma) >= radii["renyi_l2_radius"]
    p1_up = p1 + shift * (1.0 - p2 - p1)
    if p1_up < 1.0:
        for f in (renyi_l2_radius, laplace_l1_radius, pixeldp_l2_radius, cohen_l2_radius):
            assert f(p1_up, p2, sigma) >= f(p1, p2, sigma) - 1e-12, f.__name__
    for f in (renyi_l2_radius, laplace_l1_radius, pixeldp_l2_radius):
        assert f(p1, p2 * (1 - shift), sigma) >= f(p1, p2, sigma) - 1e-12, f.__name__


# ------------------------------------------------------------------------------------------------ hostile input
class NaNModel(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((x.shape[0], 10)) + x.flatten(1)[:, :1]
        out[0, 0] = float("nan")
        return out


def test_non_finite_logits_are_refused():
    clf = STNClassifier(NaNModel(), torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, device_type="cpu")
    x = np.zeros((2, 1, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="NaN or inf logits"):
        clf.predict(x)
    with pytest.raises(ValueError, match="NaN or inf logits"):
        clf.certify(x, n=10)
    with pytest.raises(ValueError, match="NaN or inf"):
        clf.loss_gradient(x, np.array([0, 1]))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_tampered_checkpoint_is_refused_without_running_its_code(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"model_state": Payload(), "smoothing": {}}))  # a plain pickle
    with pytest.raises(ValueError, match="evil.pt is not a readable checkpoint: it is not a file written by torch"):
        STNClassifier.load(evil, model=digits_cnn())
    torch.save({"model_state": Payload(), "smoothing": {}}, evil)  # torch.save's zip format
    with pytest.raises(ValueError, match="evil.pt is not a readable checkpoint: it holds objects other than tensors"):
        STNClassifier.load(evil, model=digits_cnn())
    assert not marker.exists()


def test_out_of_memory_halves_the_batch_and_continues(digits):
    torch.manual_seed(0)

    def make() -> STNClassifier:
        torch.manual_seed(0)
        return STNClassifier(
            digits_cnn(), torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, scale=0.5, seed=3, device_type="cpu"
        )

    clf = make()
    original = clf._logits
    sizes = []

    def small_device(batch: torch.Tensor) -> torch.Tensor:
        sizes.append(batch.shape[0])
        if batch.shape[0] > 32:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(batch)

    clf._logits = small_device
    x = digits[0][:6]
    report = clf.certify_report(x, n=100, n0=10, batch_size=128)
    assert max(sizes) > 32  # it did try the large batch first
    reference = make().certify_report(x, n=100, n0=10, batch_size=32)
    np.testing.assert_array_equal(report.counts, reference.counts)
    np.testing.assert_array_equal(report.prediction, reference.prediction)
    freq = clf.predict(x, batch_size=256)
    assert freq.shape == (6, 10)


# ------------------------------------------------------------------------------------------------ faults
def test_train_killed_and_resumed_equals_unbroken_run(tmp_path):
    common = [EXE, "train", "--dataset", "digits", "--epochs", "6", "--sigma", "0.5", "--quiet"]
    subprocess.run([*common, "--out", str(tmp_path / "unbroken.pt")], check=True, timeout=600, capture_output=True)
    killed = tmp_path / "killed.pt"
    proc = subprocess.Popen([*common, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not killed.exists():
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    epoch_at_kill = torch.load(killed, weights_only=True)["epoch"]
    assert epoch_at_kill < 5
    subprocess.run([*common, "--out", str(killed), "--resume"], check=True, timeout=600, capture_output=True)
    a = torch.load(tmp_path / "unbroken.pt", weights_only=True)
    b = torch.load(killed, weights_only=True)
    assert a["epoch"] == b["epoch"] == 5
    for key in a["model_state"]:
        torch.testing.assert_close(a["model_state"][key], b["model_state"][key], rtol=0, atol=0)


def test_unwritable_output_fails_before_any_work(tmp_path, capsys, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("training started although the output cannot be written")

    monkeypatch.setattr(STNTrainer, "fit", no_training)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, err = call(capsys, "train", "--dataset", "digits", "--out", blocker / "sub" / "ckpt.pt")
    assert code == 2 and "a-file" in err
    original = Path.write_bytes

    def disk_full(self, data):
        if ".probe" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return original(self, data)

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    code, err = call(capsys, "train", "--dataset", "digits", "--out", tmp_path / "ckpt.pt")
    assert code == 2 and "No space left on device" in err
    (tmp_path / "whatever.pt").write_bytes(b"")  # exists: the missing-checkpoint check, made first, passes
    code, err = call(capsys, "certify", "--checkpoint", tmp_path / "whatever.pt", "--out", tmp_path / "r.tsv")
    assert code == 2 and "No space left on device" in err
    assert not (tmp_path / "r.tsv").exists()
