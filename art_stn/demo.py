"""
The demo behind `art-stn demo`: STN against Gaussian augmentation on the scikit-learn digits, certified.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from art_stn.classifier import STNClassifier
from art_stn.data import load_digits
from art_stn.evaluate import certified_accuracy, certified_accuracy_curve, format_table
from art_stn.models import digits_cnn
from art_stn.plots import plot_certified_accuracy
from art_stn.trainer import STNTrainer

__all__ = ["DEMO_BOUNDS", "DEMO_RADII", "run_demo", "train_digits"]

#: The bounds the demo reports: the paper's Rényi bound, Cohen et al.'s CERTIFY, and Cohen's two-class form on the
#: same bounds as Rényi's (never below Rényi's radius).
DEMO_BOUNDS = ("renyi", "cohen", "cohen-top2")
#: The radii of the demo's table.
DEMO_RADII = (0.0, 0.25, 0.5, 0.75, 1.0)


def _predictions(report: Any, bound: str) -> np.ndarray:
    """
    :param report: A :class:`~art_stn.CertifyReport`.
    :param bound: A bound name.
    :return: The certified prediction under that bound (-1 where it gives no certificate).
    """
    return np.where(report.certified_by[bound], report.top, -1)


def train_digits(
    gamma: float,
    sigma: float,
    epochs: int,
    seed: int = 0,
    device: str = "cpu",
    verbose: bool = True,
    data: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[STNClassifier, list[dict[str, float]]]:
    """
    Train the digits CNN with stability training (`gamma > 0`) or Gaussian augmentation (`gamma = 0`).

    :param gamma: Stability weight.
    :param sigma: Gaussian noise sigma.
    :param epochs: Training epochs.
    :param seed: Seed of the initial weights, data order and noise.
    :param device: `"cpu"` or `"cuda"`.
    :param verbose: Show progress bars.
    :param data: Optional `((x_train, y_train), (x_test, y_test))` (default: :func:`art_stn.data.load_digits`).
    :return: The trained classifier and the training history.
    """
    (x_tr, y_tr), (x_te, y_te) = data if data is not None else load_digits()
    torch.manual_seed(seed)
    model = digits_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    clf = STNClassifier(
        model,
        torch.nn.CrossEntropyLoss(),
        (1, 8, 8),
        10,
        optimizer=optimizer,
        clip_values=(0.0, 1.0),
        noise="gaussian",
        scale=sigma,
        sample_size=100,
        seed=seed,
        device_type="gpu" if device == "cuda" else "cpu",
        channels_last=False,  # fixed, not measured: the published demo numbers do not depend on the machine's probe
        compile_forward=False,  # and eager: the demo is short, and its numbers do not depend on a compiler
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    history = STNTrainer(clf, gamma=gamma, seed=seed).fit(
        x_tr,
        y_tr,
        nb_epochs=epochs,
        batch_size=64,
        validation_data=(x_te, y_te),
        scheduler=scheduler,
        verbose=verbose,
    )
    return clf, history


def run_demo(
    out: str | Path = "art-stn-demo",
    scale: float = 0.5,
    gamma: float = 2.0,
    epochs: int = 40,
    n: int = 1000,
    n0: int = 100,
    alpha: float = 0.001,
    seed: int = 0,
    device: str = "cpu",
    radii: Sequence[float] = DEMO_RADII,
    verbose: bool = True,
    sigma: float | None = None,
) -> dict[str, Any]:
    """
    Train STN and the Gaussian-augmentation baseline on the digits with the same seed and budget, certify the test
    split with the Renyi and Cohen bounds, print a table, and write `certified_accuracy.png` and `results.json`.

    :param out: Output folder.
    :param scale: Gaussian noise sigma, > 0 (the name of :class:`~art_stn.STNClassifier`'s `scale`).
    :param gamma: STN stability weight, > 0.
    :param epochs: Training epochs per model, >= 1.
    :param n: Noisy samples per certificate.
    :param n0: Samples selecting the top class.
    :param alpha: Failure probability of each certificate.
    :param seed: Seed of training and certification.
    :param device: `"cpu"`, or `"cuda"` (`"gpu"`, ART's name, is the same).
    :param radii: Radii of the printed table.
    :param verbose: Show progress bars.
    :param sigma: The former name of `scale`, kept as an alias (it wins when given).
    :return: The results (also written to `results.json`).
    """
    sigma = scale if sigma is None else sigma
    device = "cuda" if device == "gpu" else device
    if not gamma > 0:
        raise ValueError(f"`gamma` must be > 0 for the STN model; got {gamma}.")
    if epochs < 1:
        raise ValueError(f"`epochs` must be >= 1; got {epochs}.")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but CUDA is not available.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    data = load_digits()
    x_te, y_te = data[1]
    results: dict[str, Any] = {
        "settings": {
            "dataset": "digits",
            "sigma": sigma,
            "gamma": gamma,
            "epochs": epochs,
            "n": n,
            "n0": n0,
            "alpha": alpha,
            "seed": seed,
            "device": device,
            "test_size": len(y_te),
        },
        "radii": list(radii),
        "models": {},
    }
    rows: dict[str, list[float]] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    max_radius = 0.0
    reports = {}
    for label, g in ((f"STN (gamma={gamma:g})", gamma), ("Gaussian aug. (gamma=0)", 0.0)):
        if verbose:
            print(f"== training {label}, sigma={sigma:g}, {epochs} epochs")
        clf, history = train_digits(g, sigma, epochs, seed=seed, device=device, verbose=verbose, data=data)
        if verbose:
            print(f"== certifying the {len(y_te)} test digits with {label} (n0={n0}, n={n})")
        report = clf.certify_report(x_te, n=n, n0=n0, alpha=alpha, batch_size=4096, verbose=verbose)
        reports[label] = report
        entry: dict[str, Any] = {
            "gamma": g,
            "history": history,
            "clean_accuracy": history[-1]["val_clean_acc"],
            "abstain_rate": float(np.mean(report.prediction < 0)),
        }
        for bound in DEMO_BOUNDS:
            acc = certified_accuracy(_predictions(report, bound), report.radii[bound], y_te, radii)
            rows[f"{label} {bound}"] = list(acc)
            entry[f"certified_accuracy_{bound}"] = [float(a) for a in acc]
            entry[f"mean_radius_{bound}"] = float(np.mean(report.radii[bound]))
            max_radius = max(max_radius, float(np.max(report.radii[bound])))
        results["models"][label] = entry
    for label, report in reports.items():
        for bound in DEMO_BOUNDS:
            curves[f"{label}, {bound}"] = certified_accuracy_curve(
                _predictions(report, bound), report.radii[bound], y_te, max_radius=max_radius * 1.05
            )
    results["seconds"] = time.perf_counter() - began
    table = format_table(rows, radii, title="certified accuracy at L2 radius")
    plot = plot_certified_accuracy(
        curves, out / "certified_accuracy.png", title=f"Digits, sigma={sigma:g}, n={n}, alpha={alpha:g}"
    )
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print()
    print(table)
    print()
    for label, entry in results["models"].items():
        print(
            f"{label}: clean accuracy of the base model {100 * entry['clean_accuracy']:.1f}%, "
            f"abstained {100 * entry['abstain_rate']:.1f}%"
        )
    print(f"\nwrote {plot} and {out / 'results.json'} in {results['seconds']:.0f} s")
    return results
