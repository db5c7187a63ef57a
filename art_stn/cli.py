"""
The `art-stn` command line. It only parses arguments and calls the library.
"""

from __future__ import annotations

import argparse
import sys

from art_stn import __version__

DEMO_RADII = (0.0, 0.25, 0.5, 0.75, 1.0)


def build_parser() -> argparse.ArgumentParser:
    """
    Build the argument parser of the `art-stn` command.

    :return: The parser, with one sub-command per task.
    """
    parser = argparse.ArgumentParser(
        prog="art-stn",
        description="Certified adversarial robustness with additive noise (Li et al. 2019) for ART.",
    )
    parser.add_argument("--version", action="version", version=f"art-stn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="train STN and Gaussian augmentation on the digits, certify both, print a table and plot",
        description="On the scikit-learn digits: train stability training (STN, gamma > 0) and the Gaussian "
        "augmentation baseline (gamma = 0) with the same seed and budget, certify the test split with the Renyi "
        "and Cohen bounds, print certified accuracy at a row of radii, and write a plot and a JSON results file.",
    )
    demo.add_argument("--out", default="art-stn-demo", help="output folder (default: ./art-stn-demo)")
    demo.add_argument("--sigma", type=float, default=0.5, help="Gaussian noise sigma (default: 0.5)")
    demo.add_argument("--gamma", type=float, default=2.0, help="STN stability weight (default: 2.0)")
    demo.add_argument("--epochs", type=int, default=40, help="training epochs per model (default: 40)")
    demo.add_argument("--n", type=int, default=1000, help="noisy samples per certificate (default: 1000)")
    demo.add_argument("--n0", type=int, default=100, help="samples selecting the top class (default: 100)")
    demo.add_argument("--alpha", type=float, default=0.001, help="failure probability (default: 0.001)")
    demo.add_argument("--seed", type=int, default=0, help="seed of training and certification (default: 0)")
    demo.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device (default: cpu)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    """
    Run the `art-stn` command line.

    :param argv: The arguments (default: `sys.argv[1:]`).
    :return: The exit status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from art_stn.demo import run_demo

        try:
            run_demo(
                out=args.out,
                sigma=args.sigma,
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
        except (ValueError, TypeError, OSError) as err:
            parser.exit(2, f"art-stn demo: error: {err}\n")
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
