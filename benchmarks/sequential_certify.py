"""
Sequential against fixed-n certification: certified accuracy at the requested radii and the forward passes spent.

Trains (or loads) a model, certifies the first `--max` test inputs once with fixed n (`n0 + n` noisy copies each)
and once sequentially (stages up to the same n, stopping each input once it is decided at the requested radii),
and prints forward passes and certified accuracy of both. `--repeat-fixed` adds a second fixed-n run with another
seed: the Monte Carlo noise floor of the accuracy comparison.

Models:
- `digits`: the digits demo model (`art_stn.demo.train_digits`, STN gamma = 2, 40 epochs, the demo's settings).
- `mnist`: the paper's MNIST model (`art_stn.models.mnist_cnn`), trained here with STN (gamma = 1) for one epoch on
  the first `--train-images` real MNIST training images (batch 64, Adam 1e-3); needs `art-stn data mnist` first.

Usage:
    python benchmarks/sequential_certify.py --model digits [--max 450] [--n 10000] [--sigma 0.5]
    python benchmarks/sequential_certify.py --model mnist --max 200 --train-images 10000 --checkpoint mnist.pt
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from art_stn import STNClassifier, STNTrainer
from art_stn.data import load_digits, load_mnist
from art_stn.demo import train_digits
from art_stn.evaluate import certified_accuracy
from art_stn.models import mnist_cnn


def _model(args: argparse.Namespace) -> tuple[STNClassifier, np.ndarray, np.ndarray]:
    """
    Train or load the model and return it with the test inputs to certify.

    :param args: Parsed arguments.
    :return: `(classifier, x, y)`.
    """
    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    if args.model == "digits":
        data = load_digits()
        x, y = data[1]
        if checkpoint is not None and checkpoint.exists():
            from art_stn.models import digits_cnn

            clf = STNClassifier.load(checkpoint, model=digits_cnn(), device_type="cpu", seed=args.seed)
        else:
            clf, _ = train_digits(gamma=2.0, sigma=args.sigma, epochs=args.epochs, seed=0, verbose=False, data=data)
            if checkpoint is not None:
                STNTrainer(clf, gamma=2.0).save_checkpoint(checkpoint, epoch=args.epochs - 1)
    else:
        x, y = load_mnist(train=False)
        net = mnist_cnn()
        clf = STNClassifier(
            net,
            torch.nn.CrossEntropyLoss(),
            (1, 28, 28),
            10,
            optimizer=torch.optim.Adam(net.parameters(), lr=1e-3),
            clip_values=(0.0, 1.0),
            scale=args.sigma,
            seed=args.seed,
            device_type="cpu",
        )
        if checkpoint is not None and checkpoint.exists():
            clf = STNClassifier.load(checkpoint, model=mnist_cnn(), device_type="cpu", seed=args.seed)
        else:
            x_tr, y_tr = load_mnist(train=True)
            torch.manual_seed(0)
            began = time.perf_counter()
            STNTrainer(clf, gamma=1.0, seed=0).fit(
                x_tr[: args.train_images], y_tr[: args.train_images], nb_epochs=1, batch_size=64, verbose=False
            )
            seconds = time.perf_counter() - began
            print(f"trained mnist-cnn for one epoch on {args.train_images} images in {seconds:.0f} s")
            if checkpoint is not None:
                STNTrainer(clf, gamma=1.0).save_checkpoint(checkpoint, epoch=0)
    clf.set_params(seed=args.seed, n0=args.n0, alpha=args.alpha)
    return clf, x[: args.max], y[: args.max]


def _run(clf: STNClassifier, x: np.ndarray, y: np.ndarray, args: argparse.Namespace, **kwargs) -> dict:
    """
    Certify once and summarise.

    :return: Forward passes, seconds and certified accuracy per requested radius.
    """
    began = time.perf_counter()
    report = clf.certify_report(x, n=args.n, radii=args.radii, batch_size=args.batch_size, **kwargs)
    seconds = time.perf_counter() - began
    acc = certified_accuracy(report.prediction, report.radius, y, args.radii)
    values, frequency = np.unique(report.samples, return_counts=True)
    return {
        "forward_passes": int(report.samples.sum()),
        "seconds": seconds,
        "certified_accuracy": [float(a) for a in acc],
        "samples_histogram": dict(zip(values.tolist(), frequency.tolist(), strict=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("digits", "mnist"), default="digits")
    parser.add_argument("--max", type=int, default=450, help="test inputs to certify (the first M)")
    parser.add_argument("--n", type=int, default=10_000, help="n of fixed-n certification, N_max of sequential")
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--radii", default="0.25,0.5,0.75,1.0")
    parser.add_argument("--stages", default=None, help="cumulative stage sizes (default: the library's)")
    parser.add_argument("--futility", default="0.001", help="futility levels, one sequential run each")
    parser.add_argument("--epochs", type=int, default=40, help="digits: training epochs")
    parser.add_argument("--train-images", type=int, default=10_000, help="mnist: training images of the one epoch")
    parser.add_argument("--checkpoint", default=None, help="load the model from here if it exists, else save it")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat-fixed", action="store_true", help="a second fixed-n run with seed + 1")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 epochs, n = 400, 20 inputs")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    args.radii = [float(r) for r in args.radii.split(",")]
    stages = None if args.stages is None else [int(s) for s in args.stages.split(",")]
    if args.quick:
        args.epochs, args.n, args.max, args.train_images = 2, 400, 20, 256
    torch.set_num_threads(max(1, torch.get_num_threads()))
    clf, x, y = _model(args)
    results = {"settings": {k: v for k, v in vars(args).items() if k != "quick"}, "runs": {}}
    runs = {"fixed-n": {}}
    for level in (float(v) for v in args.futility.split(",")):
        runs[f"sequential (futility {level:g})"] = {"sequential": True, "stages": stages, "futility": level}
    for name, kwargs in runs.items():
        results["runs"][name] = _run(clf, x, y, args, **kwargs)
    if args.repeat_fixed:
        clf.set_params(seed=args.seed + 1)
        results["runs"]["fixed-n (seed + 1)"] = _run(clf, x, y, args)
    base = results["runs"]["fixed-n"]["forward_passes"]
    print(f"{args.model}: {len(x)} test inputs, sigma={args.sigma}, n0={args.n0}, N_max={args.n}, alpha={args.alpha}")
    head = "run".ljust(30) + "forward passes".rjust(16) + "  ratio" + "".join(f"{r:>8g}" for r in args.radii)
    print(head + "  seconds")
    for name, run in results["runs"].items():
        cells = "".join(f"{100 * a:>7.1f}%" for a in run["certified_accuracy"])
        ratio = base / run["forward_passes"]
        print(f"{name:<30}{run['forward_passes']:>16,}{ratio:>6.2f}x{cells}  {run['seconds']:.0f}")
    for name, run in results["runs"].items():
        if name.startswith("sequential"):
            print(f"{name}: samples per input (n0 included): {run['samples_histogram']}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
