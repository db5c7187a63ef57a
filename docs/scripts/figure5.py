"""
Reproduce Figure 5 of Li et al. (2019): the Renyi bound (Theorem 2) against PixelDP, with Cohen et al. beside them.

Usage: `python docs/scripts/figure5.py [OUT.png]` (default: docs/assets/figure5.png).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from art_stn.bounds import cohen_l2_radius, pixeldp_l2_radius, renyi_l2_radius  # noqa: E402


def make_figure(out: Path) -> Path:
    """
    Draw the comparison and save it.

    :param out: Path of the PNG to write.
    :return: The path written.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    p1 = np.linspace(0.5, 0.999, 300)
    ax = axes[0]
    for name, fn, style in (
        ("Renyi (Li et al.)", renyi_l2_radius, "-"),
        ("PixelDP", pixeldp_l2_radius, "--"),
        ("Cohen et al.", cohen_l2_radius, ":"),
    ):
        ax.plot(p1, fn(p1, 1 - p1, 1.0), style, label=name)
    ax.set(
        xlabel="$p_{(1)}$  (binary: $p_{(2)} = 1 - p_{(1)}$)",
        ylabel="certified L2 radius / $\\sigma$",
        title="Two classes",
    )
    ax.legend()
    ax = axes[1]
    for p2, colour in ((0.01, "C0"), (0.1, "C1"), (0.3, "C2")):
        q1 = np.linspace(p2, 1 - p2, 300)
        ax.plot(q1, renyi_l2_radius(q1, p2, 1.0), "-", color=colour, label=f"Renyi, $p_{{(2)}}$={p2}")
        ax.plot(q1, pixeldp_l2_radius(q1, p2, 1.0), "--", color=colour, label=f"PixelDP, $p_{{(2)}}$={p2}")
    ax.set(xlabel="$p_{(1)}$", ylabel="certified L2 radius / $\\sigma$", title="Many classes, fixed $p_{(2)}$")
    ax.legend(fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[1] / "assets" / "figure5.png"
    print(make_figure(Path(sys.argv[1]) if len(sys.argv) > 1 else default))
