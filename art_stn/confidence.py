"""
Confidence bounds on the class probabilities of a smoothed classifier, from Monte Carlo class counts.

Pure numpy/scipy, vectorised over inputs. With counts of shape `(N, k)` from `n` noisy samples per input:

- :func:`top_two` picks the top class (or takes one selected elsewhere, e.g. from `n0` separate samples) and the
  runner-up count.
- :func:`clopper_pearson_lower` / :func:`clopper_pearson_upper` are exact one-sided binomial bounds
  (`scipy.stats.beta` quantiles).
- :func:`top_two_bounds` gives `p1_lower` and `p2_upper`, each at level `alpha / 2` (Bonferroni, so both hold
  together with probability >= 1 - alpha), with `p2_upper` clipped to `1 - p1_lower`.
- :func:`abstain_pvalue` is the two-sided binomial test of the top two counts that `predict` uses to abstain
  (Cohen et al. 2019, Algorithm PREDICT).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import beta, binom

__all__ = [
    "TopTwoBounds",
    "abstain_pvalue",
    "check_alpha",
    "check_counts",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "top_two",
    "top_two_bounds",
]


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """
    Validate a failure probability.

    :param alpha: The failure probability, in the open interval (0, 1).
    :param name: The argument's name, for the error message.
    :return: `alpha` as a float.
    :raises TypeError: if `alpha` is not a real number.
    :raises ValueError: if `alpha` is not in (0, 1).
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a float in (0, 1); got {type(alpha).__name__}.")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"`{name}` must lie in the open interval (0, 1); got {alpha!r}.")
    return float(alpha)


def check_counts(counts: np.ndarray, name: str = "counts") -> np.ndarray:
    """
    Validate class counts.

    :param counts: Non-negative integer counts of shape `(N, k)` with `k >= 2` and at least one sample per row.
    :param name: The argument's name, for the error message.
    :return: The counts as an int64 array.
    :raises ValueError: on a wrong shape, negative or non-integer values, or an empty row.
    """
    arr = np.asarray(counts)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"`{name}` must have shape (N, k) with k >= 2 classes; got shape {arr.shape}.")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind != "f" or not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"`{name}` must hold integer counts.")
    if (arr < 0).any():
        raise ValueError(f"`{name}` must be non-negative.")
    arr = arr.astype(np.int64)
    if arr.shape[0] and (arr.sum(axis=1) < 1).any():
        raise ValueError(f"every row of `{name}` needs at least one sample (n >= 1).")
    return arr


def clopper_pearson_lower(k: np.ndarray | int, n: np.ndarray | int, alpha: float) -> np.ndarray:
    """
    One-sided Clopper-Pearson lower bound: `P(p >= bound) >= 1 - alpha` for `k ~ Binomial(n, p)`.

    :param k: Number of successes, `0 <= k <= n`.
    :param n: Number of trials, >= 1.
    :param alpha: Failure probability of the bound, in (0, 1).
    :return: The lower bound, `beta.ppf(alpha, k, n - k + 1)` (0 where `k == 0`).
    """
    alpha = check_alpha(alpha)
    k_a, n_a = np.broadcast_arrays(np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64))
    if (n_a < 1).any() or (k_a < 0).any() or (k_a > n_a).any():
        raise ValueError("need 0 <= k <= n and n >= 1.")
    with np.errstate(invalid="ignore"):
        bound = beta.ppf(alpha, k_a, n_a - k_a + 1.0)
    return np.where(k_a == 0, 0.0, bound)


def clopper_pearson_upper(k: np.ndarray | int, n: np.ndarray | int, alpha: float) -> np.ndarray:
    """
    One-sided Clopper-Pearson upper bound: `P(p <= bound) >= 1 - alpha` for `k ~ Binomial(n, p)`.

    :param k: Number of successes, `0 <= k <= n`.
    :param n: Number of trials, >= 1.
    :param alpha: Failure probability of the bound, in (0, 1).
    :return: The upper bound, `beta.ppf(1 - alpha, k + 1, n - k)` (1 where `k == n`).
    """
    alpha = check_alpha(alpha)
    k_a, n_a = np.broadcast_arrays(np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64))
    if (n_a < 1).any() or (k_a < 0).any() or (k_a > n_a).any():
        raise ValueError("need 0 <= k <= n and n >= 1.")
    with np.errstate(invalid="ignore"):
        bound = beta.isf(alpha, k_a + 1.0, n_a - k_a)
    return np.where(k_a == n_a, 1.0, bound)


def top_two(counts: np.ndarray, top: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    The top class and the counts of the top class and of the runner-up.

    :param counts: Class counts of shape `(N, k)`.
    :param top: Optional top class per input, shape `(N,)`, selected elsewhere (Cohen et al.'s `n0` samples); by
                default the argmax of `counts` (ties broken towards the lower class index).
    :return: `(top, c1, c2)`: the top class, its count, and the largest count among the other classes.
    """
    counts = check_counts(counts)
    if top is None:
        top = np.argmax(counts, axis=1)
    else:
        top = np.asarray(top)
        if top.shape != (counts.shape[0],) or top.dtype.kind not in "iu":
            raise ValueError(f"`top` must be integer class indices of shape ({counts.shape[0]},).")
        if ((top < 0) | (top >= counts.shape[1])).any():
            raise ValueError("`top` holds a class index outside [0, k).")
    rows = np.arange(counts.shape[0])
    c1 = counts[rows, top]
    others = counts.copy()
    others[rows, top] = -1
    c2 = others.max(axis=1)
    return top.astype(np.int64), c1, c2


@dataclass(frozen=True)
class TopTwoBounds:
    """
    Simultaneous confidence bounds on the top-two class probabilities.

    :param top: Top class per input, shape `(N,)`.
    :param count1: Count of the top class.
    :param count2: Count of the runner-up class.
    :param n: Number of samples per input.
    :param p1_lower: Lower bound on the top-class probability (level alpha / 2).
    :param p2_upper: Upper bound on the runner-up probability (level alpha / 2), at most `1 - p1_lower`.
    """

    top: np.ndarray
    count1: np.ndarray
    count2: np.ndarray
    n: np.ndarray
    p1_lower: np.ndarray
    p2_upper: np.ndarray

    @property
    def certified(self) -> np.ndarray:
        """
        Boolean mask of the inputs with a certificate: `p1_lower > p2_upper`.
        """
        return self.p1_lower > self.p2_upper


def top_two_bounds(counts: np.ndarray, alpha: float, top: np.ndarray | None = None) -> TopTwoBounds:
    """
    `p1_lower` and `p2_upper` from class counts, by one-sided Clopper-Pearson bounds at `alpha / 2` each.

    By Bonferroni both bounds hold together with probability >= 1 - alpha. `p2_upper` is clipped to
    `1 - p1_lower`, since the two probabilities sum to at most 1.

    :param counts: Class counts of shape `(N, k)` (each row sums to the number of samples n).
    :param alpha: Failure probability of the pair of bounds, in (0, 1).
    :param top: Optional top class per input, selected from separate samples; by default the argmax of `counts`.
    :return: The bounds, as a :class:`TopTwoBounds`.
    """
    alpha = check_alpha(alpha)
    counts = check_counts(counts)
    top, c1, c2 = top_two(counts, top)
    n = counts.sum(axis=1)
    p1_lower = clopper_pearson_lower(c1, n, alpha / 2.0)
    p2_upper = np.minimum(clopper_pearson_upper(c2, n, alpha / 2.0), 1.0 - p1_lower)
    return TopTwoBounds(top=top, count1=c1, count2=c2, n=n, p1_lower=p1_lower, p2_upper=p2_upper)


def abstain_pvalue(count1: np.ndarray | int, count2: np.ndarray | int) -> np.ndarray:
    """
    Two-sided binomial test p-value that the top two classes are equally likely (Cohen et al.'s PREDICT).

    Equals `scipy.stats.binomtest(count1, count1 + count2, 0.5).pvalue`, vectorised: for the symmetric null it is
    `min(1, 2 * P(Binomial(count1 + count2, 1/2) <= min(count1, count2)))`. `predict` abstains where it exceeds alpha.

    :param count1: Count of the top class.
    :param count2: Count of the runner-up class.
    :return: The p-values (1 where both counts are 0).
    """
    c1, c2 = np.broadcast_arrays(np.asarray(count1, dtype=np.int64), np.asarray(count2, dtype=np.int64))
    if (c1 < 0).any() or (c2 < 0).any():
        raise ValueError("counts must be non-negative.")
    total = c1 + c2
    smaller = np.minimum(c1, c2)
    pvalue = np.minimum(1.0, 2.0 * binom.cdf(smaller, total, 0.5))
    return np.where(total == 0, 1.0, pvalue)
