"""
Evaluation: certified accuracy at given radii and curves over radius, from certificates.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ATTACKS",
    "certified_accuracy",
    "certified_accuracy_curve",
    "certified_accuracy_difference",
    "certify_to_file",
    "format_table",
    "max_certifiable_radius",
    "read_results",
    "results_header",
    "robust_accuracy_to_file",
    "summary_table",
]


def _check(prediction: np.ndarray, radius: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """
    Validate certificate arrays.

    :return: The arrays as numpy arrays.
    """
    prediction, radius, labels = np.asarray(prediction), np.asarray(radius, dtype=np.float64), np.asarray(labels)
    if not (prediction.shape == radius.shape == labels.shape) or prediction.ndim != 1:
        raise ValueError(
            f"`prediction`, `radius` and `labels` must be 1-D of one length; got {prediction.shape}, "
            f"{radius.shape}, {labels.shape}."
        )
    if np.isnan(radius).any() or (radius < 0).any():
        raise ValueError("`radius` must be >= 0 and not NaN.")
    return prediction, radius, labels


def certified_accuracy(
    prediction: np.ndarray, radius: np.ndarray, labels: np.ndarray, radii: Sequence[float]
) -> np.ndarray:
    """
    Certified accuracy at each radius: the fraction of inputs whose certified prediction is correct with a
    certified radius >= r (abstentions, prediction -1, never count).

    :param prediction: Certified predictions, -1 for abstain.
    :param radius: Certified radii.
    :param labels: True labels.
    :param radii: The radii to evaluate at.
    :return: Array of accuracies, one per radius.
    """
    prediction, radius, labels = _check(prediction, radius, labels)
    correct = prediction == labels
    r = np.asarray(radii, dtype=np.float64)
    if len(labels) == 0:
        return np.zeros(len(r))
    return np.mean(correct[None, :] & (radius[None, :] >= r[:, None]), axis=1)


def certified_accuracy_curve(
    prediction: np.ndarray, radius: np.ndarray, labels: np.ndarray, max_radius: float | None = None, points: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """
    Certified accuracy as a function of the radius, on a regular grid (for plots).

    :param prediction: Certified predictions, -1 for abstain.
    :param radius: Certified radii.
    :param labels: True labels.
    :param max_radius: End of the grid (default: the largest finite radius, or 1).
    :param points: Number of grid points.
    :return: `(radii, accuracy)`.
    """
    prediction, radius, labels = _check(prediction, radius, labels)
    if max_radius is None:
        finite = radius[np.isfinite(radius)]
        max_radius = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    grid = np.linspace(0.0, max_radius, points)
    return grid, certified_accuracy(prediction, radius, labels, grid)


def certified_accuracy_difference(
    a: tuple[np.ndarray, np.ndarray],
    b: tuple[np.ndarray, np.ndarray],
    labels: np.ndarray,
    radii: Sequence[float],
    confidence: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Difference of certified accuracy between two classifiers certified on the same examples (e.g. STN minus its
    ablation), with a paired confidence interval per radius.

    Per example `d_i = correct_a(r) - correct_b(r)` in {-1, 0, 1}; the difference is `mean(d)` and the interval the
    paired Wald interval `mean(d) +- z * sd(d) / sqrt(N)` (the examples, not the Monte Carlo noise, are the sample).

    :param a: `(prediction, radius)` of the first classifier.
    :param b: `(prediction, radius)` of the second, on the same examples in the same order.
    :param labels: True labels.
    :param radii: The radii.
    :param confidence: Two-sided confidence level, in (0, 1).
    :return: `(difference, lower, upper)`, one entry per radius (fractions).
    """
    from scipy.stats import norm

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` must lie in (0, 1); got {confidence!r}.")
    pa, ra, labels = _check(*a, labels)
    pb, rb, _ = _check(*b, labels)
    r = np.asarray(radii, dtype=np.float64)[:, None]
    d = ((pa == labels) & (ra >= r)).astype(np.float64) - ((pb == labels) & (rb >= r)).astype(np.float64)
    mean = d.mean(axis=1)
    half = norm.ppf(0.5 + confidence / 2) * d.std(axis=1, ddof=1) / np.sqrt(max(d.shape[1], 1))
    return mean, mean - half, mean + half


def max_certifiable_radius(
    n: int,
    alpha: float,
    scale: float,
    noise: str = "gaussian",
    interval: str = "clopper-pearson",
    nb_classes: int = 2,
) -> dict[str, float]:
    """
    The largest radius a protocol can certify at all, per bound: the certificate of counts `[n, 0, ..., 0]` (every
    estimation sample on the top class), through the same bound code as :meth:`STNClassifier.certify_report`.

    No input gets a larger radius with these settings, however robust the model; e.g. `n = 100`, `alpha = 0.05`,
    sigma 0.7 caps the Renyi radius at about 1.02. The number of selection samples `n0` does not enter: the cap is
    reached when the selected class gets all `n` estimation samples. For sequential certification pass the last
    stage's sample size and failure probability (:func:`art_stn.confidence.stage_schedule`).

    :param n: Estimation samples per input, >= 1.
    :param alpha: Failure probability, in (0, 1).
    :param scale: Gaussian sigma or Laplace lambda, > 0.
    :param noise: `"gaussian"` or `"laplace"`.
    :param interval: The interval of `p1_lower` / `p2_upper` (one of :data:`art_stn.confidence.INTERVALS`).
    :param nb_classes: Number of classes (matters for the multinomial intervals only), >= 2.
    :return: The radius per bound name (L2 for Gaussian noise, L1 for Laplace noise).
    """
    from art_stn.classifier import certify_counts, check_int

    n = check_int(n, "n", 1)
    nb_classes = check_int(nb_classes, "nb_classes", 2)
    counts = np.zeros((1, nb_classes), dtype=np.int64)
    counts[0, 0] = n
    report = certify_counts(counts, alpha, scale, noise=noise, interval=interval)
    return {name: float(r[0]) for name, r in report.radii.items()}


def format_table(rows: dict[str, Sequence[float]], radii: Sequence[float], title: str = "radius") -> str:
    """
    A plain-text table of certified accuracies: one row per model/bound, one column per radius.

    :param rows: Accuracies (fractions) by row name.
    :param radii: The radii of the columns.
    :param title: Header of the first column.
    :return: The table.
    """
    width = max([len(title), *map(len, rows)])
    head = f"{title:<{width}} " + " ".join(f"{r:>7.2f}" for r in radii)
    lines = [head, "-" * len(head)]
    for name, accs in rows.items():
        lines.append(f"{name:<{width}} " + " ".join(f"{100 * a:>6.1f}%" for a in accs))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ results files
RESULTS_MAGIC = "# art-stn"
#: Version of the seeded noise streams, recorded in results files: files written with other streams do not resume.
NOISE_STREAMS = 2


def _plain(value: Any) -> Any:
    """
    :param value: A setting (number, string, array, sequence, or another object).
    :return: A JSON-able form of it (arrays as lists, other objects by type name).
    """
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return type(value).__name__


def _weights_sha256(model: Any) -> str:
    """
    SHA-256 of a model's `state_dict`: every entry's name, dtype, shape and bytes, in the `state_dict`'s order.

    :param model: A torch module.
    :return: The hex digest.
    """
    import torch

    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        digest.update(name.encode())
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()


def _model_settings(classifier: Any) -> dict[str, Any]:
    """
    The settings of the classifier behind a results file, beyond its smoothing settings: a hash of the model's
    weights, the sampling precision and memory format, ART's preprocessing, and the noise-stream version.

    :param classifier: An :class:`~art_stn.STNClassifier`.
    :return: Plain values for the file's header.
    """
    preprocessing = [
        {"name": type(op).__name__, **{p: _plain(getattr(op, p, None)) for p in getattr(op, "params", [])}}
        for op in classifier.preprocessing_operations
    ]
    return {
        "model_sha256": _weights_sha256(classifier.model),
        "precision": classifier.precision,
        "channels_last": classifier.channels_last,
        "preprocessing": preprocessing,
        "noise_streams": NOISE_STREAMS,
    }


def _complete_lines(path: Path) -> list[str]:
    """
    The lines of a text file that end with a newline: a last line without one was cut short by a killed run (or a
    write buffer flushed mid-line) and is left out, even when its fields happen to parse.

    :param path: The file.
    :return: The complete lines, without their newlines.
    """
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    return lines if text.endswith("\n") or not lines else lines[:-1]


def results_header(kind: str, meta: dict[str, Any], columns: Sequence[str]) -> str:
    """
    The two header lines of a results file: `# art-stn <kind> <json settings>` and the tab-separated column names.

    :param kind: `"certify"` or `"attack"`.
    :param meta: The settings the rows depend on.
    :param columns: The column names.
    :return: The header, ending with a newline.
    """
    return f"{RESULTS_MAGIC} {kind} {json.dumps(meta, sort_keys=True)}\n" + "\t".join(columns) + "\n"


def _open_results(
    path: Path, kind: str, meta: dict[str, Any], columns: list[str], resume: bool, overwrite: bool
) -> tuple[set[int], Any]:
    """
    Open a results file for appending, after checking it can be written (before any work starts).

    A new file gets a first line `# art-stn <kind> <json settings>` and a tab-separated header. With `resume`, an
    existing file must have the same kind, settings and columns; a last line without its newline (cut short by a
    killed run) is dropped, so its example is done again.

    :param path: The results file.
    :param kind: `"certify"` or `"attack"`.
    :param meta: The settings the rows depend on.
    :param columns: The column names.
    :param resume: Continue an existing file.
    :param overwrite: Replace an existing file.
    :return: The values of the first column already in the file, and the open file.
    """
    done: set[float] = set()
    if path.exists() and path.stat().st_size > 0:
        if resume:
            old_meta, table, _ = read_results(path, expect=kind)
            mismatched = {k: (old_meta.get(k), v) for k, v in meta.items() if old_meta.get(k) != v}
            if mismatched:
                older = " (written by an older art-stn: start a new file)" if "noise_streams" in mismatched else ""
                raise ValueError(f"cannot resume {path}: its settings differ (file, now): {mismatched}{older}.")
            if list(table) != columns:
                raise ValueError(f"cannot resume {path}: its columns differ from {columns}.")
            done = {float(v) for v in table[columns[0]]}
            text = path.read_text()
            if not text.endswith("\n"):  # a killed run may leave half a line
                path.write_text(text[: text.rfind("\n") + 1])
        elif not overwrite:
            raise FileExistsError(f"{path} exists: pass --resume to continue it or --overwrite to replace it.")
        else:
            path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by the caller
    if handle.tell() == 0:
        handle.write(results_header(kind, meta, columns))
        handle.flush()
    return done, handle


def read_results(path: str | Path, expect: str | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray], str]:
    """
    Read a results file written by `art-stn certify` or `art-stn attack`. A last line without its newline (the
    half-written line of a killed run) is left out.

    :param path: The file.
    :param expect: The kind it must be (`"certify"` or `"attack"`), or None for either.
    :return: `(settings, columns, kind)`, columns as float arrays by name.
    :raises FileNotFoundError: if the file does not exist.
    :raises ValueError: if it is not a well-formed results file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file not found: {path}")
    lines = _complete_lines(path)
    if len(lines) < 2 or not lines[0].startswith(RESULTS_MAGIC + " "):
        raise ValueError(f"{path} is not an art-stn results file (no '{RESULTS_MAGIC} <kind> {{...}}' first line).")
    try:
        _, _, kind, meta_text = lines[0].split(" ", 3)
        meta = json.loads(meta_text)
    except (ValueError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: malformed first line: {err}") from err
    if expect is not None and kind != expect:
        raise ValueError(f"{path} holds {kind} results, not {expect} results.")
    columns = lines[1].split("\t")
    rows = []
    for number, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(columns):
            raise ValueError(f"{path}:{number}: expected {len(columns)} tab-separated fields, got {len(fields)}.")
        try:
            rows.append([float(f) for f in fields])
        except ValueError as err:
            raise ValueError(f"{path}:{number}: not a number: {err}") from err
    data = np.array(rows, dtype=np.float64).reshape(len(rows), len(columns))
    return meta, {c: data[:, i] for i, c in enumerate(columns)}, kind


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
) -> Path:
    """
    Certify examples and write one line per example as it is certified (flushed), resumably.

    Columns: `idx label predict radius radius_<bound>... p1_lower p2_upper count1 count2 correct seconds`; with
    `sequential`, `samples` (noisy samples drawn, `n0` included) and `certified_radius` (the largest of `radii`
    certified, -1 for none) come before `seconds`. Each example's noise comes from a stream keyed by the classifier's
    seed and its index (not by the batch size), so a resumed run writes the same lines as an unbroken one; a killed
    run loses at most the examples in flight. The header records the settings the rows depend on, including a
    SHA-256 of the model's weights, the precision, the memory format and the preprocessing: resuming with anything
    else is refused.

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
    :param interval: The interval of `p1_lower` / `p2_upper` (default: the classifier's); recorded in the
           settings when it is not Clopper-Pearson.
    :param radii: The radii asked about (required with `sequential`).
    :param sequential: Sequential certification with `n` as the most samples per example (see
           :meth:`~art_stn.STNClassifier.certify_report`); the settings record the radii and stages.
    :param stages: Cumulative stage sizes of sequential certification (default: the library's schedule).
    :return: The path of the results file.
    """
    from tqdm.auto import tqdm

    from art_stn.classifier import BOUNDS, check_int
    from art_stn.confidence import check_alpha, check_interval, stage_schedule

    # Refuse bad settings before the results file is touched.
    n, n0, batch_size = check_int(n, "n", 1), check_int(n0, "n0", 0), classifier._batch_size(batch_size)
    alpha = check_alpha(alpha)
    interval = classifier.interval if interval is None else check_interval(interval, classifier.nb_classes)
    extra: dict[str, Any] = {}
    if interval != "clopper-pearson":
        extra["interval"] = interval
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
        "count1",
        "count2",
        "correct",
        *(["samples", "certified_radius"] if sequential else []),
        "seconds",
    ]
    settings = {
        "n": int(n),
        "n0": int(n0),
        "alpha": float(alpha),
        "noise": classifier.noise,
        "scale": float(classifier.scale),
        "bound": classifier.bound,
        "seed": classifier.seed,
        **_model_settings(classifier),
        **extra,
        **(meta or {}),
    }
    out = Path(out)
    done, handle = _open_results(out, "certify", settings, columns, resume, overwrite)
    todo = [i for i in range(len(indices)) if float(indices[i]) not in done]
    group = max(1, batch_size // ((sizes[0] if sequential else n) + n0))
    options: dict[str, Any] = {"interval": interval}
    if sequential:
        options.update({"radii": radii, "sequential": True, "stages": sizes})
    try:
        with tqdm(total=len(todo), desc="certify", unit="example", disable=not verbose) as bar:
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
                        int(c1),
                        int(c2),
                        int(rep.prediction[j] == y[i]),
                        *([int(rep.samples[j]), f"{rep.certified_radius[j]:g}"] if sequential else []),
                        f"{seconds:.4f}",
                    ]
                    handle.write("\t".join(map(str, row)) + "\n")
                handle.flush()
                bar.update(len(sel))
                bar.set_postfix(img_per_s=f"{float(np.mean(rep.samples)) / max(seconds, 1e-9):,.0f}")
    finally:
        handle.close()
    return out


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
    :param verbose: Progress output.
    :return: The path of the results file.
    """
    from art.attacks.evasion import BoundaryAttack, CarliniL2Method, ProjectedGradientDescent

    from art_stn.classifier import check_int

    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; choose one of {ATTACKS}.")
    max_iter, batch_size = check_int(max_iter, "max_iter", 1), check_int(batch_size, "batch_size", 1)
    if attack == "transfer" and source is None:
        raise ValueError("the transfer attack needs a source classifier (--source-checkpoint).")
    eps = [float(e) for e in eps]
    if not eps or any(not np.isfinite(e) or e < 0 for e in eps):
        raise ValueError(f"`eps` must be a non-empty list of sizes >= 0; got {eps}.")
    columns = ["eps", "accuracy", "clean_accuracy", "examples", "mean_perturbation", "seconds"]
    settings = {
        "attack": attack,
        "max_iter": int(max_iter),
        "examples": len(x),
        "eot_samples": classifier._eot(),
        "noise": classifier.noise,
        "scale": float(classifier.scale),
        "sample_size": int(classifier.sample_size),
        "seed": classifier.seed,
        **_model_settings(classifier),
        **(meta or {}),
    }
    out = Path(out)
    done, handle = _open_results(out, "attack", settings, columns, resume, overwrite)

    def correct(inputs: np.ndarray) -> np.ndarray:
        # The evaluation's view: the smoothed prediction with abstention, an abstention counting as wrong.
        prob = classifier.predict(inputs, batch_size=1024, is_abstain=True)
        return (prob.argmax(1) == y) & (prob.sum(1) > 0)

    clean_correct = correct(x)
    unbounded = None
    if attack in ("cw-l2", "boundary"):
        began = time.perf_counter()
        if attack == "cw-l2":
            art_attack = CarliniL2Method(classifier, max_iter=max_iter, batch_size=batch_size, verbose=verbose)
        else:
            art_attack = BoundaryAttack(classifier, targeted=False, max_iter=max_iter, verbose=verbose)
        with classifier.without_abstention():
            x_adv = art_attack.generate(x)
        broken = ~correct(x_adv)
        size = np.linalg.norm((x_adv - x).reshape(len(x), -1), axis=1)
        unbounded = (broken, size, time.perf_counter() - began)
    try:
        for e in eps:
            if float(f"{e:.6g}") in done:
                continue
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

                    art_attack = eot_autoattack(classifier, norm=2, eps=e, max_iter=max_iter, batch_size=batch_size)
                    x_adv = art_attack.generate(x, y=y).astype(np.float32)
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
                    with classifier.without_abstention():
                        x_adv = art_attack.generate(x, y=y).astype(np.float32)
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
                print(f"{attack} eps={e:g}: robust accuracy {100 * robust.mean():.1f}%", flush=True)
    finally:
        handle.close()
    return out


def summary_table(results: dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]], radii: Sequence[float]) -> str:
    """
    The paper's Table 1 format from certify results files: per file and bound, the clean (certified) accuracy and
    "radius (accuracy%)" at each radius.

    :param results: `label -> (settings, columns)` as returned by :func:`read_results`.
    :param radii: The radii to report.
    :return: The table as text.
    """
    lines = []
    for label, (_, table) in results.items():
        for column in [c for c in table if c.startswith("radius_")]:
            acc = certified_accuracy(table["predict"], table[column], table["label"], [0.0, *radii])
            cells = "  ".join(f"{r:g} ({100 * a:.1f}%)" for r, a in zip(radii, acc[1:], strict=True))
            lines.append(f"{label} [{column[7:]}]  clean {100 * acc[0]:.1f}%  {cells}")
    return "\n".join(lines)
