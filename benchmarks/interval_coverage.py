"""
Coverage of the `interval` choices: the statistical soundness suite's repeated certifications, as a table.

Reuses `tests/soundness/test_statistical.py` (its closed-form classifiers, settings, seeds, alpha = 0.05, n = 200,
n0 = 20 and its tolerance: the 1 - 1e-6 quantile of Binomial(repeats, alpha)) and prints, per interval and setting,
the repeated certifications, the violations (the selected class's probability below `p1_lower`, or the largest
other probability above `p2_upper`), their rate, alpha, the tolerance and whether the count is within it.

Rows:
- `clopper-pearson` and `goodman`: the suite's six settings, 2,000 certifications each
  (`test_interval_coverage_within_alpha`);
- `sison-glaz`, peaked ten-class input: the suite's 600 certifications (`test_sison_glaz_coverage_within_alpha_...`);
- `sison-glaz` and `goodman` on a peaked input, ten classes with p1 = 0.999, n = 100, n0 = 0: 2,000 multinomial count
  vectors, as art-stn computes the bounds (each floored at Clopper-Pearson's with Bonferroni) and as statsmodels
  gives them (`raw`, the reference code's: its zero-width `[1, 1]` on all-one-class counts fails almost always)
  (`tests/test_soundness_review2.py::test_sison_glaz_coverage_of_a_peaked_input`);
- `sison-glaz` as statsmodels gives it, two classes (d = 2 sigma): the suite's 2,000 binomial count vectors, where it
  under-covers, which is why art-stn refuses it below 7 classes
  (`test_sison_glaz_under_covers_with_two_classes_so_it_is_refused`);
- with `--sison-glaz-repeats R` (R > 0): the two other ten-class settings with Sison-Glaz, R certifications each (not
  in the suite: statsmodels takes 0.5 to 1.2 s per distinct count vector).

Usage: `python benchmarks/interval_coverage.py [--sison-glaz-repeats 200]` from the repository root.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import binom, norm

from art_stn.confidence import multinomial_top_two
from tests.soundness.test_statistical import (
    ALPHA,
    COVERAGE_SETTINGS,
    SISON_GLAZ_REPEATS,
    N,
    coverage_violations,
    raw_top_two,
)


def count_violations(p: np.ndarray, counts: np.ndarray, method: str, raw: bool, top: np.ndarray | None = None) -> int:
    """
    :return: How many of the count vectors' bounds (top class from the counts by default) are wrong for the true `p`.
    """
    top = np.argmax(counts, axis=1) if top is None else top
    p1_lower, p2_upper = (raw_top_two if raw else multinomial_top_two)(counts, ALPHA, top, method)
    p_other = np.array([np.max(np.delete(p, t)) for t in top])
    return int(np.sum((p1_lower > p[top]) | (p2_upper < p_other)))


def row(interval: str, setting: str, repeats: int, violations: int, note: str = "") -> str:
    """
    :return: One Markdown table row, with the suite's tolerance for `repeats` certifications.
    """
    tolerance = int(binom.isf(1e-6, repeats, ALPHA))
    verdict = "pass" if violations <= tolerance else "fail"
    return (
        f"| {interval} | {setting} | {repeats:,} | {violations} | {100 * violations / repeats:.1f}% | {ALPHA:g} | "
        f"{tolerance} | {verdict}{note} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sison-glaz-repeats", type=int, default=0, help="extra Sison-Glaz rows (0: none)")
    args = parser.parse_args()
    print("| interval | setting | certifications | violations | rate | alpha | allowed | result |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for interval in ("clopper-pearson", "goodman"):
        for setting, p in COVERAGE_SETTINGS.items():
            print(row(interval, setting, N, coverage_violations(interval, p, N, n=200, n0=20, seed=21)), flush=True)
    peaked = "10 classes, p = (0.98, 0.01, 0.00125 x 8)"
    violations = coverage_violations("sison-glaz", COVERAGE_SETTINGS[peaked], SISON_GLAZ_REPEATS, 200, 20, seed=22)
    print(row("sison-glaz", peaked, SISON_GLAZ_REPEATS, violations), flush=True)
    p = np.array([0.999] + [0.001 / 9] * 9)
    counts = np.random.default_rng(7).multinomial(100, p, size=N)
    for method in ("sison-glaz", "goodman"):
        for raw in (False, True):
            name = f"{method} (statsmodels, raw)" if raw else method
            setting = "10 classes, p1 = 0.999, **n = 100**, n0 = 0"
            note = " (the reference code's interval)" if raw else ""
            print(row(name, setting, N, count_violations(p, counts, method, raw), note), flush=True)
    p = np.array([norm.cdf(2.0), norm.sf(2.0)])
    counts = np.random.default_rng(3).multinomial(200, p, size=N)
    violations = count_violations(p, counts, "sison-glaz", raw=True, top=np.zeros(N, dtype=np.int64))
    note = " (expected: refused below 7 classes)"
    print(row("sison-glaz (statsmodels, raw)", "2 classes, p1 = 0.98 (d = 2 sigma), n0 = 0", N, violations, note))
    if args.sison_glaz_repeats > 0:
        for setting in list(COVERAGE_SETTINGS)[3:5]:
            p = COVERAGE_SETTINGS[setting]
            violations = coverage_violations("sison-glaz", p, args.sison_glaz_repeats, 200, 20, seed=23)
            print(row("sison-glaz", setting, args.sison_glaz_repeats, violations, " (not in the suite)"), flush=True)


if __name__ == "__main__":
    main()
