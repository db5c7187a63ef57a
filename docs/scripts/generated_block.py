"""
The generated blocks of the docs pages: Markdown between two marker comments, printed, written or checked by the
scripts that make it from committed results (`demo_numbers.py`, `certified_training_report.py`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def between(text: str, begin: str, end: str) -> str:
    """
    :param text: A page's text.
    :param begin: The opening marker.
    :param end: The closing marker.
    :return: The block from `begin` to `end`, both included (empty when a marker is missing).
    """
    if begin not in text or end not in text:
        return ""
    return text[text.index(begin) : text.index(end) + len(end)]


def main(description: str, page: Path, begin: str, end: str, make) -> int:
    """
    The command line of a generating script: print the block, `--write` it between the page's markers, or `--check`
    that the page holds it.

    :param description: The script's help text.
    :param page: The page.
    :param begin: The opening marker.
    :param end: The closing marker.
    :param make: Called with `write` (bool): returns the block, and may write its own assets when `write` is set.
                 It may return a list of blocks instead: the first is the one between `begin` and `end`, each
                 other one is found on the page by its own first and last lines (its markers).
    :return: The exit status (1 when `--check` finds the page out of date).
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"replace the generated block of {page.name}")
    mode.add_argument("--check", action="store_true", help="exit 1 when the page's block differs")
    args = parser.parse_args()
    made, text = make(args.write), page.read_text()
    made = [made] if isinstance(made, str) else list(made)
    pairs = [(begin, end)] + [(block.splitlines()[0], block.splitlines()[-1]) for block in made[1:]]
    olds = [between(text, b, e) for b, e in pairs]
    if args.write:
        if not all(olds):
            sys.exit(f"{page}: the markers are missing")
        for old, new in zip(olds, made, strict=True):
            text = text.replace(old, new)
        page.write_text(text)
        print(f"wrote the generated blocks of {page}")
    elif args.check:
        if olds != made:
            print(f"{page}: a generated block differs from the committed results; run the script with --write")
            return 1
    else:
        print("\n\n".join(made))
    return 0
