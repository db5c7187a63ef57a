"""
The `art-stn` command line. It only parses arguments and calls the library.
"""

from __future__ import annotations

import argparse
import sys

from art_stn import __version__


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
    sub.add_parser("demo", help="train STN and Gaussian augmentation on digits, certify, plot (coming soon)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """
    Run the `art-stn` command line.

    :param argv: The arguments (default: `sys.argv[1:]`).
    :return: The exit status.
    """
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        print("art-stn demo is coming: it will train STN on the digits data set and certify it.")
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
