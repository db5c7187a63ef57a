"""Adversarial soundness: ART's PGD, with noise-averaged gradients and random restarts, attacks each digit inside
its certified Rényi radius; the smoothed prediction, re-estimated with fresh noise and large n, must not change.

Certificates are issued at alpha = 0.001 each; with 40 digits the chance that any certificate is wrong is
< 0.04, and a change is only counted when a two-sided binomial test rejects the original class at 1e-4, so a correct
implementation fails this test with probability < 0.05 (in practice the certificates are far from tight and the
attack finds nothing).
"""

from __future__ import annotations

import numpy as np
import pytest
from art.attacks.evasion import ProjectedGradientDescentNumpy

from art_stn.confidence import abstain_pvalue
from art_stn.data import load_digits
from art_stn.demo import train_digits


@pytest.mark.slow
def test_pgd_inside_the_certified_radius_never_flips_the_smoothed_prediction(capsys):
    data = load_digits()
    clf, _ = train_digits(gamma=1.0, sigma=0.5, epochs=15, verbose=False, data=data)
    x, y = data[1][0][:40], data[1][1][:40]
    report = clf.certify_report(x, n=1000, n0=100, alpha=0.001)
    ok = (report.prediction == y) & (report.radius > 0)
    assert ok.sum() >= 20
    xs, ys, radius = x[ok], y[ok], report.radii["renyi"][ok]
    clf.set_params(eot_samples=16, seed=None)
    x_adv = np.empty_like(xs)
    for i in range(len(xs)):  # each digit at 99% of its own radius
        attack = ProjectedGradientDescentNumpy(
            clf, norm=2, eps=0.99 * radius[i], eps_step=radius[i] / 4, max_iter=15, num_random_init=2, verbose=False
        )
        x_adv[i] = attack.generate(xs[i : i + 1], y=ys[i : i + 1])[0]
    assert np.all(np.linalg.norm((x_adv - xs).reshape(len(xs), -1), axis=1) <= radius + 1e-5)
    fresh = clf.certify_report(x_adv, n=4000, n0=0, alpha=0.001)
    counts = fresh.counts
    own = counts[np.arange(len(ys)), ys]
    best_other = np.where(np.arange(10)[None, :] == ys[:, None], -1, counts).max(axis=1)
    flipped = (best_other > own) & (abstain_pvalue(best_other, own) < 1e-4)
    assert int(flipped.sum()) == 0

    # Empirical robust accuracy beside certified accuracy at the same radii (reported, and empirical >= certified).
    lines = [f"{len(ys)} certified digits attacked at 99% of their radius: {int(flipped.sum())} flipped"]
    for r in (0.1, 0.25, 0.5):
        certified = np.mean((report.prediction == y) & (report.radii["renyi"] >= r))
        attack = ProjectedGradientDescentNumpy(
            clf, norm=2, eps=r, eps_step=r / 4, max_iter=15, num_random_init=1, verbose=False
        )
        adv = attack.generate(x, y=y)
        re = clf.certify_report(adv, n=1000, n0=0, alpha=0.001)
        empirical = np.mean(re.top == y)
        lines.append(f"L2 {r}: certified {certified:.3f}, empirical robust (PGD) {empirical:.3f}")
        cert_mask = (report.prediction == y) & (report.radii["renyi"] >= r)
        assert np.mean(re.top[cert_mask] == y[cert_mask]) >= 0.95  # the certified ones survive (estimate noise)
    with capsys.disabled():
        print("\n" + "\n".join(lines))
