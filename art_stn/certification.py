"""
Certificates from class counts: the radius under every bound for the noise (:func:`certify_counts`), and sequential
certification (:func:`certify_sequential`), which draws its samples through a callable and stops each input once it
is decided at the requested radii.

Layer 2 (no ART, no model): it combines :mod:`art_stn.bounds` and :mod:`art_stn.confidence`; the sampling itself is
:func:`art_stn.smoothing.sample_counts`, called by :class:`art_stn.STNClassifier` (or by anyone, with counts from
elsewhere).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from art_stn.bounds import (
    cohen_certify_l2_radius,
    cohen_l2_radius,
    laplace_l1_radius,
    pixeldp_l2_radius,
    renyi_l2_radius,
)
from art_stn.confidence import clopper_pearson_lower, clopper_pearson_upper, top_two_bounds
from art_stn.noise import check_noise
from art_stn.validation import check_int

__all__ = [
    "BOUNDS",
    "FUTILITY_LEVEL",
    "N0_ZERO_WARNING",
    "CertifyReport",
    "certify_counts",
    "certify_sequential",
    "radius_stages",
    "largest_certified",
    "levels",
    "reachable_levels",
]

#: The bounds that apply to each kind of noise (the first is the default).
BOUNDS: dict[str, tuple[str, ...]] = {
    "gaussian": ("renyi", "cohen", "cohen-top2", "pixeldp"),
    "laplace": ("laplace",),
}
# The bounds computed from (p1_lower, p2_upper); "cohen" is computed from pa_lower (Cohen et al.'s CERTIFY).
_RADIUS_FUNCTIONS = {
    "renyi": renyi_l2_radius,
    "cohen-top2": cohen_l2_radius,
    "pixeldp": pixeldp_l2_radius,
    "laplace": laplace_l1_radius,
}
#: The warning of `certify` with `n0=0` (the paper's protocol: one sample set selects and bounds the top class).
N0_ZERO_WARNING = (
    "n0=0: the top class is selected from the same samples that bound it (the paper's protocol), so p1_lower and "
    "p2_upper hold with probability below 1 - alpha near ties (simulated at alpha=0.05, n=100: 10% failures with "
    "5 tied classes, 20% with 10). Use n0 > 0 (Cohen et al.'s protocol) for the stated guarantee."
)
# Noise-stream purpose of stage s >= 1 of sequential certification (stage 0 uses 1, the estimation samples' own
# purpose; 0 is the selection samples', 2 the scores of predict(logits=True)): `_STAGE_PURPOSE + s` (3, 4, ...), so
# every stage draws fresh, independent noise.
_STAGE_PURPOSE = 2
#: Default level of the optimistic bounds of sequential certification's futility rule.
FUTILITY_LEVEL = 1e-3


@dataclass(frozen=True)
class CertifyReport:
    """
    The full record of a certification: counts, bounds and the radius under every bound that applies to the noise.

    :param prediction: Certified class per input, -1 where abstained.
    :param radius: Radius under the classifier's configured bound (0 where abstained).
    :param top: Selected top class per input (from the `n0` samples when `n0 > 0`).
    :param counts: Class counts of the `n` estimation samples, shape `(N, nb_classes)`.
    :param n: Number of estimation samples per input.
    :param n0: Number of selection samples per input (0: the top class is chosen from the `n` samples).
    :param alpha: Failure probability of each certificate.
    :param p1_lower: Lower confidence bound on the top-class probability.
    :param p2_upper: Upper confidence bound on the runner-up probability.
    :param radii: Radius per bound name (`renyi`, `cohen`, `cohen-top2`, `pixeldp` for Gaussian noise, `laplace` for
           Laplace), 0 where that bound does not certify.
    :param bound: The configured bound, whose radius is `radius`.
    :param norm: The norm of the radii: 2 (Gaussian) or 1 (Laplace).
    :param pa_lower: Cohen et al.'s bound: the one-sided Clopper-Pearson lower bound at level `alpha` on the
           top-class probability (the `cohen` bound certifies where it is >= 0.5).
    :param interval: The interval of `p1_lower` / `p2_upper`: `clopper-pearson`, `sison-glaz` or `goodman`.
    :param certified_by: Per bound name, the inputs that bound certifies (`renyi`, `cohen-top2`, `pixeldp`,
           `laplace`: `p1_lower > p2_upper`; `cohen`: `pa_lower >= 0.5`). `prediction` follows the configured bound.
    :param samples: Noisy samples drawn per input (`n0` plus the estimation samples), shape `(N,)`.
    :param requested_radii: The radii asked about (`radii` of `certify_report`), ascending; None if none were.
    :param certified_radius: With `requested_radii`: per input the largest requested radius certified under the
           configured bound, -1 where none is (abstentions included; 0 when 0 was asked about and the input is
           certified with a radius below the next requested one).
    :param stages: Sequential certification: the cumulative estimation sample sizes of the stages; None for fixed n.
    :param stage: Sequential certification: per input the index into `stages` of the stage whose counts and bounds
           the report gives (the stage that certified `radius`, or the last one the input reached when none did), so
           that `radius` and `radii` are the bounds' radii of `counts`, `p1_lower`, `p2_upper` and `pa_lower` at
           failure probability `stage_alpha`; None for fixed n.
    :param stage_alpha: Sequential certification: per input the failure probability of its `stage`.
    """

    prediction: np.ndarray
    radius: np.ndarray
    top: np.ndarray
    counts: np.ndarray
    n: int
    n0: int
    alpha: float
    p1_lower: np.ndarray
    p2_upper: np.ndarray
    radii: dict[str, np.ndarray] = field(default_factory=dict)
    bound: str = "renyi"
    norm: int = 2
    pa_lower: np.ndarray | None = None
    interval: str = "clopper-pearson"
    certified_by: dict[str, np.ndarray] = field(default_factory=dict)
    samples: np.ndarray | None = None
    requested_radii: tuple[float, ...] | None = None
    certified_radius: np.ndarray | None = None
    stages: tuple[int, ...] | None = None
    stage: np.ndarray | None = None
    stage_alpha: np.ndarray | None = None

    @property
    def certified(self) -> np.ndarray:
        """
        Boolean mask of inputs with a certificate (`prediction != -1`).
        """
        return self.prediction >= 0


def certify_counts(
    counts: np.ndarray,
    alpha: float,
    scale: float,
    noise: str = "gaussian",
    bound: str | None = None,
    top: np.ndarray | None = None,
    interval: str = "clopper-pearson",
    n0: int = 0,
) -> CertifyReport:
    """
    Certificates from class counts alone: the bounds and the radius under every bound for the noise, without a model.

    This is what :meth:`STNClassifier.certify_report` does after sampling; it lets counts from elsewhere (e.g.
    Cohen et al.'s or the reference code's scripts) be certified by the same rules.

    - `renyi`, `cohen-top2`, `pixeldp` (Gaussian) and `laplace` (Laplace) take `p1_lower` and `p2_upper` from
      `interval` (Clopper-Pearson at `alpha / 2` each by default) and certify where `p1_lower > p2_upper`.
    - `cohen` is Cohen et al.'s CERTIFY (as ART's `RandomizedSmoothingMixin.certify`): `pa_lower` is the one-sided
      Clopper-Pearson lower bound at level `alpha` on the top-class count, whatever `interval` is; it certifies where
      `pa_lower >= 0.5` (their code abstains when `pa_lower < 0.5`) with radius `scale * Phi^-1(pa_lower)`.

    :param counts: Class counts of shape `(N, k)` of the estimation samples.
    :param alpha: Failure probability of each certificate, in (0, 1).
    :param scale: Gaussian sigma or Laplace lambda, > 0.
    :param noise: `"gaussian"` or `"laplace"`.
    :param bound: The bound whose radius and certification are `radius` and `prediction` (default: the first of
           :data:`BOUNDS` for the noise).
    :param top: Top class per input selected from separate samples (default: the argmax of `counts`).
    :param interval: One of :data:`INTERVALS`.
    :param n0: The number of selection samples behind `top`, recorded in the report (and in `samples`).
    :return: The :class:`CertifyReport` (`n` is the largest row sum).
    """
    noise = check_noise(noise)
    bound = BOUNDS[noise][0] if bound is None else bound
    if bound not in BOUNDS[noise]:
        raise ValueError(f"`bound` must be one of {BOUNDS[noise]} for {noise} noise; got {bound!r}.")
    n0 = check_int(n0, "n0", 0)
    bounds = top_two_bounds(counts, alpha, top=top, interval=interval)
    pa_lower = clopper_pearson_lower(bounds.count1, bounds.n, alpha)
    radii: dict[str, np.ndarray] = {}
    certified: dict[str, np.ndarray] = {}
    for name in BOUNDS[noise]:
        ok = pa_lower >= 0.5 if name == "cohen" else bounds.certified
        r = np.zeros(len(ok))
        if ok.any():
            if name == "cohen":
                r[ok] = cohen_certify_l2_radius(pa_lower[ok], scale)
            else:
                r[ok] = _RADIUS_FUNCTIONS[name](bounds.p1_lower[ok], bounds.p2_upper[ok], float(scale))
        radii[name], certified[name] = r, ok
    return CertifyReport(
        prediction=np.where(certified[bound], bounds.top, -1),
        radius=radii[bound],
        top=bounds.top,
        counts=np.asarray(counts),
        n=int(bounds.n.max()) if len(bounds.n) else 0,
        n0=n0,
        alpha=float(alpha),
        p1_lower=bounds.p1_lower,
        p2_upper=bounds.p2_upper,
        radii=radii,
        bound=bound,
        norm=2 if noise == "gaussian" else 1,
        pa_lower=pa_lower,
        interval=interval,
        certified_by=certified,
        samples=bounds.n + n0,
    )


def levels(radius: np.ndarray, certified: np.ndarray, radii: tuple[float, ...]) -> np.ndarray:
    """
    How many of the (ascending) requested radii each certificate reaches.

    :param radius: Certified radius per input.
    :param certified: Whether the input is certified.
    :param radii: The requested radii, ascending.
    :return: Per input the number of requested radii `r <= radius` (0 where not certified).
    """
    return np.where(certified, np.searchsorted(np.asarray(radii), radius, side="right"), 0)


def largest_certified(level: np.ndarray, radii: tuple[float, ...]) -> np.ndarray:
    """
    :param level: Output of :func:`levels`.
    :param radii: The requested radii, ascending.
    :return: The largest requested radius certified per input, -1 where none is.
    """
    return np.where(level > 0, np.asarray((-1.0, *radii))[level], -1.0)


def reachable_levels(
    counts: np.ndarray,
    top: np.ndarray,
    n_max: int,
    alpha_last: float,
    interval: str,
    radii: tuple[float, ...],
    level: float,
    scale: float,
    noise: str = "gaussian",
    bound: str = "renyi",
) -> np.ndarray:
    """
    How many requested radii each input could still be certified at by the last stage, judged optimistically.

    From the counts so far, `p1` is taken at its upper and `p2` (the runner-up's) at its lower one-sided
    Clopper-Pearson bound at `level`. For Clopper-Pearson and Goodman intervals these are turned into the counts of
    `n_max` samples (the rest of the samples spread over the other classes, no class above the runner-up, any
    remainder given to the top class) and certified by the last stage's rule; for Sison-Glaz (slow to evaluate) the
    radius of the optimistic probabilities themselves is used, without any interval width. Misjudging only stops an
    input early; it never issues a certificate.

    :param counts: Counts of the active inputs so far.
    :param top: Their selected top classes.
    :param n_max: Samples per input at the last stage.
    :param alpha_last: Failure probability of the last stage.
    :param interval: The interval of `p1_lower` / `p2_upper`.
    :param radii: The requested radii, ascending.
    :param level: One-sided level of the optimistic bounds.
    :param scale: Gaussian sigma or Laplace lambda.
    :param noise: `"gaussian"` or `"laplace"`.
    :param bound: The bound that decides.
    :return: Per input the number of requested radii that might be reached.
    """
    rows = np.arange(len(counts))
    m = counts.sum(axis=1)
    others = counts.copy()
    others[rows, top] = -1
    runner = np.argmax(others, axis=1)
    p1 = clopper_pearson_upper(counts[rows, top], m, level)
    p2 = np.minimum(clopper_pearson_lower(others[rows, runner], m, level), 1.0 - p1)
    if interval == "sison-glaz":
        if bound == "cohen":
            radius = np.asarray(cohen_certify_l2_radius(p1, float(scale)))
            return levels(radius, p1 >= 0.5, radii)
        ok = p1 > p2
        radius = np.zeros(len(p1))
        radius[ok] = _RADIUS_FUNCTIONS[bound](p1[ok], p2[ok], float(scale))
        return levels(radius, ok, radii)
    c1 = np.minimum(np.ceil(p1 * n_max), n_max).astype(np.int64)
    c2 = np.minimum(np.floor(p2 * n_max).astype(np.int64), n_max - c1)
    rest = n_max - c1 - c2
    k = counts.shape[1]
    fill = np.minimum(c2, rest // (k - 2)) if k > 2 else np.zeros_like(c2)
    projected = np.repeat(fill[:, None], k, axis=1)
    projected[rows, runner] = c2
    projected[rows, top] = c1 + rest - fill * (k - 2)
    step = certify_counts(projected, alpha_last, float(scale), noise, bound, top, interval)
    return levels(step.radius, step.certified, radii)


def certify_sequential(
    sample: Callable[[np.ndarray, int, int], np.ndarray],
    top: np.ndarray,
    nb_classes: int,
    n0: int,
    sizes: list[int],
    alphas: list[float],
    radii: tuple[float, ...],
    scale: float,
    noise: str = "gaussian",
    bound: str = "renyi",
    interval: str = "clopper-pearson",
    futility: float = FUTILITY_LEVEL,
    progress: Callable[[int], object] | None = None,
) -> CertifyReport:
    """
    Sequential certification: stages of fresh samples, counts accumulated, each stage's certificates at its own
    failure probability (`alphas`, a union bound: see :func:`art_stn.confidence.stage_schedule`), and each input
    stopped once it is certified at the largest requested radius it can still reach (:func:`reachable_levels`).

    :param sample: `sample(rows, m, purpose)` returns the class counts `(len(rows), nb_classes)` of `m` fresh noisy
           copies of the inputs `rows`, drawn from noise of stream purpose `purpose` (1 for the first stage, 3, 4,
           ... for the next ones: every stage is independent of the others and of the selection samples).
    :param top: The top class per input, selected beforehand from `n0` separate samples.
    :param nb_classes: The number of classes.
    :param n0: The selection samples behind `top` (recorded in `samples`).
    :param sizes: Cumulative estimation sample sizes of the stages.
    :param alphas: Failure probability of each stage (summing to the run's alpha).
    :param radii: The requested radii, ascending.
    :param scale: Gaussian sigma or Laplace lambda.
    :param noise: `"gaussian"` or `"laplace"`.
    :param bound: The bound that decides when an input stops (and the report's `radius`).
    :param interval: The interval of `p1_lower` / `p2_upper`.
    :param futility: Level of the optimistic bounds of the futility rule.
    :param progress: Called with the number of inputs that just stopped.
    :return: The report. Each input's `radius` is the largest its configured bound certified at any stage it ran, and
             everything else the report gives of it (`counts`, `p1_lower`, `p2_upper`, `pa_lower`, the other bounds'
             `radii` and `certified_by`) comes from that one stage, `stage` (the last one it reached when it is not
             certified), so the radius can be recomputed from them and `stage_alpha`; `samples` counts every sample
             it drew.
    """
    total = len(top)
    counts = np.zeros((total, check_int(nb_classes, "nb_classes", 2)), dtype=np.int64)
    drawn = np.zeros(total, dtype=np.int64)
    active = np.ones(total, dtype=bool)
    best: dict[str, np.ndarray] = {name: np.zeros(total) for name in BOUNDS[noise]}
    certified = {name: np.zeros(total, dtype=bool) for name in BOUNDS[noise]}
    kept_counts, kept_stage = np.zeros_like(counts), np.zeros(total, dtype=np.int64)
    p1_lower, p2_upper, pa_lower = np.zeros(total), np.zeros(total), np.zeros(total)
    previous = 0
    for stage, (size, stage_alpha) in enumerate(zip(sizes, alphas, strict=True)):
        rows = np.flatnonzero(active)
        counts[rows] += sample(rows, size - previous, 1 if stage == 0 else _STAGE_PURPOSE + stage)
        drawn[rows] = size
        previous = size
        step = certify_counts(counts[rows], stage_alpha, scale, noise, bound, top[rows], interval)
        # This stage replaces the kept one where it certifies the configured bound at least as far (a certified
        # stage over an uncertified one; later stages over earlier on ties, so an uncertified input keeps its last).
        was = certified[bound][rows]
        now = step.certified_by[bound]
        take = (now & ~was) | ((now == was) & (step.radii[bound] >= best[bound][rows]))
        kept = rows[take]
        for name in best:
            best[name][kept], certified[name][kept] = step.radii[name][take], step.certified_by[name][take]
        kept_counts[kept], kept_stage[kept] = counts[kept], stage
        p1_lower[kept], p2_upper[kept], pa_lower[kept] = step.p1_lower[take], step.p2_upper[take], step.pa_lower[take]
        if stage == len(sizes) - 1:
            break
        level = levels(best[bound][rows], certified[bound][rows], radii)
        reach = reachable_levels(
            counts[rows], top[rows], sizes[-1], alphas[-1], interval, radii, futility, scale, noise, bound
        )
        done = level >= reach
        active[rows[done]] = False
        if progress is not None:
            progress(int(done.sum()))
        if not active.any():
            break
    if progress is not None:
        progress(int(active.sum()))
    final = levels(best[bound], certified[bound], radii)
    return CertifyReport(
        prediction=np.where(certified[bound], top, -1),
        radius=best[bound],
        top=top,
        counts=kept_counts,
        n=int(sizes[-1]),
        n0=n0,
        alpha=float(sum(alphas)),
        p1_lower=p1_lower,
        p2_upper=p2_upper,
        radii=best,
        bound=bound,
        norm=2 if noise == "gaussian" else 1,
        pa_lower=pa_lower,
        interval=interval,
        certified_by=certified,
        samples=drawn + n0,
        requested_radii=radii,
        certified_radius=largest_certified(final, radii),
        stages=tuple(sizes),
        stage=kept_stage,
        stage_alpha=np.asarray(alphas, dtype=np.float64)[kept_stage],
    )


def _all_correct_samples(
    radius: float, n: int, alpha: float, scale: float, noise: str, bound: str, interval: str, nb_classes: int
) -> int | None:
    """
    The fewest estimation samples at which an input whose samples all fall in its top class is certified at
    `radius` (binary search: the certified radius of all-correct counts grows with their number).

    :return: That number, or None when even `n` samples do not reach `radius`.
    """

    def reaches(m: np.ndarray) -> np.ndarray:
        counts = np.zeros((len(m), nb_classes), dtype=np.int64)
        counts[:, 0] = m
        step = certify_counts(counts, alpha, scale, noise, bound, np.zeros(len(m), dtype=np.int64), interval)
        return step.certified_by[bound] & (step.radii[bound] >= radius)

    if not reaches(np.array([n]))[0]:
        return None
    lo, hi = 0, n  # reaches(hi) holds, reaches(lo) does not (0 samples certify nothing)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reaches(np.array([mid]))[0] else (mid, hi)
    return hi


def radius_stages(
    n: int,
    alpha: float,
    radii: Sequence[float],
    scale: float,
    noise: str = "gaussian",
    bound: str = "renyi",
    interval: str = "clopper-pearson",
    nb_classes: int = 10,
    fill: float | None = None,
) -> list[int]:
    """
    Stage sizes for sequential certification placed where the requested radii are decided: for each radius, the
    fewest samples at which an input whose samples all fall in its top class is certified at it, at the failure
    probability each early stage gets under :func:`art_stn.confidence.stage_schedule` (`alpha / 2` shared by the
    early stages, `alpha / 2` for the last, `n`). The schedule depends only on the settings, never on the data, so
    the union bound of :func:`art_stn.confidence.stage_schedule` holds as for any fixed schedule.

    An all-correct input is then decided at the stage of its radius, with `log(alpha_stage) / log(alpha)` times the
    samples an oracle knowing its top-class probability would need (about 1.4x for ten stages at alpha = 0.001),
    where doubling stages overshoot by up to another 2x. Inputs whose samples are not all correct go on to later
    stages, up to `n`.

    :param n: The most estimation samples per input (the last stage).
    :param alpha: The run's failure probability.
    :param radii: The requested radii (those the stopping rule decides at).
    :param scale: Gaussian sigma or Laplace lambda.
    :param noise: `"gaussian"` or `"laplace"`.
    :param bound: The bound that decides.
    :param interval: The interval of `p1_lower` / `p2_upper`.
    :param nb_classes: The number of classes.
    :param fill: With a ratio R > 1, stages are added so that consecutive sizes (up to `n`) grow by at most R,
           rounded up: more stages, each at a smaller share of `alpha / 2`, for inputs whose samples are not all
           correct (None: the radii's stages only).
    :return: Cumulative stage sizes, strictly increasing, below `n` (pass them as `stages`; `n` is appended there).
    """
    n = check_int(n, "n", 1)
    if fill is not None and (isinstance(fill, bool) or not isinstance(fill, (int, float)) or not fill > 1):
        raise ValueError(f"`fill` must be a ratio > 1 or None; got {fill!r}.")
    radii = sorted({float(r) for r in radii})
    stages = len(radii) + 1
    sizes: list[int] = []
    for _ in range(8):  # settle the number of stages, which sets each early stage's failure probability
        early = alpha / 2.0 / max(stages - 1, 1)
        found = {_all_correct_samples(r, n, early, scale, noise, bound, interval, nb_classes) for r in radii}
        sizes = sorted(m for m in found if m is not None and m < n)
        if fill is not None and sizes:
            grid = [sizes[0]]
            for size in [*sizes[1:], n]:
                while size / grid[-1] > fill:
                    grid.append(int(np.ceil(grid[-1] * fill)))
                grid.append(size)
            sizes = sorted(set(grid) - {n})
        if len(sizes) + 1 == stages:
            break
        stages = len(sizes) + 1
    return sizes
