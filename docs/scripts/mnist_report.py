"""
The MNIST reproduction report (issue 12): Figure 1 (certified accuracy, two protocols), Figure 3 (robust accuracy
under PGD with EoT gradients beside the certified curve), the Table-1 rows, STN minus its ablation with 95%
intervals, and what each protocol can certify at all, from the results files of `examples/paper_mnist.sh`.

Usage: `python docs/scripts/mnist_report.py [RESULTS_DIR] [--sigma 0.7] [--assets docs/assets]`; prints Markdown.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from art_stn.evaluate import (  # noqa: E402
    certified_accuracy,
    certified_accuracy_difference,
    max_certifiable_radius,
    read_results,
)
from art_stn.metrics import bound_predictions  # noqa: E402

MODELS = {"stn": "STN (gamma = 1)", "noise": "no STN (gamma = 0)", "stn-detach": "STN, detached target"}
PROTOCOLS = {"paper": "n = 100, n0 = 0, alpha = 0.05", "tight": "n = 10,000, n0 = 100, alpha = 0.001"}
STYLES = {"renyi": "-", "cohen": "--", "cohen-top2": (0, (5, 1)), "pixeldp": ":"}
COLORS = {"stn": "tab:blue", "noise": "tab:orange", "stn-detach": "tab:green"}
TABLE_RADII = (0.5, 1.0, 1.4, 1.58)


def load(results: Path, sigma: float) -> dict[tuple[str, str], tuple[dict, dict[str, np.ndarray]]]:
    """
    :return: `(model, protocol) -> (settings, table)` for every results file present.
    """
    found = {}
    for model in MODELS:
        for protocol in PROTOCOLS:
            path = results / f"{model}-sigma{sigma:g}-{protocol}.tsv"
            if path.is_file():
                meta, table, _ = read_results(path, expect="certify")
                found[model, protocol] = (meta, table)
    return found


def figure1(found: dict, sigma: float, out: Path) -> Path:
    """
    Certified accuracy against L2 radius: one panel per protocol, one colour per model, one line style per bound.
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True, sharey=True)
    grid = np.linspace(0, 2.4, 241)
    for ax, (protocol, text) in zip(axes, PROTOCOLS.items(), strict=True):
        for (model, prot), (meta, table) in found.items():
            if prot != protocol:
                continue
            for bound in [c[7:] for c in table if c.startswith("radius_")]:
                acc = certified_accuracy(
                    bound_predictions(table, bound), table[f"radius_{bound}"], table["label"], grid
                )
                label = f"{MODELS[model]}, {bound}"
                ax.plot(grid, 100 * acc, linestyle=STYLES.get(bound, "-"), color=COLORS[model], lw=1.8, label=label)
            ceiling = max_certifiable_radius(meta["n"], meta["alpha"], sigma, nb_classes=10)["renyi"]
            ax.axvline(ceiling, color="grey", lw=0.8, ls=":")
            ax.text(ceiling, 3, f" Rényi ceiling {ceiling:.2f}", color="grey", fontsize=8)
        n_images = next((len(t["idx"]) for (m, p), (_, t) in found.items() if p == protocol), 0)
        ax.set(title=f"{text} ({n_images} test images)", xlabel="L2 radius", ylim=(0, 100))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("certified accuracy (%)")
    fig.suptitle(f"MNIST, sigma = {sigma:g}: certified accuracy (paper's Figure 1, MNIST panel)")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def figure3(results: Path, found: dict, sigma: float, out: Path) -> Path | None:
    """
    Robust accuracy of the smoothed STN model under PGD (L2 and Linf, EoT gradients) beside its certified curve.
    """
    l2, linf = results / f"stn-sigma{sigma:g}-pgd-l2.tsv", results / f"stn-sigma{sigma:g}-pgd-linf.tsv"
    if not l2.is_file() and not linf.is_file():
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), constrained_layout=True)
    if l2.is_file():
        meta, table, _ = read_results(l2, expect="attack")
        axes[0].plot(table["eps"], 100 * table["accuracy"], "o-", label=f"PGD-L2, EoT ({meta['examples']} images)")
    for protocol in PROTOCOLS:
        if ("stn", protocol) in found:
            _, table = found["stn", protocol]
            grid = np.linspace(0, 4, 161)
            acc = certified_accuracy(bound_predictions(table, "renyi"), table["radius_renyi"], table["label"], grid)
            axes[0].plot(grid, 100 * acc, "--", label=f"certified (Rényi, {protocol} protocol)")
    axes[0].set(xlabel="L2 attack size / radius", ylabel="accuracy (%)", ylim=(0, 100), title="L2")
    if linf.is_file():
        meta, table, _ = read_results(linf, expect="attack")
        axes[1].plot(table["eps"], 100 * table["accuracy"], "o-", label=f"PGD-Linf, EoT ({meta['examples']} images)")
    axes[1].set(xlabel="Linf attack size", ylim=(0, 100), title="Linf")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"MNIST, sigma = {sigma:g}, STN: robust accuracy under white-box PGD (paper's Figure 3)")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def tables(found: dict, sigma: float) -> str:
    """
    :return: Markdown: the Table-1 rows, STN minus no-STN with 95% intervals, and the protocol ceilings.
    """
    lines = ["| model | protocol | bound | clean (certified at 0) | " + " | ".join(map(str, TABLE_RADII)) + " |"]
    lines.append("|---" * (4 + len(TABLE_RADII)) + "|")
    for (model, protocol), (_, table) in found.items():
        for bound in [c[7:] for c in table if c.startswith("radius_")]:
            acc = certified_accuracy(
                bound_predictions(table, bound), table[f"radius_{bound}"], table["label"], [0.0, *TABLE_RADII]
            )
            cells = " | ".join(f"{r:g} ({100 * a:.1f}%)" for r, a in zip(TABLE_RADII, acc[1:], strict=True))
            lines.append(
                f"| {MODELS[model]} | {protocol} ({len(table['idx'])}) | {bound} | {100 * acc[0]:.1f}% | {cells} |"
            )
    out = ["\n".join(lines), ""] if found else []
    radii = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
    for protocol in PROTOCOLS:
        if ("stn", protocol) in found and ("noise", protocol) in found:
            a, b = found["stn", protocol][1], found["noise", protocol][1]
            if not np.array_equal(a["idx"], b["idx"]):
                continue
            rows = ["| bound | " + " | ".join(f"{r:g}" for r in radii) + " |", "|---" * (len(radii) + 1) + "|"]
            for bound in ("renyi", "cohen"):
                if f"radius_{bound}" not in a:
                    continue
                d, lo, hi = certified_accuracy_difference(
                    (bound_predictions(a, bound), a[f"radius_{bound}"]),
                    (bound_predictions(b, bound), b[f"radius_{bound}"]),
                    a["label"],
                    radii,
                )
                cells = " | ".join(
                    f"{100 * x:+.1f} [{100 * x0:+.1f}, {100 * x1:+.1f}]" for x, x0, x1 in zip(d, lo, hi, strict=True)
                )
                rows.append(f"| {bound} | {cells} |")
            out += [f"STN minus no STN, {protocol} protocol ({len(a['idx'])} images), percentage points [95% CI]:", ""]
            out += ["\n".join(rows), ""]
    rows = ["| protocol | " + " | ".join(["renyi", "cohen", "cohen-top2", "pixeldp"]) + " |", "|---" * 5 + "|"]
    for name, (n, _n0, alpha) in {
        "paper: n = 100, n0 = 0, alpha = 0.05": (100, 0, 0.05),
        "reference code (5% intervals): n = 100, alpha = 0.95": (100, 0, 0.95),
        "tight: n = 10,000, n0 = 100, alpha = 0.001": (10_000, 100, 0.001),
        "Cohen et al.: n = 100,000, n0 = 100, alpha = 0.001": (100_000, 100, 0.001),
    }.items():
        ceil = max_certifiable_radius(n, alpha, sigma, nb_classes=10)
        rows.append(f"| {name} | " + " | ".join(f"{ceil.get(b, float('nan')):.3f}" for b in STYLES) + " |")
    out += [f"Largest L2 radius any input can be certified at, sigma = {sigma:g}:", "", "\n".join(rows)]
    return "\n".join(out)


def main() -> None:
    """
    Write the figures and print the tables.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="?", default="results/mnist")
    parser.add_argument("--sigma", type=float, default=0.7)
    parser.add_argument("--assets", default="docs/assets")
    args = parser.parse_args()
    results, assets = Path(args.results), Path(args.assets)
    found = load(results, args.sigma)
    if found:
        print(f"wrote {figure1(found, args.sigma, assets / f'mnist_figure1_sigma{args.sigma:g}.png')}")
    fig3 = figure3(results, found, args.sigma, assets / f"mnist_figure3_sigma{args.sigma:g}.png")
    if fig3 is not None:
        print(f"wrote {fig3}")
    print(tables(found, args.sigma))


if __name__ == "__main__":
    main()
