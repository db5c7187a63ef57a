"""Sequential certification with stages placed at the requested radii (`radius_stages`, `--stages radii`): where an
all-correct input is decided, how close that is to an oracle, and that the guarantee holds (a coverage simulation
that fails if the stages' failure probabilities were not split)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, norm

from art_stn.certification import certify_counts, certify_sequential, radius_stages
from art_stn.confidence import stage_schedule

RADII = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.58, 1.75]


def test_each_radius_is_decided_at_its_own_stage_within_1_5x_of_the_oracle():
    sizes, alphas = stage_schedule(100_000, 0.001, radius_stages(100_000, 0.001, RADII, 0.5, bound="cohen"))
    assert sizes[-1] == 100_000 and len(sizes) == 10 and np.isclose(sum(alphas), 0.001)
    for r in RADII[1:]:
        stage = next(i for i, m in enumerate(sizes) if _certifies(m, alphas[i], r))
        assert not _certifies(sizes[stage] - 1, alphas[stage], r)  # the stage is the fewest samples at its alpha
        oracle = np.log(0.001) / np.log(norm.cdf(r / 0.5))  # an oracle that knows p_A = 1
        assert sizes[stage] / oracle < 1.5, (r, sizes[stage], oracle)
    # the doubling default overshoots at 1.75 (3.5 sigma): 51,200 samples against the oracle's 29,691
    default, default_alphas = stage_schedule(100_000, 0.001)
    first = next(m for m, a in zip(default, default_alphas, strict=True) if _certifies(m, a, 1.75))
    assert first == 51_200


def _certifies(m: int, alpha: float, radius: float) -> bool:
    step = certify_counts(np.array([[m, 0]]), alpha, 0.5, bound="cohen", top=np.array([0]))
    return bool(step.certified_by["cohen"][0] and step.radii["cohen"][0] >= radius)


def test_radius_stages_never_exceed_n_and_drop_radii_out_of_reach():
    sizes = radius_stages(10_000, 0.001, RADII, 0.5, bound="renyi")
    assert sizes == sorted(set(sizes)) and all(0 < m < 10_000 for m in sizes) and len(sizes) < len(RADII)


@pytest.mark.parametrize(("fill", "futility"), [(None, 1e-3), (1.5, 0.05)])
def test_coverage_of_sequential_certification_on_radius_stages(fill, futility):
    """4,000 simulated inputs whose true CERTIFY radius is 0.5 (p_A = Phi(1) at sigma 0.5), certified sequentially at
    alpha = 0.05 on the radius stages (alone, and filled to grow by at most 1.5x with an earlier futility stop): a
    certificate above 0.5 is a violation, at most 5% of inputs in expectation. Fails above the binomial 1 - 1e-6
    quantile at rate alpha (false-failure probability < 1e-6 each); stages that each spent the whole alpha would give
    up to 4x as many (more with the filled stages)."""
    alpha, sigma, radii = 0.05, 0.5, [0.25, 0.5, 0.75]
    p_a = norm.cdf(1.0)
    rng = np.random.default_rng(0)

    def sample(rows, m, purpose):
        top = rng.binomial(m, p_a, size=len(rows))
        return np.stack([top, m - top], axis=1)

    stages = radius_stages(2_000, alpha, radii, sigma, bound="cohen", nb_classes=2, fill=fill)
    sizes, alphas = stage_schedule(2_000, alpha, stages)
    total, violations = 4_000, 0
    report = certify_sequential(
        sample,
        np.zeros(total, dtype=np.int64),
        2,
        0,
        sizes,
        alphas,
        tuple(radii),
        sigma,
        "gaussian",
        "cohen",
        futility=futility,
    )
    violations = int((report.certified_by["cohen"] & (report.radius > 0.5 + 1e-12)).sum())
    limit = int(binom.isf(1e-6, total, alpha))  # P(more than limit violations at rate alpha) <= 1e-6
    assert violations <= limit, violations
    assert report.certified_by["cohen"].mean() > 0.5  # the run does certify (not vacuous)


def test_filled_radius_stages_keep_the_radii_stages_and_grow_by_at_most_the_ratio():
    base = radius_stages(100_000, 0.001, RADII, 0.5, bound="cohen")
    filled = radius_stages(100_000, 0.001, RADII, 0.5, bound="cohen", fill=1.5)
    assert len(filled) > 2 * len(base) and filled == sorted(set(filled)) and filled[-1] < 100_000
    assert all(b <= np.ceil(a * 1.5) for a, b in zip([*filled, 100_000], [*filled[1:], 100_000], strict=False))
    # each radius keeps a stage where an all-correct input is decided at the filled schedule's smaller share of alpha
    _, alphas = stage_schedule(100_000, 0.001, filled)
    for r in RADII[1:]:
        first = next(m for m in filled if _certifies(m, alphas[0], r))
        assert not _certifies(first - 1, alphas[0], r)
    for bad in (1.0, 0.5, True, "1.5"):
        with pytest.raises(ValueError, match="fill"):
            radius_stages(1_000, 0.001, RADII, 0.5, fill=bad)
