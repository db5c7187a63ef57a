"""
The MNIST reproduction report (issue 12): Figure 1 (certified accuracy, two protocols), Figure 3 (robust accuracy
under PGD with EoT gradients beside the certified curve), the Table-1 rows, STN minus its ablation with 95%
intervals, and what each protocol can certify at all, from the results files of `examples/paper_mnist.sh`.

Usage: `python docs/scripts/mnist_report.py [RESULTS_DIR] [--sigma 0.7] [--assets docs/assets] [--checkpoints]`;
prints Markdown.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from statsmodels.stats.proportion import proportion_confint  # noqa: E402

from art_stn.evaluate import (  # noqa: E402
    certified_accuracy,
    certified_accuracy_difference,
    max_certifiable_radius,
    read_results,
)
from art_stn.metrics import bound_predictions  # noqa: E402
from art_stn.results import attack_summary  # noqa: E402

MODELS = {"stn": "STN (gamma = 1)", "noise": "no STN (gamma = 0)", "stn-detach": "STN, detached target"}
PROTOCOLS = {"paper": "n = 100, n0 = 0, alpha = 0.05", "tight": "n = 10,000, n0 = 100, alpha = 0.001"}
STYLES = {"renyi": "-", "cohen": "--", "cohen-top2": (0, (5, 1)), "pixeldp": ":"}
COLORS = {"stn": "tab:blue", "noise": "tab:orange", "stn-detach": "tab:green"}
TABLE_RADII = (0.5, 1.0, 1.4, 1.58)
FIGURE_BOUNDS = ("renyi", "cohen", "pixeldp")  # the two-class Cohen form is in the tables, not the figure
PAIRS = (("stn", "noise"), ("stn-detach", "stn"))  # (first, second): first minus second, on the images both have
SHORT = {"stn": "STN", "noise": "no STN", "stn-detach": "detached"}  # the table's column is narrow
PROTOCOL_NAMES = {"paper": "the paper's protocol", "tight": "tight protocol"}
#: The paper's MNIST claims at sigma = 0.7 (certified accuracy in %, Rényi bound, n = 100): its text and its Table 1.
PAPER_CLAIMS = ((1.4, 51.0), (1.58, 69.0))
PAPER_MARKERS = (("^", "the paper's text: ≥ 51% at 1.4"), ("*", "the paper's Table 1: 69.0% at 1.58"))


def common(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """
    :return: Both tables restricted to the test images they share, in the same order (e.g. a model certified on every
             10th image beside one certified on all of them).
    """
    _, ia, ib = np.intersect1d(a["idx"], b["idx"], return_indices=True)
    a, b = {k: v[ia] for k, v in a.items()}, {k: v[ib] for k, v in b.items()}
    if not np.array_equal(a["label"], b["label"]):
        raise ValueError("the two results files disagree on the labels of the images they share")
    return a, b


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
    Certified accuracy against L2 radius: one panel per protocol (stacked, so that each is as wide as the page), one
    colour per model, one line style per bound, the paper's claimed points as black markers, and one legend below.
    """
    fig, axes = plt.subplots(2, 1, figsize=(8, 9.6), sharex=True, layout="constrained")
    grid = np.linspace(0, 2.4, 241)
    for ax, (protocol, text) in zip(axes, PROTOCOLS.items(), strict=True):
        sizes, ceiling = [], None
        for (model, prot), (meta, table) in found.items():
            if prot != protocol:
                continue
            sizes.append(f"{MODELS[model].split(' (')[0]}: {len(table['idx']):,}")
            for bound in [c[7:] for c in table if c.startswith("radius_") and c[7:] in FIGURE_BOUNDS]:
                acc = certified_accuracy(
                    bound_predictions(table, bound), table[f"radius_{bound}"], table["label"], grid
                )
                ax.plot(grid, 100 * acc, linestyle=STYLES.get(bound, "-"), color=COLORS[model], lw=1.8)
            ceiling = max_certifiable_radius(meta["n"], meta["alpha"], sigma, nb_classes=10)["renyi"]
        if ceiling is not None:
            ax.axvline(ceiling, color="grey", lw=1, ls=":")
            # Top of the panel, right of the line: every curve there is below 75% (Rényi certifies nothing beyond).
            ax.text(ceiling + 0.03, 96, f"Rényi ceiling {ceiling:.2f}", color="dimgrey", fontsize=10, va="top")
        for (radius, accuracy), (marker, _) in zip(PAPER_CLAIMS, PAPER_MARKERS, strict=True):
            size = 16 if marker == "*" else 11
            ax.plot(radius, accuracy, marker, color="black", markersize=size, markeredgecolor="white", zorder=5)
        ax.set_title(f"{PROTOCOL_NAMES[protocol]}: {text}\nimages certified: {', '.join(sizes)}", fontsize=11)
        ax.set(ylim=(0, 100), xlim=(0, 2.4), ylabel="certified accuracy (%)")
        ax.grid(alpha=0.3)
    axes[1].set_xlabel("L2 radius")
    handles = [Line2D([], [], color=COLORS[m], lw=2.2, label=name) for m, name in MODELS.items()]
    handles += [Line2D([], [], color="black", lw=1.8, linestyle=STYLES[b], label=f"{b} bound") for b in FIGURE_BOUNDS]
    handles += [
        Line2D(
            [], [], color="black", marker=marker, markersize=13 if marker == "*" else 10, linestyle="none", label=label
        )
        for marker, label in PAPER_MARKERS
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=11, frameon=False)
    fig.suptitle(f"MNIST, sigma = {sigma:g}: certified accuracy (paper's Figure 1, MNIST panel)", fontsize=12)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def figure3(results: Path, found: dict, sigma: float, out: Path) -> Path | None:
    """
    Robust accuracy of the smoothed STN model under PGD (L2 and Linf, EoT gradients) beside its certified curve.
    """
    l2, linf = results / f"stn-sigma{sigma:g}-pgd-l2.tsv", results / f"stn-sigma{sigma:g}-pgd-linf.tsv"
    if not l2.is_file() and not linf.is_file():
        return None
    fig, axes = plt.subplots(2, 1, figsize=(8, 8.4), layout="constrained")  # stacked: each panel as wide as the page
    if l2.is_file():
        meta, table = read_results(l2, expect="attack")[0], attack_summary(read_results(l2)[1])
        eps, acc = np.r_[0.0, table["eps"]], 100 * np.r_[table["clean_accuracy"][0], table["accuracy"]]
        axes[0].plot(eps, acc, "o-", label=f"PGD-L2, EoT ({meta['examples']} images; 0: no attack)")
    for protocol in PROTOCOLS:
        if ("stn", protocol) in found:
            _, table = found["stn", protocol]
            grid = np.linspace(0, 4, 161)
            acc = certified_accuracy(bound_predictions(table, "renyi"), table["radius_renyi"], table["label"], grid)
            axes[0].plot(grid, 100 * acc, "--", label=f"certified (Rényi, {protocol} protocol)")
    axes[0].set(xlabel="L2 attack size / radius", ylabel="accuracy (%)", ylim=(0, 100), title="L2")
    if linf.is_file():
        meta, table = read_results(linf, expect="attack")[0], attack_summary(read_results(linf)[1])
        eps, acc = np.r_[0.0, table["eps"]], 100 * np.r_[table["clean_accuracy"][0], table["accuracy"]]
        axes[1].plot(eps, acc, "o-", label=f"PGD-Linf, EoT ({meta['examples']} images; 0: no attack)")
    axes[1].set(xlabel="Linf attack size", ylim=(0, 100), title="Linf")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=10)
    fig.suptitle(f"MNIST, sigma = {sigma:g}, STN: robust accuracy under white-box PGD (paper's Figure 3)", fontsize=12)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def tables(found: dict, sigma: float) -> str:
    """
    :return: Markdown: the Table-1 rows (with 95% Clopper-Pearson intervals over the test images), each model minus
             its comparison with 95% paired intervals, and the protocol ceilings.
    """
    out = []
    for protocol, text in PROTOCOLS.items():
        rows = [(model, table) for (model, prot), (_, table) in found.items() if prot == protocol]
        if not rows:
            continue
        sizes = ", ".join(f"{SHORT[model]} on {len(table['idx']):,}" for model, table in rows)
        lines = [
            f"{PROTOCOL_NAMES[protocol].capitalize()} ({text}; {sizes} test images):",
            "",
            "| model | bound | at 0 | " + " | ".join(f"{r:g}" for r in TABLE_RADII) + " |",
            "|---|---|" + "---:|" * (1 + len(TABLE_RADII)),
        ]
        if protocol == "paper":
            claims = {1.4: "**>= 51%**<br>(its text)", 1.58: "**69.0%**<br>(Table 1)"}
            lines.append(f"| **the paper** | renyi | | {' | '.join(claims.get(r, '') for r in TABLE_RADII)} |")
        for model, table in rows:
            for bound in [c[7:] for c in table if c.startswith("radius_")]:
                acc = certified_accuracy(
                    bound_predictions(table, bound), table[f"radius_{bound}"], table["label"], [0.0, *TABLE_RADII]
                )
                lo, hi = proportion_confint(np.round(acc[1:] * len(table["idx"])), len(table["idx"]), method="beta")
                cells = " | ".join(
                    f"{100 * a:.1f}%<br>[{100 * a0:.0f}, {100 * a1:.0f}]"
                    for a, a0, a1 in zip(acc[1:], lo, hi, strict=True)
                )
                lines.append(f"| {SHORT[model]} | {bound} | {100 * acc[0]:.1f}% | {cells} |")
        out += ["\n".join(lines), ""]
    radii = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
    for protocol in PROTOCOLS:
        for first, second in PAIRS:
            if (first, protocol) not in found or (second, protocol) not in found:
                continue
            a, b = common(found[first, protocol][1], found[second, protocol][1])
            bounds = [bound for bound in ("renyi", "cohen") if f"radius_{bound}" in a]
            columns = {}
            for bound in bounds:
                columns[bound] = certified_accuracy_difference(
                    (bound_predictions(a, bound), a[f"radius_{bound}"]),
                    (bound_predictions(b, bound), b[f"radius_{bound}"]),
                    a["label"],
                    radii,
                )
            rows = ["| L2 radius | " + " | ".join(bounds) + " |", "|---:|" + "---:|" * len(bounds)]
            for k, r in enumerate(radii):
                cells = " | ".join(
                    f"{100 * d[k]:+.1f} [{100 * lo[k]:+.1f}, {100 * hi[k]:+.1f}]" for d, lo, hi in columns.values()
                )
                rows.append(f"| {r:g} | {cells} |")
            out += [
                f"{MODELS[first]} minus {MODELS[second]}, {protocol} protocol, the {len(a['idx']):,} images both have,"
                " percentage points [95% paired CI]:",
                "",
            ]
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


def attack_table(results: Path, sigma: float) -> str:
    """
    :return: Markdown: robust accuracy of the smoothed STN model at each attack size, from the PGD results files.
    """
    rows = []
    for norm in ("l2", "linf"):
        path = results / f"stn-sigma{sigma:g}-pgd-{norm}.tsv"
        if path.is_file():
            meta, table = read_results(path, expect="attack")[0], attack_summary(read_results(path)[1])
            cells = ", ".join(f"{e:g}: {100 * a:.1f}%" for e, a in zip(table["eps"], table["accuracy"], strict=True))
            rows.append(
                f"| PGD-{norm.upper()} | {int(meta['examples'])} | {100 * table['clean_accuracy'][0]:.1f}% | {cells} |"
            )
    if not rows:
        return ""
    head = "| attack (EoT gradients) | images | smoothed clean accuracy | robust accuracy at each attack size |"
    return "\n".join([head, "|---|---:|---:|---|", *rows])


def clean_accuracy(results: Path, sigma: float) -> str:
    """
    :return: Markdown: the base model's accuracy (no noise) on the 10,000 test images, for every checkpoint present
             (checkpoints are not committed: this needs the training runs' files).
    """
    import torch

    from art_stn.checkpoint import load_checkpoint, model_from_checkpoint
    from art_stn.data import load_mnist

    x, y = load_mnist()
    rows = ["| model | epochs | base model clean accuracy, 10,000 test images |", "|---|---:|---:|"]
    for model in MODELS:
        path = results / f"{model}-sigma{sigma:g}.pt"
        if not path.is_file():
            continue
        ckpt = load_checkpoint(path)
        net = model_from_checkpoint(ckpt, path).eval()
        with torch.no_grad():
            pred = torch.cat([net(torch.from_numpy(b)).argmax(1) for b in np.array_split(x, 20)]).numpy()
        rows.append(f"| {MODELS[model]} | {len(ckpt['history'])} | {100 * np.mean(pred == y):.2f}% |")
    return "\n".join(rows)


def main() -> None:
    """
    Write the figures and print the tables.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="?", default="results/mnist")
    parser.add_argument("--sigma", type=float, default=0.7)
    parser.add_argument("--assets", default="docs/assets")
    parser.add_argument("--checkpoints", action="store_true", help="also the base models' clean accuracy")
    args = parser.parse_args()
    results, assets = Path(args.results), Path(args.assets)
    found = load(results, args.sigma)
    if found:
        print(f"wrote {figure1(found, args.sigma, assets / f'mnist_figure1_sigma{args.sigma:g}.png')}")
    fig3 = figure3(results, found, args.sigma, assets / f"mnist_figure3_sigma{args.sigma:g}.png")
    if fig3 is not None:
        print(f"wrote {fig3}")
    print(tables(found, args.sigma))
    print()
    print(attack_table(results, args.sigma))
    if args.checkpoints:
        print()
        print(clean_accuracy(results, args.sigma))


if __name__ == "__main__":
    main()
