"""
Certified radii of a smoothed classifier from its top-two class probabilities.

Pure numpy, vectorised over inputs: every function takes arrays (or scalars) ``p1`` and ``p2`` that broadcast
together with the noise scale, and returns an array of radii of the broadcast shape (a float for scalar input).

- :func:`renyi_l2_radius`: Theorem 2 of Li et al. (2019), Gaussian noise, L2 radius.
- :func:`laplace_l1_radius`: Theorem 3 of Li et al. (2019), Laplace noise, L1 radius.
- :func:`cohen_certify_l2_radius`: Cohen et al. (2019)'s CERTIFY, `sigma * Phi^-1(pA_lower)` (bound `"cohen"`).
- :func:`cohen_l2_radius`: Cohen et al. (2019), Theorem 1 with both bounds, the tight L2 radius for Gaussian noise
  given (p1, p2) (bound `"cohen-top2"`).
- :func:`pixeldp_l2_radius`: PixelDP (Lecuyer et al. 2019), the baseline of Li et al.'s Appendix A.

Except in :func:`cohen_certify_l2_radius`, ``p1`` is (a lower bound on) the probability of the top class and
``p2`` (an upper bound on) that of the runner-up, with ``0 <= p2 <= p1`` and ``p1 + p2 <= 1``. The radius is 0 when
``p1 == p2`` and ``inf`` only in the degenerate case where the bound itself is infinite (e.g. ``p1 = 1``);
Clopper-Pearson bounds from a finite number of samples never reach it.

Rounding only shrinks a radius: each function lowers its floating-point result by a bound on its own rounding error
(a few hundred units in the last place of the terms involved), so a computed radius never exceeds the exact value of
its formula. Near a tie (`p1` a few ulps above `p2`) the radius is then 0, not the rounding noise that a square root
would turn into a radius of about 1e-8.

| Paper link: https://arxiv.org/abs/1809.03113 (Li, Wang, Chen, Carin: Certified Adversarial Robustness with
  Additive Noise, NeurIPS 2019)
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

__all__ = ["renyi_l2_radius", "laplace_l1_radius", "cohen_certify_l2_radius", "cohen_l2_radius", "pixeldp_l2_radius"]

_LOG2 = float(np.log(2.0))
# Tolerance on p1 + p2 <= 1 for probabilities that went through floating-point arithmetic (e.g. 1 - p1_lower).
_SUM_TOL = 1e-9

# The Renyi search: log(alpha - 1) on a coarse grid, then golden-section refinement around the best grid point.
_RENYI_GRID = np.linspace(-12.0, 12.0, 33)
_GOLDEN_ITERATIONS = 36
_INV_PHI = (np.sqrt(5.0) - 1.0) / 2.0

# PixelDP: best radius over this grid of delta; epsilon is solved exactly for each delta (Gaussian mechanism, eps<=1).
_PIXELDP_DELTAS = np.logspace(-16.0, np.log10(0.5), 241)

# Rounding-error allowance, 16 units of the double-precision epsilon (2.2e-16): above the few ulps that each elementary
# operation (log, exp, expm1, log1p, ndtri, sqrt) contributes along a radius's chain, so that it is never rounded up.
_ULPS = 16.0 * np.finfo(np.float64).eps


def _shrink(value: np.ndarray, error: np.ndarray | float) -> np.ndarray:
    """
    `value` lowered by a bound on its absolute rounding error, and by its own relative rounding, never below 0.

    :param value: A computed, non-negative quantity.
    :param error: A bound on the absolute rounding error of `value` (0 for relative rounding only).
    :return: `max(value * (1 - _ULPS) - error, 0)`; infinite values stay infinite.
    """
    with np.errstate(invalid="ignore"):
        return np.where(np.isposinf(value), value, np.maximum(value * (1.0 - _ULPS) - error, 0.0))


def _as_probabilities(p1: np.ndarray | float, p2: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """
    Validate and broadcast the top-two probabilities.

    :param p1: Probability (lower bound) of the top class.
    :param p2: Probability (upper bound) of the runner-up class.
    :return: `p1` and `p2` as broadcast float64 arrays, with `p1 + p2` clipped to 1 where rounding pushed it over.
    :raises ValueError: if a value is NaN, outside [0, 1], `p1 < p2` or `p1 + p2 > 1`.
    """
    try:
        p1_a = np.asarray(p1, dtype=np.float64)
        p2_a = np.asarray(p2, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`p1` and `p2` must be numeric arrays or scalars: {err}") from err
    for name, arr in (("p1", p1_a), ("p2", p2_a)):
        if np.isnan(arr).any():
            raise ValueError(f"`{name}` contains NaN.")
        if ((arr < 0.0) | (arr > 1.0)).any():
            raise ValueError(f"`{name}` must lie in [0, 1]; got values in [{arr.min()}, {arr.max()}].")
    try:
        p1_a, p2_a = np.broadcast_arrays(p1_a, p2_a)
    except ValueError as err:
        raise ValueError(f"`p1` and `p2` must broadcast together: {err}") from err
    if (p1_a < p2_a).any():
        raise ValueError("`p1` must be >= `p2` (top class first); a certificate needs p1 > p2.")
    if (p1_a + p2_a > 1.0 + _SUM_TOL).any():
        raise ValueError("`p1 + p2` must be <= 1.")
    p2_a = np.minimum(p2_a, 1.0 - p1_a)
    p2_a = np.maximum(p2_a, 0.0)
    return p1_a.astype(np.float64, copy=True), p2_a.astype(np.float64, copy=True)


def _as_scale(scale: np.ndarray | float, name: str) -> np.ndarray:
    """
    Validate a noise scale (sigma or lambda).

    :param scale: The scale, a positive finite scalar or array.
    :param name: The argument's name, for the error message.
    :return: The scale as a float64 array.
    :raises ValueError: if a value is not finite or not positive.
    """
    try:
        arr = np.asarray(scale, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be a positive number or array of numbers: {err}") from err
    if not np.isfinite(arr).all() or (arr <= 0.0).any():
        raise ValueError(f"`{name}` must be finite and > 0; got {scale!r}.")
    return arr


def _result(radius: np.ndarray) -> np.ndarray | float:
    """
    Return a float for 0-d results and an array otherwise.

    :param radius: The computed radii.
    :return: `radius` itself, or a Python float when it is 0-dimensional.
    """
    return float(radius) if radius.ndim == 0 else radius


def _renyi_objective(log_am1: np.ndarray, p1: np.ndarray, p2: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """
    `L^2 / (2 sigma^2)` of Theorem 2 at `alpha = 1 + exp(log_am1)`.

    The generalised mean `M_{1-alpha}(p1, p2) = ((p1^(1-alpha) + p2^(1-alpha)) / 2)^(1/(1-alpha))` is taken in log
    space: with `b = 1 - alpha < 0`, `g = log p1 - log p2 >= 0` and the log-sum-exp written stably,
    `M = exp(log p2 + log1p(expm1(b g) / 2) / b)`, which is exact for `p2 = 0` (`g = inf`, `M = 0`), accurate as
    `alpha -> 1` and never overflows.

    :param log_am1: `log(alpha - 1)`, broadcastable with `p1`.
    :param p1: Top-class probability, `p1 > p2`.
    :param p2: Runner-up probability.
    :param gap: `log(p1) - log(p2)` (inf where `p2 == 0`).
    :return: `-log(1 - p1 - p2 + 2 M) / alpha`.
    """
    am1 = np.exp(log_am1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_ratio = np.log1p(0.5 * np.expm1(-am1 * gap)) / -am1  # log(M / p2), finite for every p2 >= 0
        deficit = np.clip(p1 + p2 - 2.0 * np.exp(np.log(p2) + log_ratio), 0.0, 1.0)
        return -np.log1p(-deficit) / (1.0 + am1)


def _renyi_limit_alpha_one(p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """
    The limit of the Theorem-2 objective as `alpha -> 1+` (the generalised mean tends to the geometric mean).

    :param p1: Top-class probability.
    :param p2: Runner-up probability.
    :return: `-log(1 - (sqrt(p1) - sqrt(p2))^2)`.
    """
    with np.errstate(divide="ignore"):
        return -np.log1p(-np.clip((np.sqrt(p1) - np.sqrt(p2)) ** 2, 0.0, 1.0))


def renyi_l2_radius(p1: np.ndarray | float, p2: np.ndarray | float, sigma: np.ndarray | float) -> np.ndarray | float:
    """
    Certified L2 radius of Gaussian smoothing by Renyi divergence (Li et al. 2019, Theorem 2).

    `L^2 = sup_{alpha > 1} -(2 sigma^2 / alpha) log(1 - p1 - p2 + 2 M_{1-alpha}(p1, p2))`, with `M_{1-alpha}` the
    generalised mean `((p1^(1-alpha) + p2^(1-alpha)) / 2)^(1/(1-alpha))`. The sup is found by a 1-D search over
    `log(alpha - 1)` in [-12, 12] (a coarse grid, then golden-section refinement around the best grid point,
    vectorised over inputs), together with the `alpha -> 1` limit; relative error < 1e-6 against a brute-force sup.

    :param p1: Lower bound on the top-class probability, in [0, 1].
    :param p2: Upper bound on the runner-up probability, in [0, p1] with `p1 + p2 <= 1`; 0 is allowed.
    :param sigma: Standard deviation of the Gaussian noise, > 0 (scalar or broadcastable array).
    :return: The radius, >= 0; 0 where `p1 == p2`, `inf` only where `p1 == 1`.
    :raises ValueError: on NaN, values outside [0, 1], `p1 < p2`, `p1 + p2 > 1` or `sigma <= 0`.
    """
    p1_a, p2_a = _as_probabilities(p1, p2)
    sigma_a = _as_scale(sigma, "sigma")
    shape = np.broadcast_shapes(p1_a.shape, sigma_a.shape)
    p1_f, p2_f = p1_a.ravel(), p2_a.ravel()
    best = np.zeros(p1_f.shape)
    active = p1_f > p2_f
    if active.any():
        q1, q2 = p1_f[active], p2_f[active]
        # Coarse grid: objective of shape (m, G).
        grid = _RENYI_GRID
        with np.errstate(divide="ignore"):
            gap = np.log(q1) - np.log(q2)
        values = _renyi_objective(grid[None, :], q1[:, None], q2[:, None], gap[:, None])
        idx = np.argmax(values, axis=1)
        step = grid[1] - grid[0]
        lo = grid[idx] - step
        hi = grid[idx] + step
        # Golden-section search on [lo, hi] for every input at once.
        c = hi - _INV_PHI * (hi - lo)
        d = lo + _INV_PHI * (hi - lo)
        fc = _renyi_objective(c, q1, q2, gap)
        fd = _renyi_objective(d, q1, q2, gap)
        for _ in range(_GOLDEN_ITERATIONS):
            left = fc >= fd  # the maximum lies in [lo, d]
            hi = np.where(left, d, hi)
            lo = np.where(left, lo, c)
            new_c = hi - _INV_PHI * (hi - lo)
            new_d = lo + _INV_PHI * (hi - lo)
            c_next = np.where(left, new_c, d)
            d_next = np.where(left, c, new_d)
            f_new = _renyi_objective(np.where(left, new_c, new_d), q1, q2, gap)
            fc, fd = np.where(left, f_new, fd), np.where(left, fc, f_new)
            c, d = c_next, d_next
        refined = np.maximum(np.maximum(fc, fd), values[np.arange(len(idx)), idx])
        value = np.maximum(refined, _renyi_limit_alpha_one(q1, q2))
        best[active] = _shrink(value, _renyi_error(q1, q2, value))
    half_l2_over_sigma2 = best.reshape(p1_a.shape)
    radius = _shrink(np.sqrt(2.0 * half_l2_over_sigma2) * sigma_a, 0.0)
    return _result(np.broadcast_to(radius, shape).astype(np.float64))


def _renyi_error(p1: np.ndarray, p2: np.ndarray, value: np.ndarray) -> np.ndarray:
    """
    A bound on the absolute rounding error of the Theorem-2 objective `-log(1 - d) / alpha` as computed by
    :func:`_renyi_objective` (and its `alpha -> 1` limit), where `d = p1 + p2 - 2 M`.

    `d` sums terms of size at most `p1 + p2` (the generalised mean `M` is at most the arithmetic mean); the log-space
    mean carries the rounding of `log p1` and `log p2`, so the error of `d` is at most a few ulps of
    `(p1 + p2) (2 + |log p1| + |log p2|)` (tracing the chain gives at most `(p1 + p2)(6 + 10 (|log p1| + |log p2|))`
    ulps, below the 16 ulps per unit of that factor used here), and `-log(1 - d)` multiplies it by `1 / (1 - d)`,
    which is at most `1 / (1 - p1)`: `1 - d = 1 - p1 - p2 + 2 M` and `M >= p2` (a mean of `p1 >= p2`).

    :param p1: Top-class probabilities (`> p2`).
    :param p2: Runner-up probabilities.
    :param value: The computed objective.
    :return: The error bound, >= 0.
    """
    with np.errstate(divide="ignore"):
        logs = np.abs(np.log(p1)) + np.where(p2 > 0, np.abs(np.log(np.where(p2 > 0, p2, 1.0))), 0.0)
        amplification = 1.0 / np.maximum(1.0 - p1, np.finfo(np.float64).tiny)
    # With p2 = 0 the mean is exactly 0 and d = p1 exactly: only the final log and division round.
    return _ULPS * (np.where(p2 > 0, (p1 + p2) * (2.0 + logs) * amplification, 0.0) + value)


def laplace_l1_radius(p1: np.ndarray | float, p2: np.ndarray | float, scale: np.ndarray | float) -> np.ndarray | float:
    """
    Certified L1 radius of Laplace smoothing (Li et al. 2019, Theorem 3): `L = -scale * log(1 - p1 + p2)`.

    In the binary case `p1 + p2 = 1` it equals the tight `-scale * log(2 (1 - p1))`.

    :param p1: Lower bound on the top-class probability, in [0, 1].
    :param p2: Upper bound on the runner-up probability, in [0, p1] with `p1 + p2 <= 1`.
    :param scale: Scale `lambda` of the Laplace noise (density `exp(-|x|/lambda) / (2 lambda)`), > 0.
    :return: The L1 radius, >= 0; 0 where `p1 == p2`, `inf` where `p1 == 1`.
    :raises ValueError: on NaN, values outside [0, 1], `p1 < p2`, `p1 + p2 > 1` or `scale <= 0`.
    """
    p1_a, p2_a = _as_probabilities(p1, p2)
    scale_a = _as_scale(scale, "scale")
    with np.errstate(divide="ignore"):
        # 1 - p1 is exact for p1 >= 1/2 (Sterbenz), so log((1 - p1) + p2) has only relative rounding however close
        # p1 is to 1; below 1/2, 1 - (p1 - p2) >= 1/2 and log1p is well conditioned.
        radius = -scale_a * np.where(p1_a >= 0.5, np.log((1.0 - p1_a) + p2_a), np.log1p(-(p1_a - p2_a)))
    return _result(_shrink(np.maximum(radius, 0.0), scale_a * _ULPS))


def cohen_l2_radius(p1: np.ndarray | float, p2: np.ndarray | float, sigma: np.ndarray | float) -> np.ndarray | float:
    """
    Certified L2 radius of Gaussian smoothing by Cohen et al. (2019, Theorem 1 with both bounds):
    `L = sigma / 2 (Phi^-1(p1) - Phi^-1(p2))`, the bound `"cohen-top2"`.

    Tight for Gaussian noise given (p1, p2); beyond the paper of Li et al., reported so users can compare. Pass
    `p2 = 1 - p1` for Cohen's one-class form `sigma * Phi^-1(p1)` (only p1 bounded; see
    :func:`cohen_certify_l2_radius` for the rule of their CERTIFY).

    :param p1: Lower bound on the top-class probability, in [0, 1].
    :param p2: Upper bound on the runner-up probability, in [0, p1] with `p1 + p2 <= 1`.
    :param sigma: Standard deviation of the Gaussian noise, > 0.
    :return: The radius, >= 0; 0 where `p1 == p2`, `inf` where `p1 == 1` or `p2 == 0`.
    :raises ValueError: on NaN, values outside [0, 1], `p1 < p2`, `p1 + p2 > 1` or `sigma <= 0`.
    """
    p1_a, p2_a = _as_probabilities(p1, p2)
    sigma_a = _as_scale(sigma, "sigma")
    with np.errstate(invalid="ignore"):
        z1, z2 = ndtri(p1_a), ndtri(p2_a)
        radius = 0.5 * sigma_a * (z1 - z2)
        error = 0.5 * sigma_a * _ULPS * (np.abs(z1) + np.abs(z2))  # ndtri's few ulps, before the difference cancels
    radius = np.where(np.broadcast_to(p1_a == p2_a, radius.shape), 0.0, radius)
    radius = np.where(np.isfinite(radius), _shrink(np.nan_to_num(radius, posinf=0.0), np.nan_to_num(error)), radius)
    return _result(np.maximum(radius, 0.0))


def cohen_certify_l2_radius(pa_lower: np.ndarray | float, sigma: np.ndarray | float) -> np.ndarray | float:
    """
    Certified L2 radius of Cohen et al.'s CERTIFY (2019, and ART's `RandomizedSmoothingMixin.certify`):
    `sigma * Phi^-1(pA_lower)`, where `pA_lower` is a lower confidence bound on the top-class probability alone.

    Their procedure abstains when `pA_lower < 0.5`; this function returns 0 there (and exactly 0 at 0.5, where the
    reference code certifies with radius 0). It equals `cohen_l2_radius(pA_lower, 1 - pA_lower, sigma)`: Theorem 1
    with the runner-up bounded by `1 - pA_lower`.

    :param pa_lower: Lower confidence bound on the top-class probability, in [0, 1].
    :param sigma: Standard deviation of the Gaussian noise, > 0.
    :return: The radius, >= 0; `inf` where `pa_lower == 1`.
    :raises ValueError: on NaN, values outside [0, 1] or `sigma <= 0`.
    """
    pa = np.asarray(pa_lower, dtype=np.float64)
    if np.isnan(pa).any() or ((pa < 0.0) | (pa > 1.0)).any():
        raise ValueError("`pa_lower` must lie in [0, 1] and not be NaN.")
    sigma_a = _as_scale(sigma, "sigma")
    radius = sigma_a * ndtri(np.maximum(pa, 0.5))
    return _result(_shrink(np.maximum(radius, 0.0), 0.0))


def pixeldp_l2_radius(p1: np.ndarray | float, p2: np.ndarray | float, sigma: np.ndarray | float) -> np.ndarray | float:
    """
    Certified L2 radius of PixelDP (Lecuyer et al. 2019), the baseline of Li et al. (2019, Appendix A).

    Gaussian noise of standard deviation `sigma` is the (eps, delta) Gaussian mechanism (eps <= 1) for an L2
    sensitivity `L = sigma * eps / sqrt(2 log(1.25 / delta))`; the prediction is robust at that radius when
    `p1 > e^(2 eps) p2 + (1 + e^eps) delta`. For each delta on a log grid in [1e-16, 0.5] the largest feasible eps
    is solved in closed form (a quadratic in `e^eps`), and the best radius over the grid is returned, as the paper
    did for its comparison.

    :param p1: Lower bound on the top-class probability, in [0, 1].
    :param p2: Upper bound on the runner-up probability, in [0, p1] with `p1 + p2 <= 1`.
    :param sigma: Standard deviation of the Gaussian noise, > 0.
    :return: The radius, >= 0 (0 where no (eps, delta) on the grid certifies).
    :raises ValueError: on NaN, values outside [0, 1], `p1 < p2`, `p1 + p2 > 1` or `sigma <= 0`.
    """
    p1_a, p2_a = _as_probabilities(p1, p2)
    sigma_a = _as_scale(sigma, "sigma")
    best = np.zeros(p1_a.shape)
    for delta in _PIXELDP_DELTAS:
        slack = p1_a - delta
        # Largest u = e^eps with p2 u^2 + delta u - (p1 - delta) <= 0, in a form stable for p2 -> 0.
        with np.errstate(divide="ignore", invalid="ignore"):
            u_max = 2.0 * slack / (delta + np.sqrt(delta * delta + 4.0 * p2_a * np.maximum(slack, 0.0)))
            eps = np.minimum(np.log(u_max), 1.0)
            eps = eps - _ULPS * (1.0 + np.abs(np.log(delta)))  # the rounding of u_max and of the slack
        eps = np.where((slack > 0) & np.isfinite(eps) & (eps > 0), eps, 0.0)
        best = np.maximum(best, eps / np.sqrt(2.0 * np.log(1.25 / delta)))
    return _result(best * sigma_a)
