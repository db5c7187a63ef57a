"""
Robust accuracy under ART's attacks (the paper's Figures 3 and 4), written one line per (image, attack size) as it
is done: the image's index and label, the attack size, the prediction after the attack, whether the image is robust
at that size, and the perturbation's L2 and L-infinity norms. The per-size summary is computed from these lines
(:func:`art_stn.results.attack_summary`), and two models attacked on the same images compare image by image.

The same code attacks a smoothed classifier (:class:`art_stn.STNClassifier`, noise-averaged gradients, the smoothed
prediction with abstention) and a deterministic one (a plain ART classifier); only the classifier differs.

Layer 5.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from art_stn.results import (
    attack_summary,
    follow_recorded_layout,
    model_settings,
    open_results,
    read_results,
    weights_sha256,
)
from art_stn.validation import check_int

__all__ = ["ABSTAIN", "ATTACKS", "ATTACK_COLUMNS", "robust_accuracy_to_file"]

#: The attacks of :func:`robust_accuracy_to_file`.
ATTACKS = ("pgd-l2", "pgd-linf", "cw-l2", "boundary", "transfer-l2", "transfer-linf", "autoattack")
#: The columns of an attack results file, one line per (image, attack size).
ATTACK_COLUMNS = ["idx", "label", "eps", "prediction", "correct", "l2", "linf", "seconds"]
#: The prediction recorded where the smoothed classifier abstains (counted as wrong).
ABSTAIN = -1
#: PGD's step, as a fraction of the attack size.
EPS_STEP_RATIO = 0.25
#: Carlini-Wagner's settings beside `max_iter`: with ART's defaults (learning rate 0.01, initial constant 0.01, 10
#: binary-search steps) its 100 gradient steps barely move a smoothed model's images (LeNet, sigma 0.7: 0.03 of L2 on
#: average), so larger steps and constant, in 5 binary-search steps.
CW_SETTINGS = {"learning_rate": 0.1, "initial_const": 1.0, "binary_search_steps": 5}


def _size(e: float) -> float:
    """
    :param e: An attack size.
    :return: The size as the results file writes it (6 significant digits), the key of resumed lines.
    """
    return float(f"{e:.6g}")


def _sizes(eps: Sequence[float]) -> list[float]:
    """
    :param eps: The attack sizes asked for.
    :return: 0 (the clean prediction every summary needs) and the other sizes, each once, in the given order.
    :raises ValueError: when a size is not a finite number >= 0, or none is given.
    """
    try:
        values = [float(e) for e in eps]
    except (TypeError, ValueError) as err:
        raise ValueError(f"`eps` must be a non-empty list of sizes >= 0; got {eps!r}.") from err
    if not values or any(not np.isfinite(e) or e < 0 for e in values):
        raise ValueError(f"`eps` must be a non-empty list of sizes >= 0; got {values}.")
    out = [0.0]
    for e in values:
        if _size(e) not in {_size(v) for v in out}:
            out.append(e)
    return out


def _indices(indices: Sequence[int] | np.ndarray | None, count: int) -> np.ndarray:
    """
    :param indices: The images' indices in their dataset, or None for `0 .. count - 1`.
    :param count: The number of images.
    :return: The indices as int64.
    :raises ValueError: when they are not `count` distinct integers >= 0.
    """
    if indices is None:
        return np.arange(count, dtype=np.int64)
    idx = np.asarray(indices)
    if idx.shape != (count,) or not np.issubdtype(idx.dtype, np.integer) or (idx < 0).any():
        raise ValueError(f"`indices` must be {count} integers >= 0, one per image; got shape {idx.shape}.")
    if len(np.unique(idx)) != count:
        raise ValueError("`indices` must be distinct: each image's lines are keyed by its index.")
    return idx.astype(np.int64)


def _settings(classifier: Any, attack: str, max_iter: int, restarts: int, count: int) -> dict[str, Any]:
    """
    :param classifier: The classifier under attack.
    :param attack: The attack.
    :param max_iter: Attack iterations.
    :param restarts: PGD's random starts.
    :param count: The number of images.
    :return: The settings the file's lines depend on.
    """
    if hasattr(classifier, "smoothing_settings"):
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
    pgd = (
        {"eps_step": f"{EPS_STEP_RATIO:g} * eps", "restarts": restarts}
        if "pgd" in attack or "transfer" in attack
        else {}
    )
    cw = CW_SETTINGS if attack == "cw-l2" else {}
    return {"attack": attack, "max_iter": max_iter, "examples": count, **pgd, **cw, **noise}


def _art_attack(attack: str, target: Any, e: float, max_iter: int, restarts: int, batch_size: int) -> Any:
    """
    :param attack: The attack.
    :param target: The classifier the attack computes its steps on (the source, for a transfer attack).
    :param e: The attack size (unused by C&W and Boundary).
    :param max_iter: Iterations.
    :param restarts: PGD's random starts (0: start at the image).
    :param batch_size: The attack's batch size.
    :return: The ART attack.
    """
    from art.attacks.evasion import BoundaryAttack, CarliniL2Method, ProjectedGradientDescent

    if attack == "cw-l2":
        return CarliniL2Method(target, max_iter=max_iter, batch_size=batch_size, verbose=False, **CW_SETTINGS)
    if attack == "boundary":
        return BoundaryAttack(target, targeted=False, max_iter=max_iter, verbose=False)
    if attack == "autoattack":
        from art_stn.attacks import eot_autoattack

        return eot_autoattack(target, norm=2, eps=e, max_iter=max_iter, batch_size=batch_size)
    return ProjectedGradientDescent(
        target,
        norm=np.inf if attack.endswith("linf") else 2,
        eps=e,
        eps_step=EPS_STEP_RATIO * e,
        max_iter=max_iter,
        num_random_init=restarts,
        batch_size=batch_size,
        verbose=False,
    )


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
    indices: Sequence[int] | np.ndarray | None = None,
    restarts: int = 0,
) -> Path:
    """
    Attack each image at each attack size with an ART attack (its classes unchanged) and write one line per
    (image, size), in batches of `batch_size` images, as they are done.

    - `pgd-l2` / `pgd-linf`: ART's ProjectedGradientDescent on the classifier (against a smoothed classifier,
      noise-averaged gradients over `eot_samples` draws), `eps_step = eps / 4`, `restarts` random starts.
    - `cw-l2` / `boundary`: ART's CarliniL2Method (noise-averaged gradients, :data:`CW_SETTINGS`) / BoundaryAttack,
      once per image; at size `eps` an image counts as broken when the attack changed its prediction with an L2
      perturbation <= eps.
    - `transfer-l2` / `transfer-linf`: PGD crafted on `source` (e.g. Madry's adversarially trained model) at each
      size and tested on the classifier: a black-box attack.
    - `autoattack`: ART's AutoAttack with APGD-CE and APGD-DLR in EoT form (L2,
      :func:`art_stn.attacks.eot_autoattack`); needs `pip install art-stn[attacks]`.

    Size 0 (no attack) is always included: it records the clean prediction. An image is robust at a size when its
    clean prediction and that after the attack are both its label; a smoothed classifier predicts from its
    `sample_size` noise draws with abstention, and an abstention counts as wrong (:data:`ABSTAIN` is written as
    the prediction). The attacks themselves see the smoothed scores without abstention
    (:meth:`~art_stn.STNClassifier.without_abstention`): an abstaining zero row would look like class 0 to them.

    Columns (:data:`ATTACK_COLUMNS`): `idx label eps prediction correct l2 linf seconds` (`correct`: robust, 1 or 0;
    `l2`, `linf`: the norms of the perturbation that was tested, 0 where C&W or Boundary needed more than the size;
    `seconds`: the batch's time per image). A resumed run skips the (image, size) pairs in the file, so a killed run
    loses at most the batch in flight; the summary by size is :func:`art_stn.results.attack_summary`.

    :param classifier: The classifier under attack: an :class:`art_stn.STNClassifier` or a plain ART classifier
           (a deterministic model).
    :param x: Images.
    :param y: Labels (class indices).
    :param attack: One of :data:`ATTACKS`.
    :param eps: Attack sizes (L2, or L-infinity for `pgd-linf` and `transfer-linf`).
    :param out: The results file.
    :param source: For the transfer attacks, the classifier the attack is crafted on.
    :param max_iter: Attack iterations.
    :param batch_size: Images per attack batch (and per write).
    :param meta: Extra settings recorded in the file.
    :param resume: Continue an existing file.
    :param overwrite: Replace an existing file.
    :param verbose: A progress bar in (image, size) pairs with an ETA, and a line per size.
    :param indices: The images' indices in their dataset (default `0 .. len(x) - 1`), the key of their lines.
    :param restarts: PGD's random starts (ART's `num_random_init`; 0 starts at the image).
    :return: The path of the results file.
    """
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; choose one of {ATTACKS}.")
    max_iter, batch_size = check_int(max_iter, "max_iter", 1), check_int(batch_size, "batch_size", 1)
    restarts = check_int(restarts, "restarts", 0)
    if attack.startswith("transfer") and source is None:
        raise ValueError("the transfer attacks need a source classifier (--source-checkpoint).")
    sizes = _sizes(eps)
    x, y = np.asarray(x, dtype=np.float32), np.asarray(y).astype(np.int64)
    if len(x) != len(y):
        raise ValueError(f"`x` and `y` must hold as many images; got {len(x)} and {len(y)}.")
    idx = _indices(indices, len(x))
    smoothed = hasattr(classifier, "smoothing_settings")  # else a deterministic model: a plain ART classifier
    if attack == "autoattack" and not smoothed:
        raise ValueError(
            "autoattack here is the EoT form for smoothed classifiers: attack a deterministic model with pgd-l2, "
            "pgd-linf, cw-l2 or boundary."
        )
    if smoothed:
        follow_recorded_layout(classifier, out, resume)
    settings = {**_settings(classifier, attack, max_iter, restarts, len(x)), **(meta or {})}
    out = Path(out)
    _, handle = open_results(out, "attack", settings, ATTACK_COLUMNS, resume, overwrite)
    table = read_results(out, expect="attack")[1]
    done = {(int(i), _size(e)) for i, e in zip(table["idx"], table["eps"], strict=True)}
    clean = {int(i): int(p) for i, e, p in zip(table["idx"], table["eps"], table["prediction"], strict=True) if e == 0}

    def predictions(inputs: np.ndarray) -> np.ndarray:
        # The evaluation's view: the smoothed prediction with abstention, or the plain model's prediction.
        if not smoothed:
            return classifier.predict(inputs, batch_size=1024).argmax(1)
        prob = classifier.predict(inputs, batch_size=1024, is_abstain=True)
        return np.where(prob.sum(1) > 0, prob.argmax(1), ABSTAIN)

    def write(rows: list[list[Any]]) -> None:
        handle.write("".join("\t".join(map(str, row)) + "\n" for row in rows))
        handle.flush()

    def line(i: int, e: float, pred: int, delta: np.ndarray, seconds: float) -> list[Any]:
        robust = int(clean[int(idx[i])] == y[i] and pred == y[i])
        l2, linf = float(np.linalg.norm(delta)), float(np.abs(delta).max(initial=0.0))
        return [int(idx[i]), int(y[i]), f"{e:.6g}", int(pred), robust, f"{l2:.6g}", f"{linf:.6g}", f"{seconds:.4g}"]

    def chunks(pending: np.ndarray) -> list[np.ndarray]:
        return [pending[s : s + batch_size] for s in range(0, len(pending), batch_size)]

    unbounded = attack in ("cw-l2", "boundary")
    todo = {
        e: np.array([i for i in range(len(x)) if (int(idx[i]), _size(e)) not in done], dtype=np.int64) for e in sizes
    }
    pending_pairs = sum(len(v) for v in todo.values())
    target = source if attack.startswith("transfer") else classifier
    bar = tqdm(total=pending_pairs, desc=attack, unit="pair", disable=not verbose)
    try:
        for part in chunks(todo[0.0]):
            began = time.perf_counter()
            pred = predictions(x[part])
            seconds = (time.perf_counter() - began) / len(part)
            for i, p in zip(part, pred, strict=True):
                clean[int(idx[i])] = int(p)
            write([line(i, 0.0, p, np.zeros(1), seconds) for i, p in zip(part, pred, strict=True)])
            bar.update(len(part))

        def attacked() -> Any:  # the attacks see the smoothed scores without abstention
            return classifier.without_abstention() if smoothed else contextlib.nullcontext()

        if unbounded:  # one attack per image serves every size
            missing = np.array(sorted({int(i) for e in sizes[1:] for i in todo[e]}), dtype=np.int64)
            art_attack = _art_attack(attack, target, 1.0, max_iter, restarts, batch_size)
            for part in chunks(missing):
                began = time.perf_counter()
                with attacked():
                    x_adv = art_attack.generate(x[part]).astype(np.float32)
                pred = predictions(x_adv)
                seconds = (time.perf_counter() - began) / len(part)
                rows = []
                for i, x_i, p in zip(part, x_adv, pred, strict=True):
                    delta = x_i - x[i]
                    changed = p != clean[int(idx[i])]
                    for e in sizes[1:]:
                        if (int(idx[i]), _size(e)) in done:
                            continue
                        within = changed and np.linalg.norm(delta) <= e + 1e-9
                        rows.append(line(i, e, p if within else clean[int(idx[i])], delta * within, seconds))
                write(rows)
                bar.update(len(rows))
        else:
            for e in sizes[1:]:
                bar.set_description(f"{attack} eps={e:g}")
                art_attack = _art_attack(attack, target, e, max_iter, restarts, batch_size)
                for part in chunks(todo[e]):
                    began = time.perf_counter()
                    with attacked() if target is classifier else contextlib.nullcontext():
                        x_adv = art_attack.generate(x[part], y=y[part]).astype(np.float32)
                    pred = predictions(x_adv)
                    seconds = (time.perf_counter() - began) / len(part)
                    write([line(i, e, p, x_a - x[i], seconds) for i, x_a, p in zip(part, x_adv, pred, strict=True)])
                    bar.update(len(part))
    finally:
        bar.close()
        handle.close()
    if verbose:
        summary = attack_summary(read_results(out, expect="attack")[1])
        for e, a in zip(summary["eps"], summary["accuracy"], strict=True):
            tqdm.write(f"{attack} eps={e:g}: robust accuracy {100 * a:.1f}%")
    return out
