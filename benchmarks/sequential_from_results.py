"""
Sequential against fixed-n certification, from two `art-stn certify` results files of the same model and inputs.

Reads FIXED (written without `--sequential`) and SEQUENTIAL (written with `--sequential --radii ...`; it has a
`samples` column) and prints, over the inputs both files hold: the number of inputs, the forward passes of each
(fixed: inputs x (n + n0) from its header; sequential: the sum of `samples`, `n0` included), their ratio, and the
certified accuracy at each requested radius for both with the difference in percentage points. An input counts as
certified at radius r when `predict == label` and `radius >= r` (`radius` is the radius of the file's configured
bound, Rényi by default; the files round it to 6 significant digits).

Usage:
    python benchmarks/sequential_from_results.py FIXED.tsv SEQUENTIAL.tsv [--radii 0.25,0.5,0.75,1]

The radii default to those recorded in SEQUENTIAL's header.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

try:
    from art_stn.evaluate import read_results
except ImportError:  # moved by a refactoring
    from art_stn.results import read_results

# Settings that must agree for the comparison to mean anything (the model, the noise and the guarantee).
SAME_SETTINGS = ("n", "n0", "alpha", "noise", "scale", "bound", "model_sha256", "dataset")


def certified_accuracy(columns: dict[str, np.ndarray], radii: Sequence[float]) -> list[float]:
    """
    :param columns: Results-file columns (`predict`, `label`, `radius`).
    :param radii: The radii.
    :return: Per radius the fraction of rows with `predict == label` and `radius >= r`.
    """
    correct = columns["predict"] == columns["label"]
    return [float(np.mean(correct & (columns["radius"] >= r))) for r in radii]


def compare(fixed_path: str, sequential_path: str, radii: Sequence[float] | None = None) -> dict[str, Any]:
    """
    Compare the two files over the inputs both hold.

    :param fixed_path: Results of fixed-n certification.
    :param sequential_path: Results of sequential certification (with a `samples` column).
    :param radii: The radii of the comparison (default: SEQUENTIAL's recorded `radii`).
    :return: `images`, `forward_passes` and `certified_accuracy` (per run, `fixed` / `sequential`), `ratio`,
             `radii`, `only_in` (inputs in one file only, per run) and `differing_settings`.
    :raises ValueError: if SEQUENTIAL has no `samples` column, no radii are known, or the files share no input.
    """
    meta_f, fixed, _ = read_results(fixed_path, expect="certify")
    meta_s, seq, _ = read_results(sequential_path, expect="certify")
    if "samples" not in seq:
        raise ValueError(f"{sequential_path} has no `samples` column: not a `--sequential` results file.")
    radii = meta_s.get("radii") if radii is None else radii
    if not radii:
        raise ValueError("no radii: pass `--radii` (SEQUENTIAL's header records none).")
    common = np.intersect1d(fixed["idx"], seq["idx"])
    if len(common) == 0:
        raise ValueError("the two files hold no input in common.")
    runs = {
        "fixed": {c: v[np.isin(fixed["idx"], common)] for c, v in fixed.items()},
        "sequential": {c: v[np.isin(seq["idx"], common)] for c, v in seq.items()},
    }
    passes = {
        "fixed": len(common) * (int(meta_f["n"]) + int(meta_f["n0"])),
        "sequential": int(runs["sequential"]["samples"].sum()),
    }
    return {
        "images": len(common),
        "radii": [float(r) for r in radii],
        "forward_passes": passes,
        "ratio": passes["fixed"] / passes["sequential"],
        "certified_accuracy": {name: certified_accuracy(cols, radii) for name, cols in runs.items()},
        "only_in": {"fixed": len(fixed["idx"]) - len(common), "sequential": len(seq["idx"]) - len(common)},
        "differing_settings": [k for k in SAME_SETTINGS if meta_f.get(k) != meta_s.get(k)],
        "settings": meta_f,
    }


def table(result: dict[str, Any]) -> str:
    """
    :param result: Output of :func:`compare`.
    :return: A Markdown table: forward passes and certified accuracy of both runs and their difference.
    """
    radii = result["radii"]
    acc = result["certified_accuracy"]
    lines = [
        "| run | images | forward passes | " + " | ".join(f"cert. acc. r = {r:g}" for r in radii) + " |",
        "|---|---:|---:|" + "---:|" * len(radii),
    ]
    for name in ("fixed", "sequential"):
        cells = " | ".join(f"{100 * a:.1f}%" for a in acc[name])
        lines.append(f"| {name} | {result['images']} | {result['forward_passes'][name]:,} | {cells} |")
    diff = " | ".join(f"{100 * (s - f):+.1f} pp" for f, s in zip(acc["fixed"], acc["sequential"], strict=True))
    lines.append(f"| sequential - fixed | | {result['ratio']:.2f}x fewer | {diff} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fixed", help="results file of fixed-n certification")
    parser.add_argument("sequential", help="results file of sequential certification (`samples` column)")
    parser.add_argument("--radii", default=None, help="comma-separated radii (default: SEQUENTIAL's)")
    args = parser.parse_args(argv)
    radii = None if args.radii is None else [float(r) for r in args.radii.split(",")]
    try:
        result = compare(args.fixed, args.sequential, radii)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    s = result["settings"]
    print(
        f"{result['images']} inputs in both files; n = {s['n']}, n0 = {s['n0']}, alpha = {s['alpha']}, "
        f"{s.get('noise', 'gaussian')} scale = {s.get('scale')}, bound = {s.get('bound')}"
    )
    if any(result["only_in"].values()):
        print(f"left out (in one file only): {result['only_in']}")
    if result["differing_settings"]:
        print(f"warning: the files differ in {result['differing_settings']}")
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
