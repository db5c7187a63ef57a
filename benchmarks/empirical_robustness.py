"""
The paper's empirical half on real MNIST (docs/empirical-robustness.md): LeNet trained without noise (standard
training, Figure 4's sigma = 0), by TRADES and by Madry's adversarial training (ART's trainers, L-infinity
eps = 0.3), and with noise by STN (sigma 0.25, 0.5, 0.7, 1.0), Gaussian augmentation and consistency regularization
(sigma 0.7, the paper's MNIST sigma), attacked with ART's attacks on every 20th test image (500), the paper's attack
sizes (L2 0.5 to 4, L-infinity 0.05 to 0.5), one line per image and size.

- Training: the certified-training benchmark's optimizer and schedule (SGD, lr 0.01, momentum 0.9, weight decay
  1e-4, batch 256, 30 epochs, lr x0.1 every 10), all 60,000 training images, no validation, seed 0. TRADES and
  Madry: 10 PGD steps of 0.04 per batch instead of 40 of 0.01, and 10 epochs (lr x0.1 every 3): one 40-step epoch of
  LeNet costs about 43 CPU minutes on the benchmark machine, 30 of them 21 CPU hours. STN at sigma 0.5 and 1.0 are the
  certified-training benchmark's models (same settings).
- Smoothed models: the prediction from n = 100 noise draws with abstention (alpha = 0.001), gradients averaged over
  8 draws, noise seed 0. White box: PGD-Linf, PGD-L2 (20 steps of eps / 4) and Carlini-Wagner L2 (10 iterations);
  black box: PGD-L2 and PGD-Linf crafted on the Madry model; gradient-free: Boundary (1,000 iterations) on every
  400th test image (25, among the 500): on the smoothed model each query costs n = 100 forward passes, and 100
  iterations took 32 CPU s per image on the benchmark machine, so 1,000 on 25 images cost about 2.2 CPU h.
- Strength check (at two sizes per norm, the first 100 of the 500 images): 40 steps, 16 draws per gradient and two
  random starts (ART's `num_random_init`: a second run from another random point in the ball replaces the first
  one's result where it succeeds), about 8 times the standard attack's cost. Certified versus attacked: Cohen's
  CERTIFY (n = 10,000) on the same images.

Usage (one thread per stream, jobs from a shared queue, every step resumable, in any session):

    python benchmarks/empirical_robustness.py run --stream 0 &
    python benchmarks/empirical_robustness.py status
    python benchmarks/empirical_robustness.py summarize   # the training records, as JSON

The report is `python docs/scripts/empirical_report.py`; it reads only the committed results in `OUT`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from certified_training import OUT as CERTIFIED
from certified_training import Waiting, checkpoint_state, finish, run, stream, train_args, write_record

from art_stn.checkpoint import load_checkpoint

OUT = Path("results/mnist-empirical")
SKIP = 20  # every 20th test image: 500
L2 = "0.5,1,1.5,2,2.5,3,3.5,4"  # the paper's MNIST sizes (its attacks.sh)
LINF = "0.05,0.1,0.15,0.2,0.25,0.3,0.35,0.4,0.45,0.5"
ADVERSARIAL = ["--art-args", "max_iter=10,eps_step=0.04"]
ADV_EPOCHS = 10
SMOOTHED = ["--sample-size", "100", "--eot-samples", "8"]
STRENGTH = {"pgd-l2": "1,2", "pgd-linf": "0.1,0.3"}


@dataclass(frozen=True)
class Model:
    """One model: its training method, noise scale (None: deterministic) and epochs."""

    method: str
    sigma: float | None = None
    epochs: int = 30
    folder: Path = OUT

    @property
    def name(self) -> str:
        """The file stem, e.g. `stn-sigma0.7`, `madry`."""
        return self.method if self.sigma is None else f"{self.method}-sigma{self.sigma:g}"

    @property
    def path(self) -> Path:
        """The checkpoint."""
        return self.folder / f"{self.name}.pt"

    def train(self) -> list[str]:
        """:return: The `art-stn train` arguments."""
        args = train_args(self.method, 0.5, self.epochs, self.path)  # lambda 5 for consistency: as at 0.5 and 1
        if self.sigma is None:  # deterministic: no noise scale; ART's fit checkpoints every epoch
            for flag in ("--scale", "--checkpoint-every"):
                i = args.index(flag)
                del args[i : i + 2]
        else:
            args[args.index("--scale") + 1] = f"{self.sigma:g}"
        return args + (ADVERSARIAL if self.method in ("trades", "madry") else [])


STANDARD, MADRY, TRADES = Model("standard"), Model("madry", epochs=ADV_EPOCHS), Model("trades", epochs=ADV_EPOCHS)
STN = {s: Model("stn", s, folder=CERTIFIED if s in (0.5, 1.0) else OUT) for s in (0.25, 0.5, 0.7, 1.0)}
GAUSSIAN, CONSISTENCY = Model("gaussian", 0.7), Model("consistency", 0.7)
FIGURE3 = [STN[0.7], TRADES, MADRY, GAUSSIAN, CONSISTENCY]
SWEEP = [STANDARD, STN[0.25], STN[0.5], STN[1.0]]


@dataclass(frozen=True)
class Job:
    """Steps (`art-stn` argument lists) run in order, after training `trains` (only this job trains it) and once
    the models in `needs` are trained."""

    name: str
    steps: tuple[tuple[str, ...], ...] = ()
    trains: Model | None = None
    needs: tuple[Model, ...] = field(default=())
    folder: Path = OUT  # where its lock lies


def attack(model: Model, kind: str, sizes: str, tag: str = "", extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """
    :param model: The model attacked.
    :param kind: The attack.
    :param sizes: Comma-separated attack sizes.
    :param tag: A suffix of the results file.
    :param extra: More arguments.
    :return: The `art-stn attack` arguments, writing `<model>-<attack><tag>.tsv`.
    """
    out = OUT / f"{model.name}-{kind}{tag}.tsv"
    args = ["attack", "--checkpoint", str(model.path), "--dataset", "mnist", "--attack", kind, "--eps", sizes]
    args += ["--skip", str(SKIP), "--max", "500", "--max-iter", "10" if kind == "cw-l2" else "20", "--seed", "0"]
    args += [*(SMOOTHED if model.sigma is not None else []), "--out", str(out), "--resume", "--quiet", *extra]
    return tuple(args)


def attacks(model: Model, cw: bool = True) -> tuple[tuple[str, ...], ...]:
    """
    :param model: The model attacked.
    :param cw: Whether C&W joins PGD for Figure 3's models.
    :return: The white-box attacks of a model: PGD in both norms, and for Figure 3's models C&W.
    """
    steps = [attack(model, "pgd-linf", LINF), attack(model, "pgd-l2", L2)]
    return tuple(steps + ([attack(model, "cw-l2", L2)] if cw and model in FIGURE3 else []))


def transfers(model: Model) -> tuple[tuple[str, ...], ...]:
    """:return: The black-box attacks of a model, crafted on the Madry model."""
    source = ("--source-checkpoint", str(MADRY.path))
    return tuple(attack(model, f"transfer-{n}", s, extra=source) for n, s in (("linf", LINF), ("l2", L2)))


def strength(model: Model) -> tuple[tuple[str, ...], ...]:
    """:return: The stronger attacks of the strength check, on the first 100 images."""
    stronger = ("--max-iter", "40", "--restarts", "2", "--eot-samples", "16", "--max", "100")
    return tuple(attack(model, kind, sizes, "-strong", stronger) for kind, sizes in STRENGTH.items())


def certify(model: Model) -> tuple[str, ...]:
    """:return: Cohen's CERTIFY on the same images (the certified-training benchmark's file where it has one)."""
    out = model.folder / f"{model.name}.tsv"
    args = ["certify", "--checkpoint", str(model.path), "--dataset", "mnist", "--protocol", "tight"]
    return (*args, "--skip", str(SKIP), "--seed", "0", "--out", str(out), "--resume", "--quiet")


def boundary(model: Model) -> tuple[str, ...]:
    """:return: The Boundary attack on every 400th test image."""
    args = attack(model, "boundary", L2, extra=("--skip", "400", "--max", "25"))
    args = list(args)
    args[args.index("--max-iter") + 1] = "1000"
    return tuple(args)


def jobs() -> list[Job]:
    """:return: Every job, in the order the streams take them (what the page's verdicts need first)."""
    rest = [GAUSSIAN, STN[0.5], STN[1.0], STN[0.25], CONSISTENCY]
    return [
        Job("standard", attacks(STANDARD), trains=STANDARD),
        Job("stn-sigma0.7", attacks(STN[0.7]), trains=STN[0.7]),
        Job("madry", attacks(MADRY), trains=MADRY),
        Job("trades", attacks(TRADES), trains=TRADES),
        Job("transfer-figure3", transfers(STN[0.7]) + transfers(TRADES), needs=(MADRY, TRADES, STN[0.7])),
        Job("gaussian-sigma0.7", attacks(GAUSSIAN) + (certify(GAUSSIAN),), trains=GAUSSIAN),
        Job("strength-stn-sigma0.7", strength(STN[0.7]), needs=(STN[0.7],)),
        Job("boundary", tuple(boundary(m) for m in (TRADES, MADRY, STN[0.7])), needs=(STN[0.7], TRADES, MADRY)),
        Job("sweep", attacks(STN[0.5]) + attacks(STN[1.0]), needs=(STN[0.5], STN[1.0])),
        Job("stn-sigma0.25", attacks(STN[0.25]) + (certify(STN[0.25]),), trains=STN[0.25]),
        Job("consistency-sigma0.7", (certify(CONSISTENCY),), trains=CONSISTENCY),
        # The model's attacks in two jobs, so that two streams share them.
        Job("consistency-sigma0.7-cw", (attack(CONSISTENCY, "cw-l2", L2),), needs=(CONSISTENCY,)),
        Job("consistency-sigma0.7-pgd", attacks(CONSISTENCY, cw=False), needs=(CONSISTENCY,)),
        Job("certify-stn-sigma0.7", (certify(STN[0.7]),), needs=(STN[0.7],)),
        *(Job(f"strength-{m.name}", strength(m), needs=(m,)) for m in rest),
        Job("transfer-rest", transfers(GAUSSIAN) + transfers(CONSISTENCY), needs=(MADRY, GAUSSIAN, CONSISTENCY)),
    ]


def trained(model: Model) -> bool:
    """:return: Whether the model finished its epochs."""
    return checkpoint_state(model.path)[0] >= model.epochs


def run_job(job: Job, log: Path) -> None:
    """
    Train the job's model (resumed) unless it is trained, then run its steps (each resumes).

    :param job: The job.
    :param log: The log file.
    :raises Waiting: while a model the job needs is not trained.
    """
    if any(not trained(m) for m in job.needs):
        raise Waiting
    if job.trains is not None and not trained(job.trains):
        run(job.trains.train(), log)
    if job.trains is not None:
        finish(job.trains.path)  # the weights and the training record stay; the resume state goes
    for step in job.steps:
        run(list(step), log)


def status() -> None:
    """Print each model's training and each results file's progress."""
    for model in [*FIGURE3, *SWEEP]:
        done, seconds = checkpoint_state(model.path)
        print(f"{model.name:24s} epochs {done:3d}/{model.epochs} ({seconds / 3600:.2f} CPU h)")
    for path in sorted(OUT.glob("*.tsv")):
        lines = sum(1 for line in path.open() if line[:1].isdigit())
        print(f"{path.name:40s} {lines:6d} lines")


def summarize() -> None:
    """Write `<model>.train.json` (settings, per-epoch CPU seconds, test-set clean accuracy) per trained model."""
    from art_stn.art_trainer import plain_classifier
    from art_stn.data import load_dataset

    x, y = load_dataset("mnist", None, train=False)
    for model in [*FIGURE3, *SWEEP]:
        if model.folder != OUT or not trained(model):
            continue
        ckpt = load_checkpoint(model.path)
        clf = plain_classifier(str(model.path), ckpt, "cpu")
        write_record(model.path, ckpt, float((clf.predict(x, batch_size=1000).argmax(1) == y).mean()))


def main(argv: list[str] | None = None) -> int:
    """
    :param argv: Command-line arguments.
    :return: Exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("run", "status", "summarize"))
    parser.add_argument("--stream", type=int, default=0, help="this stream's number (names its log)")
    args = parser.parse_args(argv)
    {"run": lambda: stream(args.stream, OUT, jobs, run_job), "status": status, "summarize": summarize}[args.what]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
