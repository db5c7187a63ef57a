"""
Time the vectorised certified-radius functions on 1e5 random (p1, p2) pairs.

Usage: `python benchmarks/bounds_speed.py [N]`. Prints seconds per call (best of 5) and radii per second.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from art_stn.bounds import cohen_l2_radius, laplace_l1_radius, pixeldp_l2_radius, renyi_l2_radius


def main(n: int = 100_000) -> None:
    """
    Run the benchmark.

    :param n: Number of (p1, p2) pairs.
    """
    rng = np.random.default_rng(0)
    p1 = rng.uniform(0, 1, n)
    p2 = rng.uniform(0, 1, n) * np.minimum(p1, 1 - p1)
    print(f"{'function':<20} {'seconds':>10} {'radii/s':>14}   (N = {n})")
    for fn in (renyi_l2_radius, cohen_l2_radius, pixeldp_l2_radius, laplace_l1_radius):
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            fn(p1, p2, 0.5)
            best = min(best, time.perf_counter() - start)
        print(f"{fn.__name__:<20} {best:>10.4f} {n / best:>14,.0f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
