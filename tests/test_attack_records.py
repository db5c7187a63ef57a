"""`art-stn attack` results: one line per (image, attack size), the summary computed from the lines, resume after
an interruption, and one code path for smoothed and deterministic models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from art_stn.metrics import paired_difference
from art_stn.results import attack_summary, read_results
from art_stn.robustness import ABSTAIN, ATTACK_COLUMNS, robust_accuracy_to_file


def plain(digits_classifier):
    """The base model of `digits_classifier` as a plain ART classifier (a deterministic model)."""
    from art.estimators.classification import PyTorchClassifier

    smoothed = digits_classifier()
    return PyTorchClassifier(
        smoothed.model, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, clip_values=(0.0, 1.0), device_type="cpu"
    )


def test_one_line_per_image_and_size_and_the_summary_from_the_lines(digits_classifier, digits, tmp_path):
    x, y = digits[0][:30:3], digits[1][:30:3]
    indices = np.arange(0, 30, 3)
    out = robust_accuracy_to_file(
        digits_classifier(eot_samples=4), x, y, "pgd-l2", [0.5, 1.0], tmp_path / "a.tsv", max_iter=3,
        batch_size=4, verbose=False, indices=indices,
    )  # fmt: skip
    meta, table, kind = read_results(out)
    assert kind == "attack" and list(table) == ATTACK_COLUMNS and meta["restarts"] == 0
    assert len(table["idx"]) == 10 * 3  # size 0 (the clean prediction) is always recorded
    assert sorted(set(table["idx"].astype(int))) == list(indices)
    label_of = dict(zip(indices, y, strict=True))
    assert all(label_of[int(i)] == int(label) for i, label in zip(table["idx"], table["label"], strict=True))
    clean = table["eps"] == 0
    assert (table["l2"][clean] == 0).all() and (table["linf"][clean] == 0).all()
    for e in (0.5, 1.0):
        rows = table["eps"] == e
        assert (table["l2"][rows] <= e + 1e-4).all() and (table["linf"][rows] <= table["l2"][rows] + 1e-6).all()
    # `correct`: the clean prediction and the one after the attack are both the label (an abstention is wrong).
    clean_pred = dict(zip(table["idx"][clean].astype(int), table["prediction"][clean], strict=True))
    expected = [
        clean_pred[int(i)] == lab and p == lab and p != ABSTAIN
        for i, lab, p in zip(table["idx"], table["label"], table["prediction"], strict=True)
    ]
    assert list(table["correct"].astype(bool)) == expected
    summary = attack_summary(table)
    assert list(summary["eps"]) == [0.0, 0.5, 1.0] and list(summary["examples"]) == [10, 10, 10]
    for k, e in enumerate(summary["eps"]):
        assert summary["accuracy"][k] == pytest.approx(table["correct"][table["eps"] == e].mean())
        assert summary["clean_accuracy"][k] == pytest.approx(table["correct"][clean].mean())
    assert summary["accuracy"][2] <= summary["accuracy"][0]


def test_an_interrupted_attack_resumes_to_the_unbroken_run(digits_classifier, digits, tmp_path, monkeypatch):
    """A deterministic model and PGD from the image are deterministic: the resumed file equals an unbroken run's
    (but for the timings), each (image, size) pair once, and what was written before the interruption is kept."""
    from art.attacks.evasion import ProjectedGradientDescent

    x, y = digits[0][:12], digits[1][:12]
    args = dict(attack="pgd-linf", eps=[0.05, 0.1], max_iter=3, batch_size=3, verbose=False)
    unbroken = robust_accuracy_to_file(plain(digits_classifier), x, y, out=tmp_path / "u.tsv", **args)
    calls, original = [], ProjectedGradientDescent.generate

    def interrupted(self, *a, **k):
        calls.append(1)
        if len(calls) == 6:  # the second batch of eps = 0.1
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(ProjectedGradientDescent, "generate", interrupted)
    out = tmp_path / "k.tsv"
    with pytest.raises(KeyboardInterrupt):
        robust_accuracy_to_file(plain(digits_classifier), x, y, out=out, **args)
    assert len(read_results(out)[1]["idx"]) == 12 + 12 + 3  # clean, eps 0.05, one batch of eps 0.1
    monkeypatch.setattr(ProjectedGradientDescent, "generate", original)
    robust_accuracy_to_file(plain(digits_classifier), x, y, out=out, resume=True, **args)

    def rows(path):
        return sorted(line.rsplit("\t", 1)[0] for line in path.read_text().splitlines()[2:])

    assert rows(out) == rows(unbroken) and len(rows(out)) == 36


def test_smoothed_and_plain_models_share_one_path(digits_classifier, digits, tmp_path):
    x, y = digits[0][:8], digits[1][:8]
    args = dict(attack="pgd-linf", eps=[0.1], max_iter=2, verbose=False)
    smoothed = robust_accuracy_to_file(digits_classifier(eot_samples=2), x, y, out=tmp_path / "s.tsv", **args)
    deterministic = robust_accuracy_to_file(plain(digits_classifier), x, y, out=tmp_path / "p.tsv", **args)
    (ms, ts, _), (mp, tp, _) = read_results(smoothed), read_results(deterministic)
    assert list(ts) == list(tp) == ATTACK_COLUMNS and len(ts["idx"]) == len(tp["idx"]) == 16
    assert ms["noise"] == "gaussian" and ms["sample_size"] == 16 and mp["noise"] == "none"
    assert ms["model_sha256"] == mp["model_sha256"]  # the same weights
    with pytest.raises(ValueError, match="autoattack"):
        robust_accuracy_to_file(plain(digits_classifier), x, y, "autoattack", [0.5], tmp_path / "x.tsv")


def test_unbounded_attack_serves_every_size(digits_classifier, digits, tmp_path):
    x, y = digits[0][:6], digits[1][:6]
    out = robust_accuracy_to_file(
        plain(digits_classifier), x, y, "cw-l2", [0.25, 0.5, 1.0, 4.0], tmp_path / "cw.tsv", max_iter=5,
        verbose=False,
    )  # fmt: skip
    _, table, _ = read_results(out)
    assert len(table["idx"]) == 6 * 5
    for i in range(6):
        mine = table["idx"] == i
        correct = table["correct"][mine][np.argsort(table["eps"][mine])]
        assert (np.diff(correct) <= 0).all()  # robust at a size: robust at every smaller size
    attacked = table["eps"] > 0
    assert (table["l2"][attacked] <= table["eps"][attacked] + 1e-6).all()  # 0 where C&W needed more than the size


def test_transfer_linf_crafts_on_the_source(digits_classifier, digits, tmp_path):
    x, y = digits[0][:6], digits[1][:6]
    out = robust_accuracy_to_file(
        digits_classifier(), x, y, "transfer-linf", [0.1], tmp_path / "t.tsv", source=plain(digits_classifier),
        max_iter=3, verbose=False,
    )  # fmt: skip
    _, table, _ = read_results(out)
    rows = table["eps"] == 0.1
    assert (table["linf"][rows] <= 0.1 + 1e-6).all() and table["linf"][rows].max() > 0.05
    with pytest.raises(ValueError, match="source"):
        robust_accuracy_to_file(digits_classifier(), x, y, "transfer-l2", [0.1], tmp_path / "u.tsv")


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(eps=[]), "eps"),
        (dict(eps=[-1.0]), "eps"),
        (dict(eps=[float("nan")]), "eps"),
        (dict(indices=[0, 0, 1, 2]), "distinct"),
        (dict(indices=[0, 1]), "indices"),
        (dict(attack="fgsm"), "unknown attack"),
        (dict(restarts=-1), "restarts"),
    ],
)
def test_bad_arguments_are_named(digits_classifier, digits, tmp_path, bad, match):
    args = {**dict(attack="pgd-l2", eps=[0.5], out=tmp_path / "x.tsv", verbose=False), **bad}
    with pytest.raises(ValueError, match=match):
        robust_accuracy_to_file(digits_classifier(), digits[0][:4], digits[1][:4], **args)


def test_summary_of_older_files_and_missing_clean_lines():
    older = {"eps": np.array([0.0, 0.5]), "accuracy": np.array([0.9, 0.5]), "clean_accuracy": np.array([0.9, 0.9])}
    assert attack_summary(older) is not older and list(attack_summary(older)["accuracy"]) == [0.9, 0.5]
    lines = {c: np.array([0.0, 0.5]) for c in ATTACK_COLUMNS}
    lines["idx"] = np.array([0.0, 1.0])  # image 1 has an attack line but no clean line
    with pytest.raises(ValueError, match="clean"):
        attack_summary(lines)


def test_paired_difference():
    a = np.array([[1, 1, 1, 0], [1, 0, 0, 0]])
    b = np.array([[1, 0, 1, 0], [1, 0, 0, 0]])
    diff, lo, hi = paired_difference(a, b)
    assert diff == pytest.approx([0.25, 0.0]) and lo[0] < 0.25 < hi[0] and -1.0 <= lo[0] and hi[0] <= 1.0
    assert lo[1] < 0.0 < hi[1]  # identical: no discordant example, and still no certainty of a zero difference
    with pytest.raises(ValueError, match="shape"):
        paired_difference(a, b[:, :3])
    with pytest.raises(ValueError, match="0 or 1"):
        paired_difference(a * 0.5, b)


def test_paired_difference_excludes_zero_exactly_when_mcnemar_rejects():
    """The score interval is the inversion of McNemar's test: 0 lies outside it exactly when the uncorrected
    asymptotic test (statsmodels) rejects at the same level; and its ends are where the score statistic is +-z."""
    from statsmodels.stats.contingency_tables import mcnemar

    n = 500
    for ab, ba in [(0, 0), (3, 0), (4, 0), (0, 4), (10, 3), (11, 3), (25, 12), (26, 12), (40, 40), (200, 0)]:
        a = np.r_[np.ones(ab), np.zeros(ba), np.ones(n - ab - ba)]
        b = np.r_[np.zeros(ab), np.ones(ba), np.ones(n - ab - ba)]
        diff, lo, hi = paired_difference(a, b)
        assert diff == pytest.approx((ab - ba) / n) and lo <= diff <= hi
        rejects = ab + ba > 0 and mcnemar([[n - ab - ba, ab], [ba, 0]], exact=False, correction=False).pvalue < 0.05
        assert (not lo <= 0.0 <= hi) == rejects, (ab, ba, lo, hi)


def test_paired_difference_covers_a_small_true_difference_where_the_wald_interval_does_not():
    """500 examples on which `b` alone errs with probability 0.002 (true difference +0.2 points): few discordant
    examples, often none. The score interval covers the truth in about 99% of 400 draws; the paired Wald interval,
    `mean(d) +- z sd(d) / sqrt(N)`, in about 65% (it has zero width on every draw with no discordant example). The
    bound, 360 of 400, fails a 95% interval with probability below 1e-5 (binomial), and fails Wald's on this seed."""
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    a, b = np.ones((400, 500)), (rng.random((400, 500)) >= 0.002).astype(float)
    _, lo, hi = paired_difference(a, b)
    assert ((lo <= 0.002) & (0.002 <= hi)).sum() >= 360
    d = a - b
    half = norm.ppf(0.975) * d.std(axis=-1, ddof=1) / np.sqrt(500)
    assert ((d.mean(-1) - half <= 0.002) & (0.002 <= d.mean(-1) + half)).sum() < 360
