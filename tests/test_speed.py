"""The memory format chosen by measurement (art_stn.speed): results agree across formats, the probe is cached, the
choice is recorded and can be forced, a resumed file keeps its format."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import art_stn.speed as speed
from art_stn import STNClassifier
from art_stn.evaluate import certify_to_file
from art_stn.models import build_model
from art_stn.results import read_results
from art_stn.smoothing import set_memory_format


def _lenet_classifier(channels_last: bool | None) -> STNClassifier:
    torch.manual_seed(0)
    return STNClassifier(
        build_model("lenet"), torch.nn.CrossEntropyLoss(), (1, 28, 28), 10, device_type="cpu", scale=0.5, seed=7,
        channels_last=channels_last,
    )  # fmt: skip


@pytest.fixture
def probe_cache(tmp_path, monkeypatch):
    """A fresh probe cache (memory and disk) for the test."""
    monkeypatch.setattr(speed, "_MEMORY", {})
    monkeypatch.setenv("ART_STN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "speed.json"


def test_formats_agree_up_to_floating_point_reordering():
    """Same seed and noise: the two formats change only the order of floating-point operations, so counts differ only
    for noisy copies within rounding of a decision boundary. Bound: at most 5 of 10,000 per input (measured: 0).
    Deterministic (seeded noise), so no false failures."""
    x = np.random.default_rng(0).uniform(0, 1, (3, 1, 28, 28)).astype(np.float32)
    reports = {cl: _lenet_classifier(cl).certify_report(x, n=10_000, n0=100) for cl in (False, True)}
    assert reports[True].counts.sum(axis=1).tolist() == [10_000] * 3
    diff = np.abs(reports[True].counts - reports[False].counts).sum(axis=1)
    assert (diff <= 2 * 5).all(), diff  # a moved copy changes two classes' counts
    assert (reports[True].prediction == reports[False].prediction).all()


def test_set_memory_format_uses_the_formats_own_strides():
    """With one input channel both formats count as contiguous; the weight must still get channels-last strides, or
    the first convolution runs in the default format (measured: certify 1.2x instead of 1.65x)."""
    model = build_model("lenet")
    conv = model[0].weight
    set_memory_format(model, True)
    assert conv.stride() == torch.empty_like(conv, memory_format=torch.channels_last).stride() == (25, 1, 5, 1)
    out = torch.nn.functional.conv2d(torch.rand(2, 1, 28, 28), conv)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    set_memory_format(model, False)
    assert conv.is_contiguous() and conv.stride() == (25, 25, 5, 1)


def test_probe_is_measured_once_and_cached(probe_cache, monkeypatch):
    calls = []
    original = speed.probe_memory_format

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(speed, "probe_memory_format", counting)
    model = build_model("lenet")
    first = speed.fastest_channels_last(model, (1, 28, 28), "cpu")
    assert len(calls) == 1 and isinstance(first, bool)
    stored = json.loads(probe_cache.read_text())
    (key,) = stored
    assert speed.machine_name(torch.device("cpu")) in key and f"threads={torch.get_num_threads()}" in key
    assert set(stored[key]["img_per_s"]) == {"contiguous", "channels_last"}
    assert stored[key]["channels_last"] is first
    speed._MEMORY.clear()  # a new process: read from disk, no second probe
    assert speed.fastest_channels_last(build_model("lenet"), (1, 28, 28), "cpu") is first
    assert len(calls) == 1
    # not images, or no 4-D weights: no probe at all
    assert speed.fastest_channels_last(torch.nn.Linear(64, 10), (64,), "cpu") is False
    assert speed.fastest_channels_last(torch.nn.Sequential(torch.nn.Flatten()), (1, 8, 8), "cpu") is False
    assert len(calls) == 1


def test_choice_is_recorded_forced_and_followed_on_resume(probe_cache, monkeypatch, tmp_path):
    x = np.random.default_rng(1).uniform(0, 1, (2, 1, 28, 28)).astype(np.float32)
    y = np.zeros(2, dtype=np.int64)
    out = tmp_path / "r.tsv"
    forced = _lenet_classifier(False)
    assert forced.uses_channels_last() is False
    certify_to_file(forced, x[:1], y[:1], np.arange(1), out, n=50, n0=10, alpha=0.001)
    assert read_results(out)[0]["channels_last"] is False and read_results(out)[0]["compile_forward"] is None
    # auto on a machine where the probe says channels-last: the resumed file keeps its recorded format
    monkeypatch.setattr(speed, "probe_memory_format", lambda *a, **k: {"contiguous": 1.0, "channels_last": 2.0})
    auto = _lenet_classifier(None)
    certify_to_file(auto, x, y, np.arange(2), out, n=50, n0=10, alpha=0.001, resume=True)
    header, table, _ = read_results(out)
    assert header["channels_last"] is False and len(table["idx"]) == 2
    forced.set_params(compile_forward=True)  # a speed setting, and a run may switch part-way: resumed, not compared
    certify_to_file(forced, x, y, np.arange(2), out, n=50, n0=10, alpha=0.001, resume=True)
    fresh = _lenet_classifier(None)
    assert fresh.uses_channels_last() is True
    assert fresh.model[0].weight.is_contiguous(memory_format=torch.channels_last)
    certify_to_file(fresh, x, y, np.arange(2), tmp_path / "new.tsv", n=50, n0=10, alpha=0.001)
    assert read_results(tmp_path / "new.tsv")[0]["channels_last"] is True
    with pytest.raises(TypeError, match="channels_last"):
        _lenet_classifier("yes")  # type: ignore[arg-type]


def test_checkpoint_records_the_trained_format_and_loading_measures_again(tmp_path, digits, probe_cache):
    from art_stn.models import digits_cnn
    from art_stn.trainer import GaussianAugmentationTrainer, load_checkpoint

    x, y = digits
    net = digits_cnn()
    clf = STNClassifier(
        net, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, optimizer=torch.optim.SGD(net.parameters(), lr=0.01),
        device_type="cpu", scale=0.5, seed=0, channels_last=True,
    )  # fmt: skip
    GaussianAugmentationTrainer(clf).fit(
        x[:64], y[:64], nb_epochs=1, batch_size=32, verbose=False, checkpoint=tmp_path / "c.pt"
    )
    ckpt = load_checkpoint(tmp_path / "c.pt")
    assert ckpt["channels_last"] is True and ckpt["smoothing"]["channels_last"] is True
    loaded = STNClassifier.load(tmp_path / "c.pt", model=digits_cnn(), device_type="cpu")
    assert loaded.channels_last is None  # the loading machine measures its own
    assert (
        STNClassifier.load(tmp_path / "c.pt", model=digits_cnn(), device_type="cpu", channels_last=False).channels_last
        is False
    )


# ------------------------------------------------------------------------------------------------ compilation
class _FakeCompiled:
    """Stands for `CompiledForward` without compiling: records the batch sizes it was built for and called with."""

    built: list[int] = []

    def __init__(self, model: torch.nn.Module, batch_size: int) -> None:
        self.model, self.batch_size, self.calls = model, batch_size, 0
        _FakeCompiled.built.append(batch_size)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model(x)


def test_automatic_compilation_starts_once_the_run_is_long_on_cpu(monkeypatch):
    """`compile_forward=None` samples eagerly until the classifier has sampled COMPILE_AFTER copies (the call that
    reaches it included), then through one compiled forward per batch size; False never compiles, True always."""
    import art_stn.prediction as prediction

    monkeypatch.setattr(prediction, "COMPILE_AFTER", 1_000)
    monkeypatch.setattr(prediction, "CompiledForward", _FakeCompiled)
    monkeypatch.setattr(_FakeCompiled, "built", [])
    x = np.random.default_rng(0).uniform(0, 1, (2, 1, 28, 28)).astype(np.float32)
    clf = _lenet_classifier(False)
    clf.certify(x, n=300, n0=10, batch_size=64)  # 620 copies: eager
    assert _FakeCompiled.built == [] and not getattr(clf, "_compiled", {})
    clf.certify(x, n=300, n0=10, batch_size=64)  # 1,240 copies: the estimation call reaches 1,000
    assert _FakeCompiled.built == [64]
    compiled = clf._compiled[(64, False)]
    assert compiled.calls > 0
    clf.certify(x, n=300, n0=10, batch_size=64)
    assert _FakeCompiled.built == [64]  # built once, reused
    never = _lenet_classifier(False)
    never.set_params(compile_forward=False)
    for _ in range(3):
        never.certify(x, n=300, n0=10, batch_size=64)
    assert _FakeCompiled.built == [64]
    always = _lenet_classifier(False)
    always.set_params(compile_forward=True)
    always.predict(x[:1], batch_size=32)
    assert _FakeCompiled.built == [64, 32]
    with pytest.raises(TypeError, match="compile_forward"):
        always.set_params(compile_forward="yes")


def test_a_failed_compilation_warns_once_and_stays_eager(monkeypatch, caplog):
    """No C++ compiler (or an operator the compiler lacks) must not stop sampling: the eager forward computes the
    same function, on full batches as on the others; and the compiled forward is not pickled with the classifier."""

    def broken(model, **kwargs):
        def run(x):
            raise RuntimeError("no C++ compiler")

        return run

    monkeypatch.setattr(speed.torch, "compile", broken)
    model = build_model("lenet").eval()
    forward = speed.CompiledForward(model, batch_size=4)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad(), caplog.at_level("WARNING", logger="art_stn.speed"):
        assert torch.equal(forward(x), model(x))
        assert torch.equal(forward(x), model(x))
    assert forward.failed and sum("torch.compile failed" in r.message for r in caplog.records) == 1
    clf = _lenet_classifier(False)
    clf._compiled = {(4, False): forward}
    assert "_compiled" not in clf.__getstate__()


@pytest.mark.slow
def test_compiled_sampling_agrees_up_to_floating_point_reordering():
    """torch.compile (inductor's fused CPU kernels) changes only the order of floating-point operations: same seed and
    noise, so counts differ only for copies within rounding of a decision boundary, at most 5 of 10,000 per input
    (measured: 0). Deterministic (seeded noise). Slow: the first compilation takes 6 to 15 s here."""
    x = np.random.default_rng(0).uniform(0, 1, (3, 1, 28, 28)).astype(np.float32)
    reports = {}
    for compiled in (False, True):
        clf = _lenet_classifier(True)
        clf.set_params(compile_forward=compiled)
        reports[compiled] = clf.certify_report(x, n=10_000, n0=100, batch_size=256)
    assert not clf._compiled[(256, True)].failed  # the compiled forward ran
    diff = np.abs(reports[True].counts - reports[False].counts).sum(axis=1)
    assert (diff <= 2 * 5).all(), diff
    assert (reports[True].prediction == reports[False].prediction).all()


@pytest.mark.slow
def test_compiling_on_a_machine_without_cuda_prints_no_cuda_home_guess(tmp_path):
    """A CUDA build of torch on a machine without the CUDA runtime logs "No CUDA runtime is found, using CUDA_HOME=..."
    when torch.compile first builds C++ kernels (it imports `torch.utils.cpp_extension`): noise in the middle of a CLI
    run's output, about a compiler the CPU never uses. A `CompiledForward` keeps it out (a fresh process and an empty
    compile cache, so that the kernels are built)."""
    import os
    import subprocess
    import sys

    code = (
        "import torch, art_stn.speed as s\n"
        "from art_stn.models import build_model\n"
        "f = s.CompiledForward(build_model('lenet').eval(), 8)\n"
        "with torch.no_grad():\n    f(torch.zeros(8, 1, 28, 28))\n"
        "assert not f.failed"
    )
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True, env=env)
    assert "No CUDA runtime" not in run.stderr + run.stdout
