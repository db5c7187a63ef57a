"""
Evaluation drivers: certify examples and attack the smoothed classifier into resumable results files
(:mod:`art_stn.results`), one line per example as it is done.

Layer 5. The metrics (:mod:`art_stn.metrics`) and the results-file functions are re-exported here, where they
were first defined, so existing imports keep working.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from art_stn.certification import BOUNDS
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
    model_settings,
    open_results,
    read_results,
    results_header,
    weights_sha256,
)
from art_stn.validation import check_int

__all__ = [
    "ATTACKS",
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
    "robust_accuracy_to_file",
    "summary_table",
]


def _follow_recorded_layout(classifier: Any, path: str | Path | None, resume: bool) -> None:
    """
    A classifier whose memory format is measured (`channels_last=None`) continues a results file in the format the
    file records, so that a resumed file has one format throughout (its header is compared on resume).

    :param classifier: The classifier.
    :param path: The results file that `resume` continues.
    :param resume: Whether the run resumes.
    """
    if not resume or classifier.channels_last is not None or path is None:
        return
    path = Path(path)
    if path.is_file() and path.stat().st_size:
        recorded = read_results(path)[0].get("channels_last")
        if isinstance(recorded, bool):
            classifier.set_params(channels_last=recorded)


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
        extra.update({"sequential": True, "radii": radii, "stages": sizes})
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
    _follow_recorded_layout(classifier, merged if merged is not None and Path(merged).is_file() else out, resume)
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
        options.update({"radii": radii, "sequential": True, "stages": sizes})
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
                        f"{rep.radius[j]:.6g}",
                        *[f"{rep.radii[b][j]:.6g}" for b in bounds],
                        f"{rep.p1_lower[j]:.8g}",
                        f"{rep.p2_upper[j]:.8g}",
                        *([int(rep.top[j])] if "top" in columns else []),
                        int(c1),
                        int(c2),
                        int(rep.prediction[j] == y[i]),
                        *(
                            [int(rep.samples[j]), f"{rep.certified_radius[j]:g}", int(rep.counts[j].sum())]
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


ATTACKS = ("pgd-l2", "pgd-linf", "cw-l2", "boundary", "transfer", "autoattack")


def robust_accuracy_to_file(
    classifier: Any,
    x: np.ndarray,
    y: np.ndarray,
    attack: str,
    eps: Sequence[float],
    out: str | Path,
    source: Any = None,
    max_iter: int = 20,
    batch_size: int = 32,
    meta: dict[str, Any] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    verbose: bool = True,
) -> Path:
    """
    Robust accuracy of the smoothed classifier against an ART attack over a list of attack sizes (the paper's
    Figures 3 and 4), one line per size, written as it is done and resumable.

    - `pgd-l2` / `pgd-linf`: ART's ProjectedGradientDescent on the smoothed classifier (noise-averaged gradients,
      `eot_samples` draws), `eps_step = eps / 4`.
    - `cw-l2` / `boundary`: ART's CarliniL2Method / BoundaryAttack once; at size `eps` an example counts as broken
      when the attack changed its prediction with an L2 perturbation <= eps.
    - `transfer`: PGD-L2 crafted on `source` (an ART classifier, e.g. a PGD-trained base model) and tested on the
      smoothed classifier.
    - `autoattack`: ART's AutoAttack with APGD-CE and APGD-DLR in EoT form (L2, :func:`art_stn.attacks.eot_autoattack`,
      `max_iter` iterations each); needs `pip install art-stn[attacks]`.

    The attacks see the smoothed scores without abstention (:meth:`~art_stn.STNClassifier.without_abstention`): an
    abstaining zero row would look like class 0 to them. An example is robust at a size when its clean smoothed
    prediction and that of the perturbed input are both its label, with abstention (abstaining counts as wrong),
    for every attack. Columns: `eps accuracy clean_accuracy examples mean_perturbation seconds`. Sizes are written
    with 6 significant digits and a resumed run skips the sizes whose written form is already in the file.

    :param classifier: The smoothed classifier under attack.
    :param x: Inputs.
    :param y: Labels.
    :param attack: One of :data:`ATTACKS`.
    :param eps: Attack sizes (L2, or Linf for `pgd-linf`).
    :param out: The results file.
    :param source: For `transfer`, the classifier the attack is crafted on.
    :param max_iter: Attack iterations.
    :param batch_size: Attack batch size.
    :param meta: Extra settings recorded in the file.
    :param resume: Continue an existing file (skip sizes already done).
    :param overwrite: Replace an existing file.
    :param verbose: A progress bar in images (each attack size attacks every image) with an ETA, and a line per
           size.
    :return: The path of the results file.
    """
    from art.attacks.evasion import BoundaryAttack, CarliniL2Method, ProjectedGradientDescent

    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; choose one of {ATTACKS}.")
    max_iter, batch_size = check_int(max_iter, "max_iter", 1), check_int(batch_size, "batch_size", 1)
    if attack == "transfer" and source is None:
        raise ValueError("the transfer attack needs a source classifier (--source-checkpoint).")
    eps = [float(e) for e in eps]
    if not eps or any(not np.isfinite(e) or e < 0 for e in eps):
        raise ValueError(f"`eps` must be a non-empty list of sizes >= 0; got {eps}.")
    columns = ["eps", "accuracy", "clean_accuracy", "examples", "mean_perturbation", "seconds"]
    smoothed = hasattr(classifier, "smoothing_settings")  # else a deterministic model: a plain ART classifier
    if attack == "autoattack" and not smoothed:
        raise ValueError(
            "autoattack here is the EoT form for smoothed classifiers: attack a deterministic model with pgd-l2, "
            "pgd-linf, cw-l2 or boundary."
        )
    if smoothed:
        _follow_recorded_layout(classifier, out, resume)
        noise = {
            "eot_samples": classifier._eot(),
            "noise": classifier.noise,
            "scale": float(classifier.scale),
            "sample_size": int(classifier.sample_size),
            "seed": classifier.seed,
            **model_settings(classifier),
        }
    else:
        noise = {"noise": "none", "model_sha256": weights_sha256(classifier.model)}
    settings = {"attack": attack, "max_iter": int(max_iter), "examples": len(x), **noise, **(meta or {})}
    out = Path(out)
    done, handle = open_results(out, "attack", settings, columns, resume, overwrite)

    def correct(inputs: np.ndarray) -> np.ndarray:
        # The evaluation's view: the smoothed prediction with abstention (an abstention counting as wrong), or the
        # plain model's prediction.
        if not smoothed:
            return classifier.predict(inputs, batch_size=1024).argmax(1) == y
        prob = classifier.predict(inputs, batch_size=1024, is_abstain=True)
        return (prob.argmax(1) == y) & (prob.sum(1) > 0)

    def as_attacked() -> Any:
        # What the attacks see: the smoothed scores without abstention (an abstaining zero row would look like
        # class 0 to them); a plain model as it is.
        return classifier.without_abstention() if smoothed else contextlib.nullcontext()

    def generate(art_attack: Any, labels: bool = True) -> np.ndarray:
        # The attack over `x` in chunks of `batch_size` (the batches ART makes itself), advancing the bar per image.
        chunks = []
        for s0 in range(0, len(x), batch_size):
            part = slice(s0, s0 + batch_size)
            chunks.append(art_attack.generate(x[part], **({"y": y[part]} if labels else {})).astype(np.float32))
            bar.update(len(x[part]))
        return np.concatenate(chunks)

    unbounded_attack = attack in ("cw-l2", "boundary")
    todo = [e for e in eps if float(f"{e:.6g}") not in done and e != 0]
    clean_correct = correct(x)
    bar = tqdm(
        total=len(x) * (1 if unbounded_attack else len(todo)),
        desc=f"{attack} (every size at once)" if unbounded_attack else attack,
        unit="image",
        disable=not verbose,
    )
    unbounded = None
    if unbounded_attack:
        began = time.perf_counter()
        if attack == "cw-l2":
            art_attack = CarliniL2Method(classifier, max_iter=max_iter, batch_size=batch_size, verbose=False)
        else:
            art_attack = BoundaryAttack(classifier, targeted=False, max_iter=max_iter, verbose=False)
        with as_attacked():
            x_adv = generate(art_attack, labels=False)
        broken = ~correct(x_adv)
        size = np.linalg.norm((x_adv - x).reshape(len(x), -1), axis=1)
        unbounded = (broken, size, time.perf_counter() - began)
    try:
        for e in eps:
            if float(f"{e:.6g}") in done:
                continue
            if not unbounded_attack and e != 0:
                bar.set_description(f"{attack} eps={e:g} (size {todo.index(e) + 1} of {len(todo)})")
            began = time.perf_counter()
            if unbounded is not None:
                broken, size, seconds = unbounded
                robust = clean_correct & ~(broken & (size <= e + 1e-9))
                mean_pert = float(np.mean(np.where(broken & (size <= e + 1e-9), size, 0.0)))
            else:
                target = source if attack == "transfer" else classifier
                norm = np.inf if attack == "pgd-linf" else 2
                if e == 0:
                    x_adv = x
                elif attack == "autoattack":
                    from art_stn.attacks import eot_autoattack

                    if not smoothed:
                        raise ValueError(
                            "autoattack here is the EoT form for smoothed classifiers; attack a "
                            "deterministic model with pgd-l2, pgd-linf, cw-l2 or boundary."
                        )
                    art_attack = eot_autoattack(classifier, norm=2, eps=e, max_iter=max_iter, batch_size=batch_size)
                    x_adv = generate(art_attack)
                else:
                    art_attack = ProjectedGradientDescent(
                        target,
                        norm=norm,
                        eps=e,
                        eps_step=e / 4,
                        max_iter=max_iter,
                        batch_size=batch_size,
                        verbose=False,
                    )
                    with as_attacked():
                        x_adv = generate(art_attack)
                robust = clean_correct & correct(x_adv)
                delta = (x_adv - x).reshape(len(x), -1)
                mean_pert = float(np.mean(np.abs(delta).max(1) if norm == np.inf else np.linalg.norm(delta, axis=1)))
                seconds = time.perf_counter() - began
            row = [
                f"{e:.6g}",
                f"{robust.mean():.6f}",
                f"{clean_correct.mean():.6f}",
                len(x),
                f"{mean_pert:.6g}",
                f"{seconds:.3f}",
            ]
            handle.write("\t".join(map(str, row)) + "\n")
            handle.flush()
            if verbose:
                tqdm.write(f"{attack} eps={e:g}: robust accuracy {100 * robust.mean():.1f}%")
    finally:
        bar.close()
        handle.close()
    return out
