"""
What each `art-stn` sub-command does, given its parsed arguments: load data and checkpoints, call the library,
print a short report. `art_stn.cli` parses; this module calls.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from art_stn.art_trainer import (
    ART_TRAINERS,
    DETERMINISTIC,
    ARTEstimatorTrainer,
    art_settings,
    deterministic_trainer,
    plain_classifier,
)
from art_stn.certification import FUTILITY_LEVEL, radius_stages
from art_stn.checkpoint import load_checkpoint
from art_stn.classifier import STNClassifier
from art_stn.confidence import stage_schedule
from art_stn.data import DATASETS, load_dataset
from art_stn.distributed import barrier, init_from_env, is_main, merge_shards, shard_indices, shard_path
from art_stn.evaluate import (
    certified_accuracy,
    certified_accuracy_curve,
    certify_to_file,
    max_certifiable_radius,
    read_results,
    summary_table,
)
from art_stn.metrics import bound_predictions
from art_stn.models import MODELS, build_model, build_optimizer
from art_stn.plots import plot_certified_accuracy, plot_robust_accuracy
from art_stn.results import attack_summary
from art_stn.robustness import robust_accuracy_to_file
from art_stn.trainer import (
    ConsistencyTrainer,
    GaussianAugmentationTrainer,
    STNTrainer,
    build_scheduler,
)

__all__ = ["attack", "certify", "demo", "plot", "train"]

DEFAULT_MODELS = {"digits": "digits-cnn", "mnist": "mnist-cnn", "cifar10": "cifar10-cnn"}


def _device_type(args: argparse.Namespace) -> str:
    """
    :param args: Parsed arguments with `device`.
    :return: ART's `device_type`.
    """
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but CUDA is not available.")
    return "gpu" if args.device == "cuda" else "cpu"


def _checkpoint_for_data(args: argparse.Namespace, path: str) -> dict:
    """
    Load a checkpoint and settle the data set it is evaluated on, before anything is written: `--dataset` defaults
    to the one the checkpoint records (`metadata["dataset"]`, written by `art-stn train`), else digits.

    :param args: Parsed arguments with `dataset` (None: the checkpoint's); set to the data set used.
    :param path: The checkpoint file.
    :return: The checkpoint dict (:func:`art_stn.checkpoint.load_checkpoint`).
    :raises ValueError: naming the checkpoint and the data set when `--dataset` differs from the recorded one, or
            the checkpoint's input shape or classes do not fit the data set.
    """
    ckpt = load_checkpoint(path)
    recorded = (ckpt.get("metadata") or {}).get("dataset")
    if args.dataset is None:
        if recorded is not None and recorded not in DATASETS:
            raise ValueError(
                f"checkpoint {path} records the data set {recorded!r}, which art-stn cannot load; pass --dataset."
            )
        args.dataset = recorded or "digits"
    elif recorded is not None and recorded != args.dataset:
        raise ValueError(
            f"checkpoint {path} was trained on {recorded}, not on the data set {args.dataset} given by --dataset: drop "
            f"--dataset to use {recorded}, or pass a checkpoint trained on {args.dataset}."
        )
    smoothing = ckpt["smoothing"]
    shape, nb_classes = tuple(smoothing.get("input_shape", ())), smoothing.get("nb_classes")
    classes, expected = DATASETS[args.dataset]
    if shape != expected or nb_classes != classes:
        raise ValueError(
            f"checkpoint {path} takes inputs of shape {shape} in {nb_classes} classes, but the data set {args.dataset} "
            f"has {expected} in {classes}: pass the --dataset it was trained on."
        )
    return ckpt


#: The classifier setting of an `auto | on | off` speed flag (None: measured or automatic).
_SPEED_CHOICE: dict[str, bool | None] = {"auto": None, "on": True, "off": False}


def _channels_last(args: argparse.Namespace) -> bool | None:
    """
    :param args: Parsed arguments with `channels_last` (`auto`, `on`, `off`).
    :return: The classifier's `channels_last`: None (measured), True or False.
    """
    return _SPEED_CHOICE[args.channels_last]


def _speed(args: argparse.Namespace) -> dict[str, bool | None]:
    """
    :param args: Parsed arguments of a sampling command (`channels_last`, `compile`: `auto`, `on`, `off`).
    :return: The classifier's `channels_last` and `compile_forward` (None: measured / automatic).
    """
    return {"channels_last": _channels_last(args), "compile_forward": _SPEED_CHOICE[args.compile]}


def _check_writable(path: Path) -> None:
    """
    Fail before any work when `path` cannot be written.

    :param path: The output file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    probe = path.with_name(f"{path.name}.probe{os.getpid()}")
    try:
        probe.write_bytes(b"")
    finally:
        probe.unlink(missing_ok=True)


def _load(args: argparse.Namespace, train: bool = False, max_images: int | None = None):
    """
    :param args: Parsed arguments with `dataset`, `data_dir`, `download`, `cache_dir`.
    :param train: The training split.
    :param max_images: Keep at most this many images.
    :return: `(x, y)`.
    """
    return load_dataset(
        args.dataset, args.data_dir, train=train, download=args.download, max_images=max_images, cache=args.cache_dir
    )


def _check_shape(x: np.ndarray, clf: STNClassifier, args: argparse.Namespace) -> None:
    """
    Refuse data whose images do not fit the classifier, before a results file is written.

    :param x: The loaded images.
    :param clf: The classifier of `--checkpoint`.
    :param args: Parsed arguments with `checkpoint` and `dataset`.
    :raises ValueError: naming the checkpoint and the data set.
    """
    if tuple(x.shape[1:]) != tuple(clf.input_shape):
        raise ValueError(
            f"checkpoint {args.checkpoint} takes inputs of shape {tuple(clf.input_shape)}, but the images of "
            f"{args.dataset} have shape {tuple(x.shape[1:])}."
        )


def demo(args: argparse.Namespace) -> None:
    """
    `art-stn demo`: see :func:`art_stn.demo.run_demo`.

    :param args: Parsed arguments.
    """
    from art_stn.demo import DEMO_RADII, run_demo

    run_demo(
        out=args.out,
        scale=args.scale,
        gamma=args.gamma,
        epochs=args.epochs,
        n=args.n,
        n0=args.n0,
        alpha=args.alpha,
        seed=args.seed,
        device=args.device,
        radii=DEMO_RADII,
        verbose=not args.quiet,
    )


def train(args: argparse.Namespace) -> None:
    """
    `art-stn train`: certified training by `--method`, with a checkpoint after every epoch.

    :param args: Parsed arguments.
    """
    name = args.model or DEFAULT_MODELS.get(args.dataset)
    if name is None:
        raise ValueError(f"--model is required for {args.dataset}; choose one of {sorted(MODELS)}.")
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}.")
    nb_classes, shape = DATASETS[args.dataset]
    if MODELS[name].input_shape != shape:
        raise ValueError(f"model {name} takes inputs {MODELS[name].input_shape}, but {args.dataset} has {shape}.")
    if args.epochs < 1 or args.batch_size < 1:
        raise ValueError("--epochs and --batch-size must be >= 1.")
    if args.max_train is not None and args.max_train < 1:
        raise ValueError(f"--max-train must be >= 1 (the number of training images to use); got {args.max_train}.")
    if args.val_size is not None and args.val_size < 0:
        raise ValueError(f"--val-size must be >= 0 (held-out training images; 0: no validation); got {args.val_size}.")
    given = {"--gamma": args.gamma, "--detach-target": args.detach_target or None, "--lbd": args.lbd, "--m": args.m}
    given |= {"--eta": args.eta, "--art-args": args.art_args}
    owners = {"--gamma": ("stn",), "--detach-target": ("stn",), "--art-args": tuple(ART_TRAINERS)}
    for flag, value in given.items():
        methods = owners.get(flag, ("consistency",))
        if value is not None and args.method not in methods:
            raise ValueError(f"{flag} applies to --method {' / '.join(methods)}, not to --method {args.method}.")
    if args.method == "consistency" and args.lbd is None:
        raise ValueError(
            "--method consistency needs --lbd (Jeong & Shin's MNIST values: 10 / 5 / 5 at sigma 0.25 / 0.5 / 1)."
        )
    art_method = args.method in ART_TRAINERS
    deterministic = args.method in DETERMINISTIC
    if deterministic and (args.scale is not None or args.noise != "gaussian"):
        raise ValueError(f"--method {args.method} trains a deterministic model, without noise: drop --scale / --noise.")
    if art_method and args.noise != "gaussian":
        raise ValueError(f"--method {args.method} trains ART's estimator, which draws Gaussian noise only.")
    if args.scale is None:
        args.scale = 0.25
    art_kwargs = art_settings(args.art_args or "", args.method) if art_method else {}
    if art_method and args.checkpoint_every is not None:
        raise ValueError(
            f"--checkpoint-every applies to --method gaussian / stn / consistency: {args.method} trains through ART's "
            "fit an epoch at a time, and is checkpointed after every epoch."
        )
    out = Path(args.out)
    if art_method and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(f"--method {args.method} trains through ART's fit, which has no DDP: run it in one process.")
    _check_writable(out)
    init_from_env(args.device)  # under torchrun: join the process group; the trainer then uses DDP
    x_tr, y_tr = _load(args, train=True, max_images=args.max_train)
    if args.val_size is None:
        args.val_size = min(1000, len(x_tr) // 10)
    if args.val_size >= len(x_tr):
        raise ValueError(f"--val-size {args.val_size} leaves no training image of {len(x_tr)}: choose fewer.")
    validation = None
    if args.val_size:  # the last images of the training split, held out: no test image is seen while training
        validation = (x_tr[-args.val_size :], y_tr[-args.val_size :])
        x_tr, y_tr = x_tr[: -args.val_size], y_tr[: -args.val_size]
    torch.manual_seed(args.seed)
    model = build_model(name, num_classes=nb_classes)
    optimizer = build_optimizer(model, name, args.optimizer, args.lr, args.momentum, args.weight_decay)
    scheduler = build_scheduler(optimizer, args.lr_schedule, args.epochs, args.lr_step, args.lr_decay)
    metadata = {"model": name, "dataset": args.dataset, "train_images": len(x_tr), "val_images": args.val_size}
    base = (model, torch.nn.CrossEntropyLoss(), shape, nb_classes)
    common = {"optimizer": optimizer, "scale": args.scale, "clip_values": (0.0, 1.0), "device_type": _device_type(args)}
    layout = {"channels_last": _channels_last(args)}
    if deterministic:
        estimator, plain = deterministic_trainer(args.method, base, common, art_kwargs, args.batch_size)
        # The smoothed view only carries the model through the shared training loop; the checkpoint records no noise.
        clf = STNClassifier.from_estimator(plain, scale=1.0, alpha=0.001, seed=args.seed, **layout)
        trainer = ARTEstimatorTrainer(clf, estimator, seed=args.seed, metadata=metadata)
    elif art_method:
        import art.estimators.certification.randomized_smoothing as art_rs

        estimator = getattr(art_rs, ART_TRAINERS[args.method][0])(*base, **common, **art_kwargs)
        clf = STNClassifier.from_estimator(estimator, alpha=0.001, seed=args.seed, **layout)
        trainer = ARTEstimatorTrainer(clf, estimator, seed=args.seed, metadata=metadata)
    else:
        clf = STNClassifier(*base, noise=args.noise, seed=args.seed, **common, **layout)
        if args.method == "consistency":
            m, eta = 2 if args.m is None else args.m, 0.5 if args.eta is None else args.eta
            trainer = ConsistencyTrainer(clf, lbd=args.lbd, m=m, eta=eta, seed=args.seed, metadata=metadata)
        elif args.method == "gaussian":
            trainer = GaussianAugmentationTrainer(clf, seed=args.seed, metadata=metadata)
        else:
            trainer = STNTrainer(
                clf,
                gamma=1.0 if args.gamma is None else args.gamma,
                seed=args.seed,
                metadata=metadata,
                detach_target=args.detach_target,
            )
    resume_from = out if args.resume and out.exists() else None
    if resume_from is not None and is_main():
        done = int(load_checkpoint(out)["epoch"]) + 1
        print(f"art-stn train: resuming {out} after epoch {done} of {args.epochs}", file=sys.stderr)
    history = trainer.fit(
        x_tr,
        y_tr,
        nb_epochs=args.epochs,
        batch_size=args.batch_size,
        validation_data=validation,
        scheduler=scheduler,
        verbose=not args.quiet,
        checkpoint=out,
        resume_from=resume_from,
        checkpoint_every=None if art_method else (args.checkpoint_every or 200),
    )
    if history and is_main():
        last = history[-1]
        loss = "n/a (ART's fit reports none)" if np.isnan(last["loss"]) else f"{last['loss']:.4f}"
        accuracy = f"held-out clean accuracy {100 * last['val_clean_acc']:.1f}%, " if "val_clean_acc" in last else ""
        if "val_noisy_acc" in last:
            accuracy += f"under noise {100 * last['val_noisy_acc']:.1f}%, "
        print(
            f"epoch {last['epoch']} ({args.method}): loss {loss}, {accuracy}{last['seconds']:.1f} s; checkpoint {out}"
        )


def certify(args: argparse.Namespace) -> None:
    """
    `art-stn certify`: one results line per example, resumable.

    :param args: Parsed arguments.
    """
    if args.skip < 1 or (args.max is not None and args.max < 1):
        raise ValueError("--skip and --max must be >= 1.")
    out = Path(args.out)
    _check_writable(out)
    ctx = init_from_env(args.device)
    if ctx.distributed and out.exists() and not (args.resume or args.overwrite):
        raise FileExistsError(f"{out} exists: pass --resume to continue it or --overwrite to replace it.")
    overrides = {"seed": args.seed, **_speed(args)}
    if args.bound is not None:
        overrides["bound"] = args.bound
    if args.interval is not None:
        overrides["interval"] = args.interval
    ckpt = _checkpoint_for_data(args, args.checkpoint)
    clf = STNClassifier.load(args.checkpoint, device_type=_device_type(args), checkpoint=ckpt, **overrides)
    x, y = _load(args)
    _check_shape(x, clf, args)
    if args.stages == "radii":
        settings = (float(clf.scale), clf.noise, clf.bound, clf.interval, clf.nb_classes, args.fill)
        args.stages = radius_stages(args.n, args.alpha, args.radii, *settings)
    indices = np.arange(0, len(x), args.skip)[: args.max]
    target = out
    if ctx.distributed:  # rank r certifies the r-th, (r+K)-th, ... examples into its own shard file
        indices, target = shard_indices(indices, ctx), shard_path(out, ctx.rank, ctx.world_size)
    meta = {"checkpoint": Path(args.checkpoint).name, "dataset": args.dataset, "skip": args.skip}
    if args.resume and out.is_file() and out.stat().st_size and is_main():
        rows = sum(1 for line in out.read_text().splitlines() if line[:1].isdigit())
        print(f"art-stn certify: resuming {out}: {rows} of {len(indices)} examples already certified", file=sys.stderr)
    certify_to_file(
        clf,
        x[indices],
        y[indices],
        indices,
        target,
        n=args.n,
        n0=args.n0,
        alpha=args.alpha,
        batch_size=args.batch_size,
        meta=meta,
        resume=args.resume,
        overwrite=args.overwrite,
        verbose=not args.quiet and is_main(),
        radii=args.radii,
        sequential=args.sequential,
        stages=args.stages,
        merged=out if ctx.distributed else None,
        futility=FUTILITY_LEVEL if args.futility is None else args.futility,
    )
    if ctx.distributed:
        barrier()
        if is_main():
            merge_shards(out, ctx.world_size, resume=args.resume)
        barrier()
    if not is_main():
        return
    _, table, _ = read_results(out, expect="certify")
    radii = [0.0, 0.25, 0.5, 1.0] if args.radii is None else args.radii
    acc = certified_accuracy(table["predict"], table["radius"], table["label"], radii)
    cells = ", ".join(f"{r:g}: {100 * a:.1f}%" for r, a in zip(radii, acc, strict=True))
    print(f"{len(table['idx'])} examples in {out}; certified accuracy ({clf.bound}, L{clf.norm}) {cells}")
    n, alpha = args.n, args.alpha
    if args.sequential:
        sizes, alphas = stage_schedule(args.n, args.alpha, args.stages)
        n, alpha = sizes[-1], alphas[-1]
        spent = int(table["samples"].sum())
        print(
            f"sequential: {spent:,} noisy samples ({spent / max(len(table['idx']), 1):,.0f} per example; fixed n "
            f"would take {(args.n + args.n0) * len(table['idx']):,}), stages {sizes}"
        )
    ceiling = max_certifiable_radius(n, alpha, float(clf.scale), clf.noise, clf.interval, clf.nb_classes)
    cells = ", ".join(f"{name} {r:.3g}" for name, r in ceiling.items())
    print(f"largest radius these settings can certify (every sample on one class): {cells}")


def attack(args: argparse.Namespace) -> None:
    """
    `art-stn attack`: robust accuracy over attack sizes.

    :param args: Parsed arguments.
    """
    out = Path(args.out)
    _check_writable(out)
    overrides = {"seed": args.seed, **_speed(args)}
    if args.eot_samples is not None:
        overrides["eot_samples"] = args.eot_samples
    if args.sample_size is not None:
        overrides["sample_size"] = args.sample_size
    ckpt = _checkpoint_for_data(args, args.checkpoint)
    if ckpt.get("deterministic"):  # a model without noise is attacked as the plain classifier
        clf = plain_classifier(args.checkpoint, ckpt, _device_type(args))
    else:
        clf = STNClassifier.load(args.checkpoint, device_type=_device_type(args), checkpoint=ckpt, **overrides)
    source = None
    if args.attack.startswith("transfer"):
        if args.source_checkpoint is None:
            raise ValueError(f"--attack {args.attack} needs --source-checkpoint (the model the attack is crafted on).")
        src_ckpt = _checkpoint_for_data(args, args.source_checkpoint)
        source = plain_classifier(args.source_checkpoint, src_ckpt, _device_type(args))
    x, y = _load(args, max_images=None if args.skip > 1 else args.max)
    indices = np.arange(0, len(x), args.skip)[: args.max]
    _check_shape(x, clf, args)
    robust_accuracy_to_file(
        clf,
        x[indices],
        y[indices],
        args.attack,
        args.eps,
        out,
        source=source,
        max_iter=args.max_iter,
        batch_size=args.batch_size,
        meta={
            "checkpoint": Path(args.checkpoint).name,
            "dataset": args.dataset,
            "skip": args.skip,
            **({"source": Path(args.source_checkpoint).name} if source is not None else {}),
        },
        resume=args.resume,
        overwrite=args.overwrite,
        verbose=not args.quiet,
        indices=indices,
        restarts=args.restarts,
    )
    summary = attack_summary(read_results(out, expect="attack")[1])
    rows = ", ".join(f"{e:g}: {100 * a:.1f}%" for e, a in zip(summary["eps"], summary["accuracy"], strict=True))
    print(f"{args.attack} robust accuracy by attack size ({len(indices)} images): {rows} -> {out}")


def plot(args: argparse.Namespace) -> None:
    """
    `art-stn plot`: a figure from results files, and the Table-1 style summary for certify results.

    :param args: Parsed arguments.
    """
    loaded = {Path(p).stem: read_results(p) for p in args.results}
    kinds = {kind for _, _, kind in loaded.values()}
    if len(kinds) != 1:
        raise ValueError("results files of certify and attack cannot share one plot; plot them separately.")
    if kinds == {"certify"}:
        curves = {}
        max_r = max(float(np.nanmax(np.where(np.isfinite(t["radius"]), t["radius"], 0))) for _, t, _ in loaded.values())
        norm = 1
        for stem, (_, table, _) in loaded.items():
            for column in [c for c in table if c.startswith("radius_")]:
                norm = 1 if column == "radius_laplace" else 2
                curves[f"{stem} {column[7:]}"] = certified_accuracy_curve(
                    bound_predictions(table, column[7:]),
                    table[column],
                    table["label"],
                    max_radius=max(max_r * 1.05, 1e-3),
                )
        path = plot_certified_accuracy(curves, args.out, norm=norm, title=args.title or "Certified accuracy")
        print(summary_table({k: (m, t) for k, (m, t, _) in loaded.items()}, args.radii))
    else:
        accs = {}
        for stem, (meta, table, _) in loaded.items():
            summary = attack_summary(table)
            accs[f"{stem} ({meta.get('attack', '?')})"] = (summary["eps"], summary["accuracy"])
            for e, a in zip(summary["eps"], summary["accuracy"], strict=True):
                print(f"{stem}\teps {e:g}\trobust accuracy {100 * a:.1f}%")
        xlabel = (
            "attack size (Linf)"
            if any(str(m.get("attack", "")).endswith("linf") for m, _, _ in loaded.values())
            else "attack size (L2)"
        )
        path = plot_robust_accuracy(accs, args.out, xlabel=xlabel, title=args.title or "Robust accuracy under attack")
    print(f"wrote {path}")
