"""
Issue 16: ten defects found by a close review, each reproduced by a test that failed before its fix.

Every test is named after its defect (`test_defectNN_...`); the issue's closing note lists the failure each one
showed on the code before the fix.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from art_stn import STNClassifier, STNTrainer
from art_stn.confidence import top_two_bounds
from art_stn.distributed import merge_shards, shard_path
from art_stn.evaluate import certify_to_file, read_results
from art_stn.noise import stream_key
from art_stn.results import attack_summary
from art_stn.robustness import robust_accuracy_to_file
from tests.conftest import LinearBinary


def linear(w, b: float = 0.0, scale: float = 1.0, **kwargs) -> STNClassifier:
    """A two-class linear classifier in len(w) dimensions (class 0 iff w.x + b > 0)."""
    params = dict(device_type="cpu", seed=0, scale=scale)
    params.update(kwargs)
    w = np.asarray(w, dtype=np.float32)
    return STNClassifier(LinearBinary(w, b), torch.nn.CrossEntropyLoss(), (len(w),), 2, **params)


def rows_without_seconds(path) -> list[list[str]]:
    lines = path.read_text().splitlines()
    columns = lines[1].split("\t")
    keep = [i for i, c in enumerate(columns) if c != "seconds"]
    return [[line.split("\t")[i] for i in keep] for line in lines[2:]]


# ------------------------------------------------------------------------------------------------ defect 1
def _certify_six(clf, x, y, out, **kwargs):
    return certify_to_file(clf, x, y, np.arange(len(x)), out, n=32, n0=8, alpha=0.01, verbose=False, **kwargs)


@pytest.mark.parametrize("cut", ["inside_last_field", "after_last_tab"])
def test_defect01_resume_half_written_last_field(digits_classifier, digits, tmp_path, cut):
    x, y = digits[0][:6], digits[1][:6]
    unbroken = _certify_six(digits_classifier(seed=3), x, y, tmp_path / "unbroken.tsv")
    text = unbroken.read_text()
    last_tab = text.rstrip("\n").rfind("\t")
    # A killed run whose write buffer was flushed mid-line: the last row lacks its newline (and part of `seconds`).
    cut_text = text[:-2] if cut == "inside_last_field" else text[: last_tab + 1]
    killed = tmp_path / "killed.tsv"
    killed.write_text(cut_text)
    _certify_six(digits_classifier(seed=3), x, y, killed, resume=True)
    _, table, _ = read_results(killed)
    assert sorted(table["idx"].astype(int)) == [0, 1, 2, 3, 4, 5]  # index 5 is certified again, not lost
    assert rows_without_seconds(killed) == rows_without_seconds(unbroken)


def test_defect01_attack_file_half_written_last_line(digits_classifier, digits, tmp_path):
    x, y = digits[0][:4], digits[1][:4]
    args = dict(attack="pgd-l2", eps=[0.0, 0.1], max_iter=1, verbose=False)
    out = robust_accuracy_to_file(digits_classifier(), x, y, out=tmp_path / "a.tsv", **args)
    out.write_text(out.read_text()[:-2])  # cut inside the last field of the last image's eps=0.1 line
    robust_accuracy_to_file(digits_classifier(), x, y, out=out, resume=True, **args)
    _, table, _ = read_results(out)
    pairs = sorted(zip(table["idx"].astype(int), table["eps"], strict=True))
    assert pairs == [(i, e) for i in range(4) for e in (0.0, 0.1)]  # the cut line is attacked again, once


# ------------------------------------------------------------------------------------------------ defect 2
def test_defect02_auto_batch_probe_keeps_batchnorm_stats_and_mode():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 10),
    )
    clf = STNClassifier(net, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, device_type="cpu", seed=0)
    net.train()  # as build_model / load() / the trainer leave a model
    net[1].eval()  # a user's frozen batch-norm layer: its own mode must come back too
    before = {k: v.clone() for k, v in net.state_dict().items()}
    peaks = iter([1_000, 1_000 + 64 * 4_096])  # fake device memory: 4 KiB per noisy copy
    size = clf._probe_batch_size(free=2**24, peak_memory=lambda: next(peaks))
    assert size == 2048  # the largest power of two whose batch needs at most half of 16 MiB
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert net.training and net[0].training and not net[1].training


# ------------------------------------------------------------------------------------------------ defect 3
def test_defect03_seeded_counts_do_not_depend_on_batch_size(digits_classifier, digits):
    x = digits[0][:10]
    reference = digits_classifier(seed=5).certify_report(x, n=200, n0=20, batch_size=64)
    for batch_size in (1, 7, 200, 5000, None):
        report = digits_classifier(seed=5).certify_report(x, n=200, n0=20, batch_size=batch_size)
        np.testing.assert_array_equal(report.counts, reference.counts, err_msg=f"batch_size={batch_size}")
        np.testing.assert_array_equal(report.top, reference.top)


def test_defect03_ranks_with_different_batch_sizes_merge(digits_classifier, digits, tmp_path):
    # Under torchrun each rank picks its automatic batch size from its own free memory: shards must still merge
    # and equal a single-process run.
    x, y = digits[0][:6], digits[1][:6]
    out = tmp_path / "merged.tsv"
    single = tmp_path / "single.tsv"
    kwargs = dict(n=32, n0=8, alpha=0.01, verbose=False)
    certify_to_file(digits_classifier(seed=2), x, y, np.arange(6), single, batch_size=64, **kwargs)
    for rank, batch_size in ((0, 16), (1, 1024)):
        sel = np.arange(6)[rank::2]
        target = shard_path(out, rank, 2)
        certify_to_file(digits_classifier(seed=2), x[sel], y[sel], sel, target, batch_size=batch_size, **kwargs)
    merge_shards(out, 2)
    assert rows_without_seconds(out) == rows_without_seconds(single)
    meta, _, _ = read_results(out)
    assert "batch_size" not in meta


def test_defect03_old_results_file_with_batch_size_still_reads(tmp_path):
    old = tmp_path / "old.tsv"
    old.write_text(
        '# art-stn certify {"alpha": 0.001, "batch_size": 256, "n": 10, "seed": 0}\n'
        "idx\tlabel\tpredict\tradius\n0\t1\t1\t0.5\n1\t2\t-1\t0\n"
    )
    meta, table, kind = read_results(old)
    assert kind == "certify" and meta["batch_size"] == 256 and list(table["idx"]) == [0, 1]


# ------------------------------------------------------------------------------------------------ defect 4
def test_defect04_attacks_see_scores_without_abstention(tmp_path, monkeypatch):
    # x[0] lies on the boundary: the smoothed classifier abstains there. ART's decision-based attacks take the
    # argmax of `predict`, so a zero row would look like class 0 to them.
    clf = linear([1.0, 0.0], sample_size=100, clip_values=(-3.0, 3.0))
    x = np.array([[0.0, 0.3], [2.0, 0.0]], dtype=np.float32)
    y = np.array([1, 0])
    assert clf.predict(x[:1]).sum() == 0.0  # abstains (the evaluation's view, unchanged)
    seen = []
    original = STNClassifier.predict

    def spy(self, x, *args, **kwargs):
        out = original(self, x, *args, **kwargs)
        seen.append(("is_abstain" in kwargs, out))
        return out

    monkeypatch.setattr(STNClassifier, "predict", spy)
    out = robust_accuracy_to_file(clf, x, y, "boundary", [0.5], tmp_path / "b.tsv", max_iter=1, verbose=False)
    by_attack = [p for explicit, p in seen if not explicit]
    assert by_attack, "the attack never called predict"
    for p in by_attack:
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)  # no abstain rows for the attack
    summary = attack_summary(read_results(out)[1])
    assert summary["clean_accuracy"][0] == 0.5  # the abstaining example still counts as an error
    with clf.without_abstention():
        assert original(clf, x[:1]).sum() == pytest.approx(1.0)
    assert original(clf, x[:1]).sum() == 0.0


# ------------------------------------------------------------------------------------------------ defect 5
class Recorder(torch.nn.Module):
    """Records every input batch and returns constant logits."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return torch.zeros((x.shape[0], 2)) + self.dummy


def test_defect05_n0_and_n_streams_of_two_examples_differ():
    # Before the fix, seed 0 gave the selection stream of example 63941 the generator of the estimation stream of
    # example 83701: PyTorch's CPU generator keeps only the low 32 bits of a seed, and these two keys share them.
    rec = Recorder()
    clf = STNClassifier(rec, torch.nn.CrossEntropyLoss(), (4,), 2, device_type="cpu", seed=0, scale=1.0)
    x = np.zeros((2, 4), dtype=np.float32)
    clf.certify_report(x, n=16, n0=16, batch_size=16, indices=np.array([63941, 83701]))
    copies = torch.cat(rec.seen).numpy()
    assert len(copies) == 64
    assert len({row.tobytes() for row in copies}) == 64  # every noisy copy is its own draw


def test_defect05_stream_keys_and_first_draws_are_distinct():
    from art_stn.noise import fill_stream_noise

    # Keys: an injective packing of (purpose, index, block) then a bijection of 64-bit integers, so distinct by
    # construction (checked here on 400,000 keys).
    keys = [stream_key(7, p, i, b) for p in (0, 1) for i in range(50_000) for b in range(4)]
    assert len(set(keys)) == len(keys)
    assert all(0 <= k < 2**64 for k in keys[:1000])
    # Streams on the CPU: the first draws of 20,000 (purpose, index) streams are all different.
    firsts = set()
    out = torch.empty(2)
    for purpose in (0, 1):
        for index in range(10_000):
            fill_stream_noise(out, "gaussian", 1.0, 7, purpose, index, 0)
            firsts.add(out.numpy().tobytes())
    assert len(firsts) == 20_000
    with pytest.raises(ValueError, match="index"):
        stream_key(0, 1, 2**41, 0)


# ------------------------------------------------------------------------------------------------ defect 6
def test_defect06_n0_zero_warns(digits_classifier, digits):
    clf = digits_classifier(n0=0)
    with pytest.warns(UserWarning, match="n0=0"):
        clf.certify_report(digits[0][:2], n=32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        digits_classifier(n0=8).certify_report(digits[0][:2], n=32)  # no warning with separate selection


def test_defect06_simulated_failure_rate_of_single_sample_protocol():
    """
    K tied classes (each 1/K), n = 100, alpha = 0.05, 2000 simulated certifications per case (fixed seed). A pair of
    bounds fails when p1_lower > 1/K or p2_upper < 1/K. With the top class picked from the same samples (n0 = 0)
    the failure rate is about 10% (K = 5) and 20% (K = 10); with separate selection samples it stays below alpha.
    Thresholds sit at least 4 binomial standard deviations from the observed rates, so a correct implementation
    fails this with probability < 1e-4 for any seed.
    """
    rng = np.random.default_rng(0)
    rates = {}
    for k in (5, 10):
        p = np.full(k, 1.0 / k)
        counts = rng.multinomial(100, p, size=2000)
        for protocol, top in (("n0=0", None), ("n0>0", rng.multinomial(100, p, size=2000).argmax(1))):
            b = top_two_bounds(counts, 0.05, top=top)
            rates[(k, protocol)] = float(np.mean((b.p1_lower > 1 / k) | (b.p2_upper < 1 / k)))
    assert rates[(5, "n0=0")] > 0.07 and rates[(10, "n0=0")] > 0.15
    assert rates[(5, "n0>0")] <= 0.05 and rates[(10, "n0>0")] <= 0.05


# ------------------------------------------------------------------------------------------------ defect 7
def dropout_classifier(scale: float = 0.25, noise: str = "gaussian") -> STNClassifier:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(64, 64),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.5),
        torch.nn.Linear(64, 10),
    )
    return STNClassifier(
        net,
        torch.nn.CrossEntropyLoss(),
        (1, 8, 8),
        10,
        optimizer=torch.optim.Adam(net.parameters(), lr=1e-3),
        noise=noise,
        scale=scale,
        device_type="cpu",
        seed=0,
    )


def test_defect07_resume_with_dropout_equals_unbroken_run(digits, tmp_path):
    x, y = digits[0][:256], digits[1][:256]
    unbroken = dropout_classifier()
    STNTrainer(unbroken, gamma=1.0, seed=0).fit(x, y, nb_epochs=2, batch_size=64, verbose=False)
    first = dropout_classifier()
    STNTrainer(first, gamma=1.0, seed=0).fit(
        x, y, nb_epochs=1, batch_size=64, verbose=False, checkpoint=tmp_path / "c.pt"
    )
    resumed = dropout_classifier()  # a new process: the global RNG starts again from torch.manual_seed(0)
    STNTrainer(resumed, gamma=1.0, seed=0).fit(
        x, y, nb_epochs=2, batch_size=64, verbose=False, resume_from=tmp_path / "c.pt"
    )
    for p, q in zip(unbroken.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_defect07_resume_refuses_changed_settings(digits, tmp_path):
    x, y = digits[0][:64], digits[1][:64]
    ckpt = tmp_path / "c.pt"
    STNTrainer(dropout_classifier(), gamma=1.0, seed=0).fit(
        x, y, nb_epochs=1, batch_size=64, verbose=False, checkpoint=ckpt
    )
    changes = {
        "scale": (dropout_classifier(scale=0.5), 1.0, 0),
        "noise": (dropout_classifier(noise="laplace"), 1.0, 0),
        "gamma": (dropout_classifier(), 2.0, 0),
        "seed": (dropout_classifier(), 1.0, 1),
    }
    for name, (clf, gamma, seed) in changes.items():
        with pytest.raises(ValueError, match=name):
            STNTrainer(clf, gamma=gamma, seed=seed).fit(
                x, y, nb_epochs=2, batch_size=64, verbose=False, resume_from=ckpt
            )
    history = STNTrainer(dropout_classifier(), gamma=1.0, seed=0).fit(
        x, y, nb_epochs=2, batch_size=64, verbose=False, resume_from=ckpt
    )
    assert [h["epoch"] for h in history] == [1, 2]


# ------------------------------------------------------------------------------------------------ defect 8
def test_defect08_results_resume_refuses_other_weights_or_settings(digits_classifier, digits, tmp_path):
    x, y = digits[0][:4], digits[1][:4]
    out = tmp_path / "r.tsv"
    _certify_six(digits_classifier(seed=1), x[:2], y[:2], out)
    meta, _, _ = read_results(out)
    assert len(meta["model_sha256"]) == 64 and meta["precision"] == "fp32" and meta["channels_last"] is False
    retrained = digits_classifier(seed=1)
    with torch.no_grad():
        retrained.model[1].bias.add_(1e-3)  # another model behind the same checkpoint name
    with pytest.raises(ValueError, match="model_sha256"):
        _certify_six(retrained, x, y, out, resume=True)
    with pytest.raises(ValueError, match="precision"):
        _certify_six(digits_classifier(seed=1, precision="bf16"), x, y, out, resume=True)
    with pytest.raises(ValueError, match="channels_last"):
        _certify_six(digits_classifier(seed=1, channels_last=True), x, y, out, resume=True)
    with pytest.raises(ValueError, match="preprocessing"):
        _certify_six(digits_classifier(seed=1, preprocessing=(0.5, 0.5)), x, y, out, resume=True)
    _certify_six(digits_classifier(seed=1), x, y, out, resume=True)  # the same model resumes
    assert len(read_results(out)[1]["idx"]) == 4
    args = dict(attack="pgd-l2", eps=[0.0], max_iter=1, verbose=False)
    attack_out = robust_accuracy_to_file(digits_classifier(), x, y, out=tmp_path / "a.tsv", **args)
    with pytest.raises(ValueError, match="model_sha256"):
        robust_accuracy_to_file(retrained, x, y, out=attack_out, resume=True, **args)


# ------------------------------------------------------------------------------------------------ defect 9
def test_defect09_logits_are_log_smoothed_softmax_without_abstention():
    clf = linear([1.0, 0.0], eot_samples=20_000)
    x = np.array([[0.0, 0.0], [0.3, 0.0]], dtype=np.float32)  # x[0] on the boundary: predict abstains there
    z = clf.predict(x, logits=True)
    np.testing.assert_allclose(np.exp(z).sum(axis=1), 1.0, atol=1e-5)
    # The smoothed softmax of this model: E[sigmoid(2 (x1 + r))], r ~ N(0, 1), by quadrature.
    r = np.linspace(-8, 8, 20001)
    weight = np.exp(-(r**2) / 2)
    weight /= weight.sum()
    expected = [np.sum(weight / (1 + np.exp(-2 * (x1 + r)))) for x1 in x[:, 0]]
    np.testing.assert_allclose(np.exp(z[:, 0]), expected, atol=0.01)  # Monte Carlo: sd < 0.003
    # The scores and `class_gradient` describe one function: a finite difference of the scores themselves (same
    # noise on both sides), for the likely class and the unlikely one, matches the noise-averaged gradient. (The
    # gradient of the smoothed softmax instead, exp of the scores, is smaller by the factor exp(score): for the
    # unlikely class about 0.38 here, which left ART's Carlini-Wagner attack nearly inert against the smoothed model.)
    h = 0.05
    plus, minus = x[1:] + [[h, 0.0]], x[1:] - [[h, 0.0]]
    for c in (0, 1):
        fd = (clf.predict(plus, logits=True)[0, c] - clf.predict(minus, logits=True)[0, c]) / (2 * h)
        grad = clf.class_gradient(x[1:], label=c)[0, 0, 0]
        assert fd == pytest.approx(grad, abs=0.02), c


# ------------------------------------------------------------------------------------------------ defect 10
def test_defect10a_pgd_robust_requires_a_correct_clean_prediction(tmp_path):
    from art.estimators.classification import PyTorchClassifier

    # The target misclassifies x (class 1 at x1 = -0.3, label 0). The transfer source is the negated model, so
    # its PGD step moves x towards the target's class 0: the perturbed input is classified correctly.
    target = linear([1.0, 0.0], scale=0.1, clip_values=(-2.0, 2.0))
    source = PyTorchClassifier(
        LinearBinary(np.array([-1.0, 0.0]), 0.0),
        torch.nn.CrossEntropyLoss(),
        (2,),
        2,
        clip_values=(-2.0, 2.0),
        device_type="cpu",
    )
    x, y = np.array([[-0.3, 0.0]], dtype=np.float32), np.array([0])
    out = robust_accuracy_to_file(
        target, x, y, "transfer-l2", [1.0], tmp_path / "t.tsv", source=source, max_iter=10, verbose=False
    )
    _, table, _ = read_results(out)
    assert list(table["prediction"]) == [1, 0]  # clean: wrong; after the transfer attack: right
    assert list(table["correct"]) == [0, 0]  # not robust: it was never classified correctly


def test_defect10b_attack_resume_matches_the_written_sizes(digits_classifier, digits, tmp_path):
    x, y = digits[0][:4], digits[1][:4]
    out = tmp_path / "a.tsv"
    args = dict(attack="pgd-l2", max_iter=1, verbose=False)
    robust_accuracy_to_file(digits_classifier(), x, y, eps=[0.0, 1234.5678], out=out, **args)
    robust_accuracy_to_file(digits_classifier(), x, y, eps=[0.0, 1234.5678, 1e-7], out=out, resume=True, **args)
    _, table, _ = read_results(out)
    assert list(dict.fromkeys(table["eps"])) == [0.0, 1234.57, 1e-7]  # 1234.5678 not repeated, 1e-7 not taken for 0
    assert len(table["eps"]) == 3 * 4


class RecordingSampler(DistributedSampler):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)
        super().set_epoch(epoch)


def test_defect10c_fit_generator_sets_epoch_on_distributed_sampler(digits):
    data = TensorDataset(torch.from_numpy(digits[0][:128]), torch.from_numpy(digits[1][:128]))
    sampler = RecordingSampler(data, num_replicas=1, rank=0, shuffle=True, seed=0)
    loader = DataLoader(data, batch_size=64, sampler=sampler)
    STNTrainer(dropout_classifier(), gamma=1.0).fit_generator(loader, nb_epochs=3, verbose=False)
    assert sampler.epochs == [0, 1, 2]  # a new order every epoch, as in torch's DDP recipe


def test_defect10d_data_generator_without_size_is_refused(digits):
    from art.data_generators import PyTorchDataGenerator

    data = TensorDataset(torch.from_numpy(digits[0][:128]), torch.from_numpy(digits[1][:128]))
    gen = PyTorchDataGenerator(DataLoader(data, batch_size=64), size=None, batch_size=64)
    with pytest.raises(ValueError, match="size"):
        STNTrainer(dropout_classifier(), gamma=1.0).fit_generator(gen, nb_epochs=1, verbose=False)


def test_defect10e_compute_loss_is_noise_averaged():
    # Cross-entropy of class 0 at x1 = 1 under N(0, 1) noise: E[log(1 + exp(-2 (1 + r)))], by quadrature; the
    # base model's loss without noise is log(1 + exp(-2)) = 0.127.
    clf = linear([1.0, 0.0], eot_samples=20_000)
    x, y = np.array([[1.0, 0.0]], dtype=np.float32), np.array([0])
    r = np.linspace(-8, 8, 20001)
    weight = np.exp(-(r**2) / 2)
    weight /= weight.sum()
    expected = float(np.sum(weight * np.log1p(np.exp(-2 * (1.0 + r)))))
    loss = clf.compute_loss(x, y, reduction="none")
    assert loss.shape == (1,) and loss[0] == pytest.approx(expected, abs=0.02)  # Monte Carlo: sd < 0.01
    assert float(clf.compute_loss(torch.from_numpy(x), torch.from_numpy(y), reduction="mean")) == pytest.approx(
        expected, abs=0.02
    )


def test_defect10e_get_activations_is_documented_as_the_base_model(digits_classifier, digits):
    clf = digits_classifier()
    doc = STNClassifier.get_activations.__doc__
    assert doc is not None and "without noise" in doc
    x = digits[0][:3]
    act = clf.get_activations(x, layer=0)
    np.testing.assert_allclose(act, clf.get_activations(x, layer=0))  # deterministic: no noise


# ------------------------------------------------------------------------------------------------ looked at
def test_lookat_channels_last_with_3d_convolutions():
    # channels_last applies to 4-D tensors only; a Conv3d's 5-D weight made `Module.to(memory_format=...)` raise
    # "required rank 4 tensor to use channels_last format". Only 4-D parameters change format now.
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 2 * 2 * 2, 10))
    x = np.random.default_rng(0).random((3, 1, 4, 4, 4), dtype=np.float32)
    counts = {}
    for channels_last in (False, True):
        clf = STNClassifier(
            net, torch.nn.CrossEntropyLoss(), (1, 4, 4, 4), 10, device_type="cpu", seed=0, channels_last=channels_last
        )
        counts[channels_last] = clf.certify_report(x, n=64, n0=8).counts
    np.testing.assert_array_equal(counts[True], counts[False])
