"""
Certification throughput: STNClassifier.certify's noisy images per second divided by the plain model's forward
images per second (same model, same batch size, same process), side by side with ART's
`PyTorchRandomizedSmoothing.certify` on the same model, n and batch size.

Usage:
    python benchmarks/certify_throughput.py [--device cpu|cuda] [--models mnist-cnn,resnet18-cifar]
                                            [--n 2048] [--inputs 4] [--batch-size 256] [--quick]

Prints one row per model: plain forward img/s, ours img/s, ratio (target >= 0.9), ART img/s, our speed-up.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

from art_stn import STNClassifier
from art_stn.models import MODELS, build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _best_of(fn, repeats: int) -> float:
    """Best wall time of `repeats` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure(
    name: str,
    device: torch.device,
    n: int,
    inputs: int,
    batch_size: int,
    n0: int,
    repeats: int,
    art_n: int,
    extras: bool = False,
) -> dict[str, float]:
    """
    Measure one model.

    :return: A dict of images/s for plain forward, ours and ART.
    """
    torch.manual_seed(0)
    model = build_model(name).to(device).eval()
    shape = MODELS[name].input_shape
    x = np.random.default_rng(0).uniform(0, 1, (inputs, *shape)).astype(np.float32)
    batch = torch.rand((batch_size, *shape), device=device)

    @torch.no_grad()
    def plain() -> None:
        for _ in range(max(1, (inputs * (n + n0)) // batch_size)):
            model(batch).argmax(1)
        _sync(device)

    plain_images = max(1, (inputs * (n + n0)) // batch_size) * batch_size
    t_plain = _best_of(plain, repeats)

    device_type = "gpu" if device.type == "cuda" else "cpu"
    ours = STNClassifier(
        model, torch.nn.CrossEntropyLoss(), shape, 10, device_type=device_type, scale=0.25, n0=n0, seed=None
    )

    def run_ours() -> None:
        ours.certify(x, n=n, batch_size=batch_size)
        _sync(device)

    t_ours = _best_of(run_ours, repeats)

    art = PyTorchRandomizedSmoothing(
        model, torch.nn.CrossEntropyLoss(), shape, 10, device_type=device_type, sample_size=n0, scale=0.25, alpha=0.001
    )
    x_art = x[: max(1, min(inputs, 2))]

    def run_art() -> None:
        art.certify(x_art, n=art_n, batch_size=batch_size)
        _sync(device)

    t_art = _best_of(run_art, 1)
    result = {
        "plain": plain_images / t_plain,
        "ours": inputs * (n + n0) / t_ours,
        "art": len(x_art) * (art_n + n0) / t_art,
    }
    if extras:
        # predict (sample_size copies per input) and the EoT loss gradient (eot_samples copies per input)
        ours.set_params(sample_size=n // 4, eot_samples=32)
        xp = np.repeat(x, 4, axis=0)
        result["predict"] = (
            len(xp) * (n // 4) / _best_of(lambda: (ours.predict(xp, batch_size=batch_size), _sync(device)), repeats)
        )
        k = max(1, batch_size // 32)
        xg, yg = np.resize(x, (k, *shape)), np.zeros(k, dtype=np.int64)
        result["eot_grad"] = (
            len(xg) * 32 / _best_of(lambda: (ours.loss_gradient(xg, yg, batch_size=batch_size), _sync(device)), repeats)
        )
        # bf16 autocast: ours against the plain bf16 forward (channels_last for 4-D inputs)
        ours.set_params(precision="bf16", channels_last=len(shape) == 3)
        model_cl = model.to(memory_format=torch.channels_last) if len(shape) == 3 else model
        batch_cl = batch.contiguous(memory_format=torch.channels_last) if len(shape) == 3 else batch

        @torch.no_grad()
        def plain_bf16() -> None:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                for _ in range(max(1, (inputs * (n + n0)) // batch_size)):
                    model_cl(batch_cl).argmax(1)
            _sync(device)

        result["plain_bf16"] = plain_images / _best_of(plain_bf16, repeats)
        result["ours_bf16"] = inputs * (n + n0) / _best_of(run_ours, repeats)
        ours.set_params(precision="fp32", channels_last=False)
        model.to(memory_format=torch.contiguous_format)
        # training: one STN step (gamma = 1) over one plain clean step, same batch
        from art_stn import STNTrainer

        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        trainer_clf = STNClassifier(
            model, torch.nn.CrossEntropyLoss(), shape, 10, optimizer=opt, device_type=device_type, scale=0.25
        )
        trainer = STNTrainer(trainer_clf, gamma=1.0)
        xb = torch.rand((min(batch_size, 128), *shape), device=device)
        yb = torch.zeros(len(xb), dtype=torch.int64, device=device)
        gen = torch.Generator(device=device).manual_seed(0)
        model.train()

        def step(stn: bool) -> None:
            opt.zero_grad()
            loss = trainer.loss(xb, yb, gen) if stn else torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            _sync(device)

        result["train_ratio"] = _best_of(lambda: step(True), repeats) / _best_of(lambda: step(False), repeats)
        model.eval()
    return result


def main(argv: list[str] | None = None) -> None:
    """
    Run the benchmark and print the table.

    :param argv: Command-line arguments.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="mnist-cnn,resnet18-cifar")
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--n0", type=int, default=64)
    parser.add_argument("--inputs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--art-n", type=int, default=None, help="n for ART (default: --n)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that the script runs")
    parser.add_argument(
        "--extras",
        action="store_true",
        help="also predict and EoT-gradient throughput, bf16 ratios and the STN training-step ratio",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.n0, args.inputs, args.batch_size, args.repeats = 64, 8, 2, 32, 1
    device = torch.device(args.device)
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(
        f"device: {label}; torch {torch.__version__}; n={args.n}, n0={args.n0}, inputs={args.inputs}, "
        f"batch={args.batch_size}, fp32"
    )
    rows = []
    print(f"{'model':<16} {'forward img/s':>14} {'ours img/s':>12} {'ratio':>6} {'ART img/s':>11} {'speed-up':>9}")
    for name in args.models.split(","):
        r = measure(
            name,
            device,
            args.n,
            args.inputs,
            args.batch_size,
            args.n0,
            args.repeats,
            args.art_n or args.n,
            extras=args.extras,
        )
        rows.append((name, r))
        print(
            f"{name:<16} {r['plain']:>14,.0f} {r['ours']:>12,.0f} {r['ours'] / r['plain']:>6.2f} "
            f"{r['art']:>11,.0f} {r['ours'] / r['art']:>8.1f}x"
        )
    if args.extras:
        print(
            f"\n{'model':<16} {'predict img/s':>14} {'EoT grad img/s':>15} {'bf16 fwd img/s':>15} "
            f"{'ours bf16':>10} {'bf16 ratio':>10} {'STN/plain step':>15}"
        )
        for name, r in rows:
            print(
                f"{name:<16} {r['predict']:>14,.0f} {r['eot_grad']:>15,.0f} {r['plain_bf16']:>15,.0f} "
                f"{r['ours_bf16']:>10,.0f} {r['ours_bf16'] / r['plain_bf16']:>10.2f} {r['train_ratio']:>15.2f}"
            )


if __name__ == "__main__":
    main()
