"""
Certification throughput: STNClassifier.certify's noisy images per second divided by the plain model's forward
images per second (same model, same batch size, same process), side by side with ART's
`PyTorchRandomizedSmoothing.certify` on the same model, n and batch size.

Usage:
    python benchmarks/certify_throughput.py [--device cpu|cuda] [--models mnist-cnn,resnet18-cifar]
                                            [--n 2048] [--inputs 4] [--batch-size 256] [--quick]
    python benchmarks/certify_throughput.py --formats [--threads 1] [--compile] [--models lenet]

Prints one row per model: plain forward img/s, ours img/s, ratio (target >= 0.9), ART img/s, our speed-up.

`--formats` instead compares memory formats, interleaved in one process so that load on the machine hits every
variant alike: per model, the plain forward's img/s in the default (contiguous) format, in channels-last and (with
`--compile`) under `torch.compile`, with each one's fraction of the sgemm roofline (2 x multiply-adds per image x
img/s over the same thread's sgemm FLOP/s); `STNClassifier.certify`'s img/s with `channels_last` False and True
(both eager), with the defaults early in a run (None: measured format, eager), and with `--compile` the defaults in
a run past `art_stn.speed.COMPILE_AFTER` noisy copies (compiled forward), over the contiguous forward; and a
training epoch's img/s (Gaussian augmentation, SGD with momentum, batch 256) in both formats, in CPU seconds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

from art_stn import STNClassifier
from art_stn.models import MODELS, build_model
from art_stn.speed import COMPILE_AFTER


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


def multiply_adds(model: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """
    Multiply-adds of one forward pass per image, counted over the convolutions and linear layers.

    :param model: The model.
    :param shape: One input's shape.
    :return: The count.
    """
    total = 0

    def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total += out[0].numel() * module.in_channels // module.groups * kh * kw
        elif isinstance(module, torch.nn.Linear):
            total += module.in_features * module.out_features

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    with torch.no_grad():
        model.eval()(torch.zeros((1, *shape)))
    for h in handles:
        h.remove()
    return total


def sgemm_flops(size: int = 1024, repeats: int = 5) -> float:
    """
    :return: The fp32 matrix product's FLOP/s on this thread (best of `repeats` products of two size x size matrices).
    """
    a, b = torch.rand(size, size), torch.rand(size, size)
    return 2.0 * size**3 / _best_of(lambda: torch.mm(a, b), repeats)


def formats(name: str, batch_size: int, n: int, inputs: int, rounds: int, compile_: bool, train_images: int) -> dict:
    """
    Memory formats (and compilation) compared for one model on the CPU, interleaved over `rounds`.

    :return: img/s per variant: `fwd_*` (plain forward), `certify_*` (STNClassifier.certify, n0 = 100), `train_*`
             (a Gaussian-augmentation epoch, CPU seconds), with the multiply-adds per image.
    """
    from art_stn.trainer import GaussianAugmentationTrainer

    shape = MODELS[name].input_shape
    torch.manual_seed(0)
    base = build_model(name).eval()
    batch = torch.rand((batch_size, *shape))
    fwd: dict[str, tuple[torch.nn.Module, torch.Tensor]] = {"contiguous": (base, batch)}
    cl = build_model(name).eval().to(memory_format=torch.channels_last)
    cl.load_state_dict(base.state_dict())
    fwd["channels_last"] = (cl, batch.contiguous(memory_format=torch.channels_last))
    result: dict[str, float] = {"macs": float(multiply_adds(base, shape))}
    if compile_:
        for key, (model, x) in list(fwd.items()):
            compiled = torch.compile(model)
            start = time.perf_counter()
            with torch.no_grad():
                compiled(x)
            result[f"compile_seconds_{key}"] = time.perf_counter() - start
            fwd[f"compile+{key}"] = (compiled, x)
    x = np.random.default_rng(0).uniform(0, 1, (inputs, *shape)).astype(np.float32)
    clfs = {
        str(layout): STNClassifier(
            build_model(name), torch.nn.CrossEntropyLoss(), shape, 10, device_type="cpu", scale=0.5, seed=0,
            channels_last=None if layout == "long" else layout,
            compile_forward=False if layout in (True, False) else None,
        )
        for layout in (False, True, None, *(["long"] if compile_ else []))
    }  # fmt: skip
    if compile_:  # the default classifier in a long run: past COMPILE_AFTER copies, it samples compiled
        clfs["long"]._sampled = COMPILE_AFTER
    for key, clf in clfs.items():
        clf.model.load_state_dict(base.state_dict())
        start = time.perf_counter()
        clf.certify(x[:1], n=100 if key != "long" else 5_000, n0=10)  # warm-up (the probe; the compilation)
        if key == "long":
            result["compile_seconds_certify"] = time.perf_counter() - start
    result["auto_choice"] = float(clfs["None"].uses_channels_last())
    rng = np.random.default_rng(1)
    x_train = rng.uniform(0, 1, (train_images, *shape)).astype(np.float32)
    y_train = rng.integers(0, 10, train_images)
    best: dict[str, float] = {}

    def keep(key: str, seconds: float) -> None:
        best[key] = min(best.get(key, float("inf")), seconds)

    for _ in range(rounds):
        for key, (model, xb) in fwd.items():
            with torch.no_grad():
                keep(f"fwd_{key}", _best_of(lambda m=model, b=xb: m(b).argmax(1), 3) / batch_size)
        for key, clf in clfs.items():
            start = time.perf_counter()
            clf.certify(x, n=n, n0=100)
            keep(f"certify_{key}", (time.perf_counter() - start) / (inputs * (n + 100)))
        for layout in (False, True):
            torch.manual_seed(0)
            model = build_model(name)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
            clf = STNClassifier(
                model, torch.nn.CrossEntropyLoss(), shape, 10, optimizer=opt, device_type="cpu", scale=0.5, seed=0,
                channels_last=layout, clip_values=(0.0, 1.0),
            )  # fmt: skip
            start = time.process_time()
            GaussianAugmentationTrainer(clf).fit(x_train, y_train, nb_epochs=1, batch_size=256, verbose=False)
            keep(f"train_{layout}", (time.process_time() - start) / train_images)
    result.update({key: 1.0 / seconds for key, seconds in best.items()})
    return result


def print_formats(args: argparse.Namespace) -> None:
    """
    Run `--formats` and print its tables (Markdown).

    :param args: Parsed arguments.
    """
    torch.set_num_threads(args.threads)
    from art_stn.speed import machine_name

    flops = sgemm_flops()
    print(
        f"CPU: {machine_name(torch.device('cpu'))}; {torch.get_num_threads()} thread(s); torch {torch.__version__}; "
        f"fp32; sgemm {flops / 1e9:.1f} GFLOP/s; batch {args.batch_size}; certify n = {args.n}, n0 = 100, "
        f"{args.inputs} inputs; {args.rounds} interleaved rounds\n"
    )
    rows = [(name, formats(name, args.batch_size, args.n, args.inputs, args.rounds, args.compile, args.train_images))
            for name in args.models.split(",")]  # fmt: skip
    print("| model | variant | forward img/s | vs default | roofline |")
    print("|---|---|---:|---:|---:|")
    for name, r in rows:
        for key in [k for k in r if k.startswith("fwd_")]:
            speed = r[key]
            roof = 2.0 * r["macs"] * speed / flops
            print(f"| {name} | {key[4:]} | {speed:,.0f} | {speed / r['fwd_contiguous']:.2f}x | {roof:.0%} |")
    print("\n| model | certify, channels_last | img/s | vs contiguous forward | vs contiguous certify |")
    print("|---|---|---:|---:|---:|")
    for name, r in rows:
        chose = f"chose channels-last: {bool(r['auto_choice'])}"
        labels = [("False", "False, eager"), ("True", "True, eager"), ("None", f"None (default; {chose}), eager")]
        if "certify_long" in r:
            labels.append(("long", f"None (default; {chose}), compiled: a run past {COMPILE_AFTER:,} copies"))
        for layout, label in labels:
            speed = r[f"certify_{layout}"]
            print(
                f"| {name} | {label} | {speed:,.0f} | {speed / r['fwd_contiguous']:.2f}x | "
                f"{speed / r['certify_False']:.2f}x |"
            )
    print("\n| model | training epoch (Gaussian augmentation) | img/s (CPU time) | vs default |")
    print("|---|---|---:|---:|")
    for name, r in rows:
        for layout, label in (("False", "default"), ("True", "channels-last")):
            print(
                f"| {name} | {label} | {r[f'train_{layout}']:,.0f} | {r[f'train_{layout}'] / r['train_False']:.2f}x |"
            )
    for name, r in rows:
        for key in [k for k in r if k.startswith("compile_seconds_")]:
            print(f"\n{name}: torch.compile's first call ({key[16:]}) took {r[key]:.1f} s")


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
    parser.add_argument("--formats", action="store_true", help="compare memory formats (and --compile) instead")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for --formats")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds for --formats")
    parser.add_argument("--train-images", type=int, default=2048, help="images of the training epoch for --formats")
    parser.add_argument("--compile", action="store_true", help="with --formats: also torch.compile (slow to start)")
    args = parser.parse_args(argv)
    if args.formats:
        if args.quick:
            args.n, args.inputs, args.rounds, args.train_images = 200, 1, 1, 256
        return print_formats(args)
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
