"""
The certification driver: certify examples into a resumable results file (:mod:`art_stn.results`), one line per
example as it is done (the attack driver is :mod:`art_stn.robustness`).

Layer 5. The metrics (:mod:`art_stn.metrics`) and the results-file functions are re-exported here, where they
were first defined, so existing imports keep working.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from art_stn.certification import BOUNDS, FUTILITY_LEVEL
from art_stn.confidence import check_alpha, check_interval, stage_schedule
from art_stn.metrics import (
    certified_accuracy,
    certified_accuracy_curve,
    certified_accuracy_difference,
    format_table,
    max_certifiable_radius,
    summary_table,
)
from art_stn.results import (
    check_resume,
    directed,
    follow_recorded_layout,
    model_settings,
    open_results,
    read_results,
    results_header,
)
from art_stn.validation import check_int

__all__ = [
    "LONG_RUN_SECONDS",
    "certified_accuracy",
    "certified_accuracy_curve",
    "certified_accuracy_difference",
    "certify_to_file",
    "format_table",
    "long_run_note",
    "max_certifiable_radius",
    "read_results",
    "results_header",
    "summary_table",
]


def certify_to_file(
    classifier: Any,
    x: np.ndarray,
    y: np.ndarray,
    indices: np.ndarray,
    out: str | Path,
    n: int,
    n0: int,
    alpha: float,
    batch_size: int | None = None,
    meta: dict[str, Any] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    verbose: bool = True,
    interval: str | None = None,
    radii: Sequence[float] | None = None,
    sequential: bool = False,
    stages: Sequence[int] | None = None,
    merged: str | Path | None = None,
    futility: float = FUTILITY_LEVEL,
) -> Path:
    """
    Certify examples and write one line per example as it is certified (flushed), resumably.

    Columns: `idx label predict radius radius_<bound>... p1_lower p2_upper top count1 count2 correct seconds`:
    `predict` is the certified class under the classifier's bound (-1 where it abstains), `top` the selected class,
    so that the prediction under any other bound is `top` where its radius is > 0
    (:func:`art_stn.metrics.bound_predictions`). With `sequential`, `samples` (noisy samples drawn, `n0` included),
    `certified_radius` (the largest of `radii` certified, -1 for none), `stage_n` and `stage_alpha` come before
    `seconds`: the row's counts, bounds and radii are those of the stage that certified its radius (or of the last
    one it reached), with `stage_n` estimation samples at failure probability `stage_alpha`, so every radius can be
    recomputed from the row. Each example's noise comes from a stream keyed by the classifier's seed and its index
    (not by the batch size), so a resumed run writes the same lines as an unbroken one on the same noise generator;
    a killed run loses at most the examples in flight. The header records every setting the rows depend on,
    including the interval, a SHA-256 of the model's weights, the precision, the memory format, the preprocessing
    and the noise generator (numpy's Philox on the CPU, torch's on CUDA): resuming with any difference, in either
    direction, is refused (:func:`art_stn.results.check_resume`).

    :param classifier: An :class:`~art_stn.STNClassifier` (with `seed` set for reproducible files).
    :param x: The inputs to certify.
    :param y: Their labels.
    :param indices: Their indices in the data set (the file's `idx` column and the noise-stream keys).
    :param out: The results file.
    :param n: Estimation samples per example.
    :param n0: Selection samples per example.
    :param alpha: Failure probability.
    :param batch_size: Noisy copies per model call (None: the classifier's automatic choice).
    :param meta: Extra settings recorded in the file (and checked on resume).
    :param resume: Continue an existing file, skipping the indices it holds.
    :param overwrite: Replace an existing file.
    :param verbose: Show a progress bar with throughput.
    :param interval: The interval of `p1_lower` / `p2_upper` (default: the classifier's); always recorded.
    :param radii: The radii asked about (required with `sequential`).
    :param sequential: Sequential certification with `n` as the most samples per example (see
           :meth:`~art_stn.STNClassifier.certify_report`); the settings record the radii and stages.
    :param stages: Cumulative stage sizes of sequential certification (default: the library's schedule).
    :param merged: A distributed run's merged results file, when `out` is this rank's shard: with `resume` it is
           checked as `out` would be (same settings and columns) and the examples it holds are skipped.
    :param futility: Sequential certification's futility level (see
           :meth:`~art_stn.STNClassifier.certify_report`), recorded with the stages.
    :return: The path of the results file.
    """

    # Refuse bad settings before the results file is touched.
    n, n0, batch_size = check_int(n, "n", 1), check_int(n0, "n0", 0), classifier._batch_size(batch_size)
    alpha = check_alpha(alpha)
    interval = classifier.interval if interval is None else check_interval(interval, classifier.nb_classes)
    extra: dict[str, Any] = {"interval": interval}
    if sequential:
        if radii is None:
            raise ValueError("sequential certification needs `radii`.")
        if n0 < 1:
            raise ValueError("sequential certification needs `n0 >= 1`.")
        sizes, _ = stage_schedule(n, alpha, stages)
        radii = sorted({float(r) for r in radii})
        futility = check_alpha(futility, "futility")
        extra.update({"sequential": True, "radii": radii, "stages": sizes, "futility": futility})
    if len(x) != len(y) or len(x) != len(indices):
        raise ValueError(f"`x`, `y` and `indices` must have one length; got {len(x)}, {len(y)}, {len(indices)}.")
    bounds = list(BOUNDS[classifier.noise])
    columns = [
        "idx",
        "label",
        "predict",
        "radius",
        *[f"radius_{b}" for b in bounds],
        "p1_lower",
        "p2_upper",
        "top",
        "count1",
        "count2",
        "correct",
        *(["samples", "certified_radius", "stage_n", "stage_alpha"] if sequential else []),
        "seconds",
    ]
    follow_recorded_layout(classifier, merged if merged is not None and Path(merged).is_file() else out, resume)
    settings = {
        "n": int(n),
        "n0": int(n0),
        "alpha": float(alpha),
        "noise": classifier.noise,
        "scale": float(classifier.scale),
        "bound": classifier.bound,
        "seed": classifier.seed,
        **model_settings(classifier),
        **extra,
        **(meta or {}),
    }
    out = Path(out)
    merged = Path(merged) if merged is not None and Path(merged).is_file() and Path(merged).stat().st_size else None
    layout = merged if merged is not None else out
    if resume and layout.is_file() and layout.stat().st_size > 0 and "top" not in read_results(layout)[1]:
        columns.remove("top")  # a file written before the `top` column: continue it in its own layout
    earlier = check_resume(merged, "certify", settings, columns) if resume and merged is not None else set()
    done, handle = open_results(out, "certify", settings, columns, resume, overwrite)
    done |= earlier
    todo = [i for i in range(len(indices)) if float(indices[i]) not in done]
    group = max(1, batch_size // ((sizes[0] if sequential else n) + n0))
    options: dict[str, Any] = {"interval": interval}
    if sequential:
        options.update({"radii": radii, "sequential": True, "stages": sizes, "futility": futility})
    warned = False
    if verbose and todo and not sequential and n + n0 > 10_000:  # a long run says so before its first example
        probe, began = min(n, 1_000), time.perf_counter()
        classifier.certify_report(x[todo[:1]], n=probe, n0=n0, alpha=alpha, batch_size=batch_size, interval=interval)
        per = (time.perf_counter() - began) * (n + n0) / (probe + n0)
        note = long_run_note(per, len(todo), n, n0, rate="a first measurement")
        if note:
            tqdm.write(note)
            warned = True
    try:
        with tqdm(total=len(todo), desc=f"certify (n={n:,})", unit="example", disable=not verbose) as bar:
            for g0 in range(0, len(todo), group):
                sel = np.asarray(todo[g0 : g0 + group])
                began = time.perf_counter()
                rep = classifier.certify_report(
                    x[sel], n=n, n0=n0, alpha=alpha, batch_size=batch_size, indices=np.asarray(indices)[sel], **options
                )
                seconds = (time.perf_counter() - began) / len(sel)
                for j, i in enumerate(sel):
                    c1, c2 = rep.counts[j][rep.top[j]], np.delete(rep.counts[j], rep.top[j]).max()
                    row = [
                        int(indices[i]),
                        int(y[i]),
                        int(rep.prediction[j]),
                        directed(rep.radius[j], 6),
                        *[directed(rep.radii[b][j], 6) for b in bounds],
                        directed(rep.p1_lower[j], 8),
                        directed(rep.p2_upper[j], 8, up=True),
                        *([int(rep.top[j])] if "top" in columns else []),
                        int(c1),
                        int(c2),
                        int(rep.prediction[j] == y[i]),
                        *(
                            [int(rep.samples[j]), repr(float(rep.certified_radius[j])), int(rep.counts[j].sum())]
                            + [f"{rep.stage_alpha[j]:.17g}"]
                            if sequential
                            else []
                        ),
                        f"{seconds:.4f}",
                    ]
                    handle.write("\t".join(map(str, row)) + "\n")
                handle.flush()
                bar.update(len(sel))
                bar.set_postfix(img_per_s=f"{float(np.mean(rep.samples)) / max(seconds, 1e-9):,.0f}")
                if verbose and g0 == 0 and not warned:
                    note = long_run_note(seconds, len(todo) - len(sel), n, n0)
                    if note:
                        tqdm.write(note)
    finally:
        handle.close()
    return out


#: A certification run expected to take longer than this (seconds) says so after its first examples.
LONG_RUN_SECONDS = 600.0


def long_run_note(
    seconds_per_example: float, remaining: int, n: int, n0: int = 100, rate: str = "the current rate"
) -> str | None:
    """
    The early warning of a long certification run, naming the flags that take less and how long each would take.

    :param seconds_per_example: The time of one example (measured so far, or estimated).
    :param remaining: Examples still to certify.
    :param n: Estimation samples per example.
    :param n0: Selection samples per example.
    :param rate: What the time is based on, for the message.
    :return: One line, or None when the rest takes under :data:`LONG_RUN_SECONDS`.
    """
    left = seconds_per_example * remaining

    def when(seconds: float) -> str:
        return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{max(seconds / 60, 1):.0f} min"

    if left < LONG_RUN_SECONDS:
        return None
    options = [f"--n {max(n // 10, 1):,} about {when(left * (n // 10 + n0) / (n + n0))}"]
    if remaining > 500:
        options.append(f"--max 500 (or --skip {max(remaining // 500, 2)}) about {when(seconds_per_example * 500)}")
    options.append("--sequential --radii R1,R2,... stops each example once decided (2.8x to 4.7x fewer samples on the "
                   "benchmarks' MNIST and digits models)")  # fmt: skip
    return (
        f"certify: about {when(left)} at {rate} ({seconds_per_example:.1f} s per example, {remaining:,} to go, "
        f"n={n:,}); less: " + "; ".join(options) + "."
    )
