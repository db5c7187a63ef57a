"""
Sequential certification's schedule, chosen on training images: replays `certify_sequential` (the package's own
code) under several stage schedules and futility levels on the same recorded noisy predictions, so that the
schedules differ only in where they stop, never in the samples they see.

For each of 200 MNIST *training* images (every 300th; nothing here reads a test image) the full-protocol model's
predictions on fresh Gaussian noise (sigma 0.5) are drawn once, lazily, in chunks of 10,000 (chunk c of image i
from its own seeded generator) and cached; the first 100 select the top class (n0 = 100), the next ones feed the
stages in order (consecutive segments of one i.i.d. stream are independent, as fresh stages are). Every schedule
then runs at alpha = 0.001 with a cap of N = 100,000 and CERTIFY deciding, at the full protocol's radii.

A schedule is a stage grid and a futility level:
- `radii`: the stages `--stages radii` places (where an all-correct image reaches each radius), early stages sharing
  alpha / 2 and the cap alpha / 2 (the package's schedule);
- `radii+fill R`: the same, with stages inserted so that consecutive sizes grow by at most R, rounded up (more
  stages, so each gets a smaller share of alpha / 2);
- the futility level: the one-sided level of the optimistic bounds by which an image is judged unable to reach a
  larger radius within the cap.

Chosen before the run: the schedule with the fewest mean samples whose certified accuracy at no radius is more than
one image (0.5 points) below the package's schedule's. The oracle is the full-protocol report's (class
probabilities from each image's deciding stage).

Beside the stage schedules, on the same predictions, an anytime-valid alternative that the package does not
implement (measured here only, never chosen): instead of a union bound over stages, a confidence sequence for the
top class's probability, the beta-binomial mixture martingale (Robbins, 1970; valid at every sample size at once by
Ville's inequality), at alpha / 2, checked each time the samples grow by 2%; and Clopper-Pearson at alpha / 2 on the
cap's N samples, as the last stage. It is run under three Beta priors and the same futility levels.

Usage: `python benchmarks/sequential_schedule.py [--model gaussian]`; writes
`results/mnist-full-protocol/schedule-<model>.json` and caches the draws in `.cache/sequential-schedule/`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.special import betaln
from scipy.stats import norm

from art_stn import STNClassifier
from art_stn.bounds import cohen_certify_l2_radius
from art_stn.certification import certify_sequential, radius_stages
from art_stn.confidence import clopper_pearson_lower, clopper_pearson_upper, stage_schedule
from art_stn.data import load_dataset
from art_stn.speed import CompiledForward, machine_name

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "scripts"))
from full_protocol_report import oracle_samples  # noqa: E402

FULL = Path("results/mnist-full-protocol")
CACHE = Path(".cache/sequential-schedule")
SKIP, IMAGES, CHUNK = 300, 200, 10_000
N, N0, ALPHA, SIGMA = 100_000, 100, 0.001, 0.5
RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.58, 1.75)
FILLS = (None, 2.0, 1.5)
FUTILITY = (1e-3, 1e-2, 0.05, 0.2)
PRIORS = ((1.0, 1.0), (1.0, 0.1), (1.0, 0.02))  # Beta(a, b) priors of the confidence sequence
GROWTH = 1.02  # the confidence sequence is checked each time the samples grow by this factor


class Draws:
    """Each image's predicted classes on fresh noise, drawn on demand and cached (uint8, in drawing order)."""

    def __init__(self, clf: STNClassifier, x: np.ndarray, path: Path) -> None:
        """
        :param clf: The smoothed classifier (its model and preprocessing; the noise is drawn here).
        :param x: The images.
        :param path: The cache file.
        """
        self.clf, self.x, self.path = clf, torch.from_numpy(x), path
        self.forward = CompiledForward(clf.model, CHUNK)
        self.preds = [np.zeros(0, dtype=np.uint8) for _ in range(len(x))]
        self.seconds = 0.0  # CPU seconds spent drawing, the cached draws' included
        self.unsaved = False  # new draws since the cache was read or written
        if path.is_file():
            with np.load(path) as cached:
                self.preds = [cached[f"i{i}"] for i in range(len(x))]
                self.seconds = float(cached["seconds"]) if "seconds" in cached else 0.0

    def upto(self, i: int, m: int) -> np.ndarray:
        """:return: The first `m` predictions of image `i`, drawing chunks as needed."""
        while len(self.preds[i]) < m:
            chunk = len(self.preds[i]) // CHUNK
            gen = torch.Generator().manual_seed(1_000_003 * i + chunk)
            start = time.process_time()
            with torch.no_grad():
                noisy = self.x[i : i + 1] + SIGMA * torch.randn((CHUNK, *self.x.shape[1:]), generator=gen)
                pred = self.clf._logits(noisy, self.forward).argmax(1).numpy().astype(np.uint8)
            self.seconds += time.process_time() - start
            self.preds[i] = np.concatenate([self.preds[i], pred])
            self.unsaved = True
        return self.preds[i][:m]

    def save(self) -> None:
        """Write the cache, when anything was drawn since it was last read or written."""
        if not self.unsaved:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.unsaved = False
        np.savez_compressed(self.path, seconds=self.seconds, **{f"i{i}": p for i, p in enumerate(self.preds)})


def schedule(fill: float | None) -> tuple[list[int], list[float]]:
    """
    :param fill: The largest ratio of consecutive stage sizes (None: the radii's stages only).
    :return: Cumulative stage sizes (the cap last) and their failure probabilities (early stages share alpha / 2).
    """
    return stage_schedule(N, ALPHA, radius_stages(N, ALPHA, RADII, SIGMA, "gaussian", "cohen", fill=fill))


def replay(draws: Draws, sizes: list[int], alphas: list[float], futility: float) -> dict:
    """:return: One schedule's run on every image: its report's columns that the comparison needs."""
    count = len(draws.preds)
    tops = np.array([np.bincount(draws.upto(i, N0), minlength=10).argmax() for i in range(count)])
    offset = np.full(count, N0)

    def sample(rows: np.ndarray, m: int, purpose: int) -> np.ndarray:
        out = np.zeros((len(rows), 10), dtype=np.int64)
        for j, i in enumerate(rows):
            out[j] = np.bincount(draws.upto(int(i), int(offset[i] + m))[offset[i] :], minlength=10)
            offset[i] += m
        return out

    report = certify_sequential(
        sample, tops, 10, N0, sizes, alphas, RADII, SIGMA, "gaussian", "cohen", futility=futility
    )
    return {
        "prediction": report.prediction,
        "certified_radius": report.certified_radius,
        "samples": report.samples - N0,
        "counts": report.counts,
        "n": np.asarray(sizes)[report.stage],
    }


def mixture_log_evidence(k: np.ndarray, n: int, p: np.ndarray, prior: tuple[float, float]) -> np.ndarray:
    """
    The log of the beta-binomial mixture martingale against a Bernoulli mean `p`: the Beta(a, b) mixture's likelihood
    of `k` successes in `n` draws over that of `p`. Under the true mean it is a nonnegative martingale starting at 1,
    so by Ville's inequality it ever reaches `log(1 / alpha)` with probability at most `alpha`: the means `p` at
    which it does, at any sample size, form a confidence sequence's complement. The function is convex in `p`,
    least at `k / n`, so a `p < k / n` where it reaches the level excludes every smaller mean too.

    :param k: Successes.
    :param n: Draws.
    :param p: Means, in (0, 1).
    :param prior: `(a, b)` of the Beta prior.
    :return: The log evidence against each `p`.
    """
    a, b = prior
    return betaln(a + k, b + n - k) - betaln(a, b) - k * np.log(p) - (n - k) * np.log1p(-p)


def anytime_replay(draws: Draws, prior: tuple[float, float], futility: float) -> dict:
    """
    The anytime-valid alternative on every image: the confidence sequence at alpha / 2 decides at each check, CERTIFY
    (Clopper-Pearson) at alpha / 2 at the cap, and an image stops once it holds the top radius, or when not even its
    optimistic probability (one-sided upper bound at `futility`) could reach its next radius at the cap by either.

    :return: The columns of :func:`replay`'s.
    """
    count = len(draws.preds)
    thresholds = norm.cdf(np.asarray(RADII) / SIGMA)  # p above Phi(r / sigma) certifies r
    checks = np.unique(np.ceil(GROWTH ** np.arange(int(np.log(N) / np.log(GROWTH)) + 1)).astype(int))
    checks = [*checks[checks < N], N]
    level = np.log(2.0 / ALPHA)
    out = {"prediction": np.zeros(count, int), "certified_radius": np.full(count, -1.0)}
    out.update(samples=np.zeros(count, int), counts=np.zeros((count, 10), int), n=np.zeros(count, int))

    def reached(k: int, n: int) -> np.ndarray:
        ok = (k / n > thresholds) & (mixture_log_evidence(k, n, thresholds, prior) >= level)
        if n == N:  # CERTIFY's own rule (`certify_counts`) at alpha / 2 on the cap's samples
            lower = float(clopper_pearson_lower(k, N, ALPHA / 2))
            ok |= (lower >= 0.5) & (cohen_certify_l2_radius(lower, SIGMA) >= np.asarray(RADII))
        return ok

    for i in range(count):
        top = int(np.bincount(draws.upto(i, N0), minlength=10).argmax())
        best = -1
        for n in checks:
            seq = draws.upto(i, N0 + n)[N0:]
            k = int((seq == top).sum())
            ok = reached(k, n)
            best = max(best, int(np.flatnonzero(ok).max()) if ok.any() else -1)
            if best == len(RADII) - 1 or n == N:
                break
            hope = min(N, int(np.ceil(float(clopper_pearson_upper(k, n, futility)) * N)))
            if not reached(hope, N)[best + 1]:
                break
        out["prediction"][i] = top if best >= 0 else -1
        out["certified_radius"][i] = RADII[best] if best >= 0 else -1.0
        out["samples"][i], out["n"][i] = n, n
        out["counts"][i] = np.bincount(seq, minlength=10)
    return out


def main(argv: list[str] | None = None) -> int:
    """
    :param argv: Command-line arguments.
    :return: Exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gaussian", help="the full-protocol model (results/mnist-full-protocol)")
    parser.add_argument("--images", type=int, default=IMAGES, help="training images (every 300th)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    ckpt = FULL / f"{args.model}-sigma0.5.pt"
    clf = STNClassifier.load(str(ckpt), device_type="cpu")
    x, y = load_dataset("mnist", None, train=True)
    idx = np.arange(0, len(x), SKIP)[: args.images]
    draws = Draws(clf, x[idx], CACHE / f"{args.model}-{args.images}.npz")
    runs = {}
    for fill in FILLS:
        sizes, alphas = schedule(fill)
        for futility in FUTILITY:
            name = f"{'radii' if fill is None else f'radii+fill {fill:g}'}, futility {futility:g}"
            runs[name] = (sizes, alphas, futility, replay(draws, sizes, alphas, futility))
            draws.save()
            print(name, f"{runs[name][3]['samples'].mean():,.0f} samples", flush=True)
    anytime = {}
    for prior in PRIORS:
        for futility in FUTILITY:
            name = f"anytime Beta({prior[0]:g}, {prior[1]:g}), futility {futility:g}"
            anytime[name] = (prior, futility, anytime_replay(draws, prior, futility))
            draws.save()
            print(name, f"{anytime[name][2]['samples'].mean():,.0f} samples", flush=True)
    rows = {name: {"stages": s, "alphas": a, **summary(r, f, y[idx])} for name, (s, a, f, r) in runs.items()}
    base = rows["radii, futility 0.001"]["certified"]
    allowed = {k: v for k, v in rows.items() if all(v["certified"][r] >= base[r] - 1 for r in base)}
    chosen = min(allowed, key=lambda k: allowed[k]["mean_samples"])
    out = {
        "images": [int(i) for i in idx],
        "split": "train",
        "model": str(ckpt),
        "n": N,
        "n0": N0,
        "alpha": ALPHA,
        "sigma": SIGMA,
        "radii": list(RADII),
        "cpu": machine_name(torch.device("cpu")),
        "draw_cpu_seconds": draws.seconds,
        "schedules": rows,
        "chosen": chosen,
        "anytime": {
            name: {"prior": p, "growth": GROWTH, **summary(r, f, y[idx])} for name, (p, f, r) in anytime.items()
        },
    }
    path = FULL / f"schedule-{args.model}.json" if args.images == IMAGES else CACHE / f"schedule-{args.model}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"chosen: {chosen} -> {path}")
    return 0


def summary(r: dict, futility: float, labels: np.ndarray) -> dict:
    """
    :param r: A replay's columns.
    :param futility: Its futility level.
    :param labels: The images' labels.
    :return: Its samples against the oracle's and its certified images per radius.
    """
    good = (r["prediction"] == labels) & (r["certified_radius"] >= 0)
    p1 = r["counts"][np.arange(len(labels)), r["prediction"].clip(0)] / r["n"]
    p2 = np.sort(r["counts"], axis=1)[:, -2] / r["n"]
    oracle = oracle_samples(p1[good], p2[good], r["certified_radius"][good], ALPHA, SIGMA, "cohen")
    return {
        "futility": futility,
        "mean_samples": float(r["samples"].mean()),
        "mean_samples_certified": float(r["samples"][good].mean()),
        "oracle_certified": float(oracle.mean()),
        "used_over_oracle": float(r["samples"][good].sum() / oracle.sum()),
        "at_cap": int((cap := r["samples"] >= N).sum()),
        "at_cap_share_of_samples": float(r["samples"][cap].sum() / r["samples"].sum()),
        "at_cap_below_top_radius": int((cap & good & (r["certified_radius"] < max(RADII))).sum()),
        "certified": {f"{rad:g}": int((good & (r["certified_radius"] >= rad)).sum()) for rad in RADII},
    }


if __name__ == "__main__":
    sys.exit(main())
