"""
Cohen's CERTIFY rule: `certify_counts(..., bound="cohen")` against a direct implementation and against ART.

On a grid of count vectors (n in {100, 1,000, 10,000, 100,000}, alpha in {0.001, 0.05}, sigma in {0.25, 0.5, 1.0};
top-class counts: every edge case below plus `--random` seeded uniform draws from (n/2, n]) it computes the radius
three ways and prints, per (n, alpha) and in total, the certifications (count vectors x sigmas), how many abstain,
the abstention disagreements and the largest absolute radius difference:

- `art-stn`: `certify_counts(counts, alpha, sigma, bound="cohen", top=0)`, the top class given as if selected on
  separate `n0` samples (its other classes share the rest of the `n` samples at random);
- direct: Cohen et al.'s CERTIFY written out here: `pa_lower = scipy.stats.beta.ppf(alpha, c, n - c + 1)` (the
  one-sided Clopper-Pearson lower bound at level alpha), abstain if `pa_lower < 0.5`, else radius
  `sigma * Phi^-1(pa_lower)`;
- ART 1.20: `RandomizedSmoothingMixin._lower_confidence_bound` (statsmodels' `proportion_confint(c, n,
  alpha=2 * alpha, method="beta")[0]`), called as ART calls it, then the rule of ART's
  `RandomizedSmoothingMixin.certify` (art/estimators/certification/randomized_smoothing/randomized_smoothing.py,
  ART 1.20.1 lines 170-178: `if prob_class < 0.5:` abstain with radius 0.0, else radius
  `self.scale * norm.ppf(prob_class)`).

Edge cases per (n, alpha): `c = floor(n/2) + 1`, `n - 1`, `n`, and the three counts around the smallest `c` that
certifies (where `pa_lower` crosses 0.5).

Usage: `python benchmarks/cohen_agreement.py [--random 500] [--seed 0]`.
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import numpy as np
from art.estimators.certification.randomized_smoothing.randomized_smoothing import RandomizedSmoothingMixin
from scipy.stats import beta, norm

try:
    from art_stn.classifier import certify_counts
except ImportError:  # moved by a refactoring
    from art_stn.certification import certify_counts

NS = (100, 1_000, 10_000, 100_000)
ALPHAS = (0.001, 0.05)
SIGMAS = (0.25, 0.5, 1.0)
CLASSES = 10


def direct_certify(c: np.ndarray, n: int, alpha: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """
    Cohen et al.'s CERTIFY on top-class counts.

    :param c: Top-class counts out of `n`.
    :param n: Estimation samples.
    :param alpha: Failure probability.
    :param sigma: Gaussian sigma.
    :return: `(certified, radius)`, radius 0 where it abstains.
    """
    pa_lower = beta.ppf(alpha, c, n - c + 1)
    certified = pa_lower >= 0.5
    return certified, np.where(certified, sigma * norm.ppf(pa_lower), 0.0)


def art_certify(c: np.ndarray, n: int, alpha: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """
    ART 1.20's `RandomizedSmoothingMixin.certify` rule on top-class counts, with ART's own lower-bound helper.

    :param c: Top-class counts out of `n`.
    :param n: Estimation samples.
    :param alpha: Failure probability.
    :param sigma: Gaussian sigma (ART's `scale`).
    :return: `(certified, radius)`, radius 0 where it abstains.
    """
    estimator = SimpleNamespace(alpha=alpha, scale=sigma)
    certified, radius = [], []
    for count in c:
        prob_class = RandomizedSmoothingMixin._lower_confidence_bound(estimator, int(count), n)
        certified.append(not prob_class < 0.5)
        radius.append(0.0 if prob_class < 0.5 else estimator.scale * norm.ppf(prob_class))
    return np.array(certified), np.array(radius)


def top_counts(n: int, alpha: float, extra: int, rng: np.random.Generator) -> np.ndarray:
    """
    The top-class counts of one (n, alpha) cell: the edge cases and `extra` uniform draws from (n/2, n].

    :return: Counts, int64.
    """
    c = np.arange(n // 2 + 1, n + 1)
    first = int(c[np.argmax(beta.ppf(alpha, c, n - c + 1) >= 0.5)])  # smallest certifying count
    edges = [n // 2 + 1, n - 1, n, first - 1, first, first + 1]
    return np.concatenate([edges, rng.integers(n // 2 + 1, n + 1, size=extra)]).astype(np.int64)


def count_matrix(c: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """
    Class-count rows with `c` in class 0 and the other `n - c` samples spread at random over the other classes.

    :return: Counts of shape `(len(c), CLASSES)`.
    """
    rest = np.stack([rng.multinomial(n - k, np.full(CLASSES - 1, 1 / (CLASSES - 1))) for k in c])
    return np.column_stack([c, rest])


def row(n: str, alpha: str, cell: dict) -> str:
    """
    :return: One Markdown table row of the figures in `cell`.
    """
    disagree = f"{cell['abstain_direct']} / {cell['abstain_art']}"
    diffs = f"{cell['diff_direct']:.1e} | {cell['diff_art']:.1e}"
    return f"| {n} | {alpha} | {cell['vectors']:,} | {cell['abstentions']:,} | {disagree} | {diffs} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--random", type=int, default=500, help="random top counts per (n, alpha)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print("| n | alpha | certifications | abstentions | abstain disagreements vs direct / vs ART | "
          "max abs radius diff vs direct | vs ART |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|")
    keys = ("vectors", "abstentions", "abstain_direct", "abstain_art", "diff_direct", "diff_art")
    total = dict.fromkeys(keys, 0)
    for n in NS:
        for alpha in ALPHAS:
            c = top_counts(n, alpha, args.random, rng)
            counts = count_matrix(c, n, rng)
            cell = dict.fromkeys(keys, 0)
            for sigma in SIGMAS:
                report = certify_counts(counts, alpha, sigma, bound="cohen", top=np.zeros(len(c), dtype=np.int64))
                ours, radius = report.prediction >= 0, report.radius
                for name, (ok, r) in {"direct": direct_certify(c, n, alpha, sigma),
                                      "art": art_certify(c, n, alpha, sigma)}.items():  # fmt: skip
                    cell[f"abstain_{name}"] += int(np.sum(ok != ours))
                    cell[f"diff_{name}"] = max(cell[f"diff_{name}"], float(np.max(np.abs(r - radius))))
                cell["vectors"] += len(c)
                cell["abstentions"] += int(np.sum(~ours))
            print(row(f"{n:,}", f"{alpha:g}", cell))
            for key in total:
                total[key] = max(total[key], cell[key]) if key.startswith("diff") else total[key] + cell[key]
    print(row("all", "", total))


if __name__ == "__main__":
    main()
