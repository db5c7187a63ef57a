"""
What the `art-stn` command line needs besides its parser (:mod:`art_stn.cli`): the help formatter, the checks made
before torch is imported, so that a typo answers at once, and warnings as one plain line. Imports neither torch nor
ART.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import textwrap

__all__ = ["HelpFormatter", "early_checks", "plain_warning"]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """
    Help that shows every option's default: `(default: X)` is appended to an option's help unless the help already
    says what its default is, or the option has no value to show (a flag, or None explained in the help).
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        """
        :param action: An argument.
        :return: Its help, with its default appended where the help does not give it.
        """
        text = action.help or ""
        no_value = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "default" in text or no_value or not action.option_strings:
            return action.help
        return super()._get_help_string(action)

    def _split_lines(self, text: str, width: int) -> list[str]:
        """
        :param text: An option's help.
        :param width: The column width.
        :return: Its lines, wrapped at spaces only: a name such as `mnist-small-cnn` or a flag is never cut at a hyphen.
        """
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False, break_long_words=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        """
        :param text: A description.
        :param width: The column width.
        :param indent: The indent of every line.
        :return: The text filled at spaces only.
        """
        return textwrap.fill(
            " ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False,
            break_long_words=False,
        )  # fmt: skip


def plain_warning(command: str, message: Warning | str, *args: object, **kwargs: object) -> None:
    """
    A warning for a command-line user: one plain line on stderr, without the source path and code line that
    Python's default shows.

    :param command: The sub-command.
    :param message: The warning.
    :param args: `warnings.showwarning`'s other arguments (category, file name, line number, ...), unused.
    :param kwargs: Unused.
    """
    print(f"art-stn {command}: warning: {message}", file=sys.stderr)


def early_checks(args: argparse.Namespace) -> None:
    """
    The checks that need no model, made before torch is imported so that a typo answers at once: the checkpoint
    files exist, and the counts and sizes are in range (the same messages as the library's own checks).

    :param args: Parsed arguments.
    :raises FileNotFoundError: for a missing checkpoint.
    :raises ValueError: for a value out of range, naming it.
    """
    for name in ("checkpoint", "source_checkpoint"):
        path = getattr(args, name, None)
        if args.command in ("certify", "attack") and path is not None and not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint not found: {path}")
    ranges = {
        "certify": {"n": 1, "n0": 0, "skip": 1, "max": 1, "batch_size": 1},
        "attack": {
            "max": 1,
            "skip": 1,
            "max_iter": 1,
            "restarts": 0,
            "batch_size": 1,
            "eot_samples": 1,
            "sample_size": 1,
        },
        "train": {"epochs": 1, "batch_size": 1, "max_train": 1, "val_size": 0},
    }.get(args.command, {})
    for name, lowest in ranges.items():
        value = getattr(args, name, None)
        if value is not None and value < lowest:
            raise ValueError(f"--{name.replace('_', '-')} (`{name}`) must be >= {lowest}; got {value}.")
    alpha = getattr(args, "alpha", None)
    if args.command == "certify" and alpha is not None and not 0.0 < alpha < 1.0:
        raise ValueError(f"`alpha` must be in (0, 1); got {alpha}.")
    scale = getattr(args, "scale", None)
    if args.command in ("train", "demo") and scale is not None and not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"`scale` must be finite and > 0; got {scale}.")
