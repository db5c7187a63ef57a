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

from art_stn import STNClassifier
from art_stn.certification import certify_sequential, radius_stages
from art_stn.confidence import stage_schedule
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
        "stage": report.stage,
    }


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
    rows = {}
    for name, (sizes, alphas, futility, r) in runs.items():
        good = (r["prediction"] == y[idx]) & (r["certified_radius"] >= 0)
        n_stage = np.asarray(sizes)[r["stage"]]
        p1 = r["counts"][np.arange(len(idx)), r["prediction"].clip(0)] / n_stage
        p2 = np.sort(r["counts"], axis=1)[:, -2] / n_stage
        oracle = oracle_samples(p1[good], p2[good], r["certified_radius"][good], ALPHA, SIGMA, "cohen")
        rows[name] = {
            "stages": sizes,
            "alphas": alphas,
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
    }
    path = FULL / f"schedule-{args.model}.json" if args.images == IMAGES else CACHE / f"schedule-{args.model}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"chosen: {chosen} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
