"""
Confidence bounds on the class probabilities of a smoothed classifier, from Monte Carlo class counts.

Pure numpy/scipy, vectorised over inputs. With counts of shape `(N, k)` from `n` noisy samples per input:

- :func:`top_two` picks the top class (or takes one selected elsewhere, e.g. from `n0` separate samples) and the
  runner-up count.
- :func:`clopper_pearson_lower` / :func:`clopper_pearson_upper` are exact one-sided binomial bounds
  (`scipy.stats.beta` quantiles).
- :func:`top_two_bounds` gives `p1_lower` and `p2_upper`, each at level `alpha / 2` (Bonferroni, so both hold
  together with probability >= 1 - alpha), with `p2_upper` clipped to `1 - p1_lower`; or, with
  `interval="sison-glaz"` / `"goodman"`, from simultaneous multinomial intervals (statsmodels), each bound
  widened to the Clopper-Pearson one where the approximation claims more.
- :func:`stage_schedule` gives the sample sizes and failure probabilities of the stages of sequential
  certification.
- :func:`abstain_pvalue` is the two-sided binomial test of the top two counts that `predict` uses to abstain
  (Cohen et al. 2019, Algorithm PREDICT).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta, binom

from art_stn.validation import check_alpha

__all__ = [
    "INTERVALS",
    "TopTwoBounds",
    "abstain_pvalue",
    "check_alpha",
    "check_counts",
    "check_interval",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "multinomial_top_two",
    "stage_schedule",
    "top_two",
    "top_two_bounds",
]

#: Confidence intervals for `p1_lower` / `p2_upper` (the first is the default): one-sided Clopper-Pearson bounds
#: with Bonferroni (the paper's text), or statsmodels' simultaneous multinomial intervals (the reference code's).
INTERVALS = ("clopper-pearson", "sison-glaz", "goodman")
#: Sison-Glaz intervals are only valid with this many classes or more (statsmodels; Sison and Glaz 1995).
SISON_GLAZ_MIN_CLASSES = 7


def check_interval(interval: str, nb_classes: int | None = None) -> str:
    """
    Validate the name of a confidence interval.

    :param interval: One of :data:`INTERVALS`.
    :param nb_classes: The number of classes, if known: `"sison-glaz"` needs at least
           :data:`SISON_GLAZ_MIN_CLASSES` (with fewer it under-covers: see the Guarantees page).
    :return: The name.
    :raises ValueError: for an unknown name, or Sison-Glaz with too few classes.
    """
    if interval not in INTERVALS:
        raise ValueError(f"`interval` must be one of {INTERVALS}; got {interval!r}.")
    if interval == "sison-glaz" and nb_classes is not None and nb_classes < SISON_GLAZ_MIN_CLASSES:
        raise ValueError(
            f"`interval='sison-glaz'` needs at least {SISON_GLAZ_MIN_CLASSES} classes (the method's validity "
            f"condition; with {nb_classes} it under-covers); use 'clopper-pearson' or 'goodman'."
        )
    return interval


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
    :param p1_lower: Lower bound on the top-class probability (level alpha / 2 for Clopper-Pearson).
    :param p2_upper: Upper bound on the runner-up probability (level alpha / 2 for Clopper-Pearson), at most
           `1 - p1_lower`.
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


def _degenerate(region: np.ndarray, row: np.ndarray) -> bool:
    """
    :param region: A simultaneous region from statsmodels, shape `(k, 2)`.
    :param row: The counts it was computed from.
    :return: True when the region says nothing usable: a NaN, an interval of zero width or none (lower >= upper),
             one that leaves out its class's observed frequency, or `[0, 1]` for every class (no width was found).
    """
    freq = row / row.sum()
    lower, upper = region[:, 0], region[:, 1]
    if not np.all(np.isfinite(region)) or np.any(lower >= upper):
        return True
    if np.any(lower > freq + 1e-12) or np.any(upper < freq - 1e-12):
        return True
    return bool(np.all(lower <= 0.0) and np.all(upper >= 1.0))


def multinomial_top_two(
    counts: np.ndarray, alpha: float, top: np.ndarray, method: str
) -> tuple[np.ndarray, np.ndarray]:
    """
    `p1_lower` and `p2_upper` from statsmodels' simultaneous multinomial intervals, never tighter than the
    Clopper-Pearson bounds with Bonferroni.

    `multinomial_proportions_confint(row, alpha, method)` bounds every class probability at once with approximate
    probability >= 1 - alpha. Both methods rest on large-sample approximations and can claim more than the data
    allow: on counts with every sample on one class, Sison-Glaz returns the zero-width interval `[1, 1]` (an infinite
    radius from a single sample) and Goodman a lower end above `alpha^(1/n)`, the most any valid (1 - alpha) lower
    bound can be there. So each bound is taken at the wider of the method's and Clopper-Pearson's with Bonferroni
    (:func:`top_two_bounds`' default): `p1_lower = min(method, CP lower at alpha / 2)`, `p2_upper = max(method, CP
    upper at alpha / 2)`. Being at least as wide as bounds that hold together with probability >= 1 - alpha exactly,
    they hold with that probability too, whatever the approximation does. A degenerate region (a NaN, an interval of
    zero width or none, one that leaves out its class's observed frequency, or `[0, 1]` for every class, as
    Sison-Glaz gives for `[99, 1, 0, ...]`) is replaced by the Clopper-Pearson bounds themselves.
    `p1_lower` is the lower end for the top class, `p2_upper` the largest upper end among the other classes,
    clipped to `1 - p1_lower`. Rows repeat often (e.g. all samples on one class), so each distinct `(row, top)` is
    computed once.

    :param counts: Validated class counts of shape `(N, k)`.
    :param alpha: Failure probability of the simultaneous intervals, in (0, 1).
    :param top: Top class per input, shape `(N,)`.
    :param method: `"sison-glaz"` or `"goodman"`.
    :return: `(p1_lower, p2_upper)`.
    """
    from statsmodels.stats.proportion import multinomial_proportions_confint

    p1_lower = np.empty(counts.shape[0])
    p2_upper = np.empty(counts.shape[0])
    cache: dict[tuple[bytes, int], tuple[float, float]] = {}
    for i, (row, t) in enumerate(zip(counts, top, strict=True)):
        key = (row.tobytes(), int(t))
        if key not in cache:
            n, c2 = int(row.sum()), int(np.max(np.delete(row, t)))
            lower = float(clopper_pearson_lower(row[t], n, alpha / 2.0))
            upper = float(clopper_pearson_upper(c2, n, alpha / 2.0))
            try:
                with np.errstate(all="ignore"):
                    region = np.asarray(multinomial_proportions_confint(row, alpha=alpha, method=method), dtype=float)
            except (ValueError, ZeroDivisionError, FloatingPointError):
                region = np.full((len(row), 2), np.nan)
            if not _degenerate(region, row):
                region = np.clip(region, 0.0, 1.0)
                lower = min(lower, float(region[t, 0]))
                upper = max(upper, float(np.max(np.delete(region[:, 1], t))))
            cache[key] = (lower, min(upper, 1.0 - lower))
        p1_lower[i], p2_upper[i] = cache[key]
    return p1_lower, p2_upper


def top_two_bounds(
    counts: np.ndarray, alpha: float, top: np.ndarray | None = None, interval: str = "clopper-pearson"
) -> TopTwoBounds:
    """
    `p1_lower` and `p2_upper` from class counts: one-sided Clopper-Pearson bounds at `alpha / 2` each (default), or
    simultaneous multinomial intervals at level `alpha`, never tighter than those (:func:`multinomial_top_two`).

    With Clopper-Pearson, both bounds hold together with probability >= 1 - alpha by Bonferroni; the multinomial
    intervals, at least as wide, hold with that probability too. In every case
    `p2_upper` is clipped to `1 - p1_lower`, since the two probabilities sum to at most 1.

    :param counts: Class counts of shape `(N, k)` (each row sums to the number of samples n).
    :param alpha: Failure probability of the pair of bounds, in (0, 1).
    :param top: Optional top class per input, selected from separate samples; by default the argmax of `counts`.
    :param interval: One of :data:`INTERVALS`.
    :return: The bounds, as a :class:`TopTwoBounds`.
    """
    alpha = check_alpha(alpha)
    counts = check_counts(counts)
    interval = check_interval(interval, counts.shape[1])
    top, c1, c2 = top_two(counts, top)
    n = counts.sum(axis=1)
    if interval == "clopper-pearson":
        p1_lower = clopper_pearson_lower(c1, n, alpha / 2.0)
        p2_upper = np.minimum(clopper_pearson_upper(c2, n, alpha / 2.0), 1.0 - p1_lower)
    else:
        p1_lower, p2_upper = multinomial_top_two(counts, alpha, top, interval)
    return TopTwoBounds(top=top, count1=c1, count2=c2, n=n, p1_lower=p1_lower, p2_upper=p2_upper)


def stage_schedule(
    n: int, alpha: float, stages: Sequence[int] | None = None, first: int = 100, growth: int = 2
) -> tuple[list[int], list[float]]:
    """
    The stages of sequential certification: cumulative sample sizes and the failure probability spent at each.

    Sizes are `stages` (strictly increasing, each <= n; n is appended when the last is below it) or, by default,
    `first, first * growth, first * growth^2, ...` below n, then n: 100, 200, 400, ..., 6400, 10000 for n = 10,000.
    Doubling keeps the samples an input spends within twice what it needed, whatever it needed. The failure
    probability is spent by a union bound: the last stage (where the hardest inputs are decided) gets `alpha / 2`,
    the earlier stages share the other half equally; one stage gets all of `alpha`. The probabilities sum to
    `alpha`.

    :param n: The largest number of estimation samples per input (N_max), >= 1.
    :param alpha: The total failure probability, in (0, 1).
    :param stages: Explicit cumulative stage sizes, or None for the geometric default.
    :param first: The first stage of the default schedule, >= 1.
    :param growth: The ratio of consecutive stages of the default schedule, >= 2.
    :return: `(sizes, alphas)`, two lists of one length.
    :raises ValueError: on sizes that are not strictly increasing positive integers <= n.
    """
    alpha = check_alpha(alpha)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"`n` must be an integer >= 1; got {n!r}.")
    if stages is None:
        if isinstance(first, bool) or not isinstance(first, (int, np.integer)) or first < 1:
            raise ValueError(f"`first` must be an integer >= 1; got {first!r}.")
        if isinstance(growth, bool) or not isinstance(growth, (int, np.integer)) or growth < 2:
            raise ValueError(f"`growth` must be an integer >= 2; got {growth!r}.")
        sizes = []
        size = int(first)
        while size < n:
            sizes.append(size)
            size *= int(growth)
    else:
        sizes = list(stages)
        if not sizes or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in sizes):
            raise ValueError(f"`stages` must be a non-empty list of integers; got {stages!r}.")
        sizes = [int(s) for s in sizes]
        if sizes[0] < 1 or any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)) or sizes[-1] > n:
            raise ValueError(f"`stages` must be strictly increasing sizes in [1, n={n}]; got {stages!r}.")
    if not sizes or sizes[-1] < n:
        sizes.append(int(n))
    if len(sizes) == 1:
        return sizes, [alpha]
    early = alpha / 2.0 / (len(sizes) - 1)
    return sizes, [early] * (len(sizes) - 1) + [alpha / 2.0]


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
