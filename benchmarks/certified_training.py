"""
The certified-training benchmark on real MNIST (docs/certified-training.md): LeNet trained by Gaussian augmentation,
STN and consistency regularization at sigma 0.5 and 1.0 with the literature's optimizer and a scaled step schedule
(table a; STN at gamma = 1 and at the published stability setting gamma = 2), and ART's MACER, SmoothAdv and
SmoothMix at sigma 0.5 each given the consistency run's measured training CPU time (table b: one thread each, so CPU
seconds are the compute a run used, which other work on the machine does not inflate as it does wall-clock seconds);
every model certified the same way (Cohen's CERTIFY and the Renyi bound on the same counts, n0 = 100, N = 10,000,
alpha = 0.001, every 20th test image, noise seed 0). The full protocol (results/mnist-full-protocol): the
literature's 90 epochs (lr x0.1 every 30) for Gaussian augmentation, consistency regularization and STN (gamma = 2)
at sigma 0.5. Every run trains on all 60,000 training images (the literature's setting) and looks at no test image
while training (`--val-size 0`: no validation).

Usage (each stream is one process on one thread, taking jobs from a shared queue; run as many streams side by side
as there are cores, in any session, as often as needed):

    python benchmarks/certified_training.py run --stream 0 &
    python benchmarks/certified_training.py run --stream 1 &
    python benchmarks/certified_training.py status
    python benchmarks/certified_training.py summarize   # each finished model's training record, as JSON

Every step resumes: `art-stn train --resume` (a checkpoint every 50 batches; ART's methods after every epoch),
`art-stn certify --resume` (one line per image). A killed stream loses at most 50 batches, one epoch of an ART
method, or the image in flight. The report is
`python docs/scripts/certified_training_report.py`; it reads only committed files: the certify results (`.tsv`) and
the training records that `summarize` writes from the checkpoints (`.train.json`: settings, per-epoch wall-clock and
CPU seconds, validation accuracy, and the base model's clean accuracy on all 10,000 test images).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from art_stn.art_trainer import ART_TRAINERS
from art_stn.checkpoint import RESUME_STATE, load_checkpoint, strip_resume_state

OUT = Path("results/mnist-certified-training")
FULL = Path("results/mnist-full-protocol")
EPOCHS = 30  # 90 in the literature: scaled by 1/3 with the schedule (x0.1 every 10 epochs instead of every 30)
LR_STEP = 10
FULL_EPOCHS = 90  # the literature's schedule: x0.1 every 30 epochs
CERTIFY = ["--protocol", "tight", "--skip", "20", "--seed", "0"]  # n = 10,000, n0 = 100, alpha = 0.001; 500 images
# The literature's guarantee on the same 500 images: n0 = 100, alpha = 0.001, at most N = 100,000 samples, drawn in
# stages placed where each radius is decided (`--stages radii`), stopping each image once it is decided; one run
# decided by Cohen et al.'s CERTIFY, one by the Renyi bound (`-cohen.tsv`, `-renyi.tsv`).
FULL_RADII = "0,0.25,0.5,0.75,1,1.25,1.5,1.58,1.75"
FULL_CERTIFY = ["--protocol", "cohen", "--sequential", "--stages", "radii", "--radii", FULL_RADII, *CERTIFY[2:]]
# The schedule chosen on training images by benchmarks/sequential_schedule.py (its JSON's `chosen`), measured on the
# same 500 test images for the Gaussian model (`-cohen-chosen.tsv`) beside the package's `--stages radii`.
SCHEDULE = FULL / "schedule-gaussian.json"
LBD = {0.25: 10.0, 0.5: 5.0, 1.0: 5.0}  # Jeong & Shin's MNIST lambda
BATCH = {"consistency": 128}  # their code splits each batch of 256 into m = 2 steps of 128 inputs
ART_METHODS = ("macer", "smoothadv", "smoothmix")


@dataclass(frozen=True)
class Job:
    """One model of the benchmark: trained (resumed), then certified (resumed)."""

    method: str
    sigma: float
    gamma: float | None = None  # STN's stability weight (None: the CLI's default, 1)
    epochs: int = EPOCHS
    folder: Path = OUT
    bounds: tuple[str, ...] = ("cohen", "renyi")  # a full-protocol job's certifications, in this order

    @property
    def name(self) -> str:
        """The file stem of the run, e.g. `stn-gamma2-sigma0.5` (`stn-sigma0.5` for gamma = 1)."""
        gamma = f"-gamma{self.gamma:g}" if self.gamma is not None else ""
        return f"{self.method}{gamma}-sigma{self.sigma:g}"


def tag(method: str, sigma: float) -> str:
    """
    :param method: Training method.
    :param sigma: Noise scale.
    :return: The file stem of a table-(a) run with the method's default settings.
    """
    return Job(method, sigma).name


def jobs() -> list[Job]:
    """
    :return: Every job, in the order the streams take them: table a (consistency and its Gaussian baseline at each
             sigma before STN), then the ART methods, STN at gamma = 2 (both sigmas, table a, before the second
             full-protocol model), and the full protocol: each model decided by CERTIFY first (the Gaussian model
             once more under the schedule chosen on training images), then by the Renyi bound (STN, consistency,
             Gaussian) once every model has its CERTIFY run (the Renyi bound's ceiling, 1.59 at sigma 0.5, makes it
             about four times slower per image).
    """
    a = [("consistency", 0.5), ("gaussian", 0.5), ("stn", 0.5), ("consistency", 1.0), ("stn", 1.0), ("gaussian", 1.0)]
    done = [Job(m, s) for m, s in a] + [Job(m, 0.5) for m in ART_METHODS]
    full = [Job(m, 0.5, epochs=FULL_EPOCHS, folder=FULL, bounds=("cohen",)) for m in ("gaussian", "consistency")]
    full.append(Job("stn", 0.5, 2.0, FULL_EPOCHS, FULL, ("cohen",)))
    # The Renyi runs, STN first: the paper's method under the paper's bound is the row its Table 1 reports.
    renyi = [replace(job, bounds=("renyi",)) for job in (full[2], full[1], full[0])]
    stn2 = [Job("stn", s, gamma=2.0) for s in (0.5, 1.0)]
    chosen = replace(full[0], bounds=("cohen-chosen",))
    return done + [full[0], *stn2, full[1], chosen, full[2], *renyi]


def run(cmd: list[str], log: Path) -> None:
    """
    Run an art-stn command on one thread, appending its output to a log.

    :param cmd: The arguments after `art-stn`.
    :param log: The log file.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with log.open("a") as fh:
        fh.write(f"[{time.strftime('%FT%TZ', time.gmtime())}] art-stn {' '.join(cmd)}\n")
        fh.flush()
        subprocess.run(["art-stn", *cmd], check=True, env=env, stdout=fh, stderr=subprocess.STDOUT)


def checkpoint_state(path: Path) -> tuple[int, float]:
    """
    :param path: A training checkpoint.
    :return: Completed epochs and their training CPU seconds (0, 0.0 when there is none).
    """
    if not path.exists():
        return 0, 0.0
    ckpt = load_checkpoint(path)
    history = ckpt.get("history") or []
    return int(ckpt["epoch"]) + 1, float(sum(h["cpu_seconds"] for h in history))


def train_args(method: str, sigma: float, epochs: int, out: Path, gamma: float | None = None) -> list[str]:
    """
    :param method: Training method.
    :param sigma: Noise scale.
    :param epochs: Epochs.
    :param out: Checkpoint file.
    :param gamma: STN's stability weight (default 1).
    :return: The `art-stn train` arguments of the literature's protocol (the step every third of the run: 10 of
             30 epochs, 30 of 90), on all 60,000 training images with no validation (`--val-size 0`; the first
             nine runs of table (a) validated on the first 1,000 test images, reported and never used).
    """
    args = ["train", "--dataset", "mnist", "--model", "lenet", "--method", method, "--scale", str(sigma)]
    args += ["--optimizer", "sgd", "--lr", "0.01", "--momentum", "0.9", "--weight-decay", "1e-4"]
    args += ["--lr-schedule", "step", "--lr-step", str(max(1, round(epochs * LR_STEP / EPOCHS))), "--lr-decay", "0.1"]
    args += ["--batch-size", str(BATCH.get(method, 256)), "--epochs", str(epochs), "--seed", "0", "--quiet"]
    args += ["--out", str(out), "--resume", "--val-size", "0"]
    if method not in ART_METHODS:  # ART's methods are checkpointed after every epoch
        args += ["--checkpoint-every", "50"]
    if method == "consistency":
        args += ["--lbd", str(LBD[sigma]), "--m", "2", "--eta", "0.5"]
    if method == "stn":
        args += ["--gamma", f"{1.0 if gamma is None else gamma:g}"]
    return args


def art_epochs(method: str, out: Path, log: Path) -> int | None:
    """
    The epochs whose CPU time is nearest the consistency run's training CPU seconds at sigma 0.5 (within half an
    epoch of the budget), from one measured epoch of the method.

    :param method: An ART method.
    :param out: The results folder.
    :param log: The log file.
    :return: The epochs, or None while the consistency run is not finished.
    """
    done, budget = checkpoint_state(out / f"{tag('consistency', 0.5)}.pt")
    if done < EPOCHS:
        return None
    probe = out / f"{tag(method, 0.5)}-probe.pt"
    args = train_args(method, 0.5, 1, probe)
    if checkpoint_state(probe)[0] < 1:
        run(args, log)
    seconds = checkpoint_state(probe)[1]
    return max(1, round(budget / seconds))


class Waiting(Exception):  # noqa: N818 - a signal, not an error
    """An ART job waits for the consistency run whose CPU time it is given."""


def run_job(job: Job, log: Path) -> None:
    """
    Train (resumed) then certify (resumed) one model; a full-protocol model twice, sequentially with N = 100,000,
    decided by CERTIFY and by the Renyi bound.

    :param job: The job.
    :param log: The log file.
    :raises Waiting: for an ART method while the consistency run at sigma 0.5 is unfinished.
    """
    out = job.folder
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / f"{job.name}.pt"
    epochs = job.epochs
    if job.method in ART_METHODS:
        found = art_epochs(job.method, out, log)
        if found is None:
            raise Waiting
        epochs = found
    args = train_args(job.method, job.sigma, epochs, ckpt, job.gamma)
    if "warmup" in ART_TRAINERS.get(job.method, ("", {}))[1]:  # SmoothAdv, SmoothMix (MACER has none)
        warmup = max(1, round(10 * epochs / 90))  # the literature's 10 of 90 epochs, scaled
        args += ["--art-args", f"warmup={warmup}"]
    if checkpoint_state(ckpt)[0] < epochs:
        run(args, log)
    if job.folder == FULL:
        for bound in job.bounds:
            decider = bound.removesuffix("-chosen")  # the chosen-schedule run is decided by CERTIFY too
            cert = ["certify", "--checkpoint", str(ckpt), "--dataset", "mnist", *FULL_CERTIFY, "--bound", decider]
            if bound == "cohen-chosen":
                chosen = json.loads(SCHEDULE.read_text())
                schedule = chosen["schedules"][chosen["chosen"]]
                stages = ",".join(str(m) for m in schedule["stages"])
                cert[cert.index("radii")] = stages
                cert += ["--futility", f"{schedule['futility']:g}"]
            run([*cert, "--out", str(out / f"{job.name}-{bound}.tsv"), "--resume", "--quiet"], log)
        finish(ckpt)
        return
    cert = ["certify", "--checkpoint", str(ckpt), "--dataset", "mnist", *CERTIFY]
    run([*cert, "--out", str(out / f"{job.name}.tsv"), "--resume", "--quiet"], log)
    finish(ckpt)


def finish(ckpt: Path) -> None:
    """
    A certified model keeps its weights and records only: the resume-only state leaves the checkpoint (the results
    file's header holds the weights' SHA-256). An ART method's one-epoch probe goes with it.

    :param ckpt: The model's checkpoint.
    """
    if ckpt.exists() and any(k in load_checkpoint(ckpt) for k in RESUME_STATE):
        strip_resume_state(ckpt)
    probe = ckpt.with_name(f"{ckpt.stem}-probe.pt")
    if probe.exists() and any(k in load_checkpoint(probe) for k in RESUME_STATE):
        strip_resume_state(probe)


@contextlib.contextmanager
def claim(job: Any) -> Iterator[bool]:
    """
    Hold a job while this stream runs it: an exclusive lock on `<run>.lock` in the job's folder, which the system
    releases when the process ends, however it ends, so a killed stream never leaves a job claimed.

    :param job: The job (anything with a `folder` and a `name`).
    :return: Whether this stream holds the job (False: another stream runs it).
    """
    job.folder.mkdir(parents=True, exist_ok=True)
    with (job.folder / f"{job.name}.lock").open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def stream(
    index: int, out: Path, queue: Callable[[], list] | None = None, runner: Callable[[Any, Path], None] | None = None
) -> None:
    """
    Take jobs from the shared queue until every job is done: the first job, in `jobs()` order, that no other stream
    holds; train it (resumed) then certify it (resumed). A job another stream finished is checked by running it
    again, which resumes to nothing. Streams balance themselves, and any number may run, in any session.

    :param index: This stream (names its log).
    :param out: The results folder.
    :param queue: The jobs, in order (default :func:`jobs`; another benchmark passes its own).
    :param runner: Runs one job, raising :class:`Waiting` while it cannot start (default :func:`run_job`).
    """
    out.mkdir(parents=True, exist_ok=True)
    log = out / f"run-stream{index}.log"
    torch.set_num_threads(1)
    pending = (queue or jobs)()
    runner = runner or run_job
    while pending:
        ran = False
        for job in list(pending):
            with claim(job) as mine:
                if not mine:
                    continue
                try:
                    runner(job, log)
                except subprocess.CalledProcessError as err:  # e.g. the working tree was mid-edit: retry later
                    with log.open("a") as fh:
                        fh.write(f"[{time.strftime('%FT%TZ', time.gmtime())}] failed ({err}); retrying in 60 s\n")
                    break
                except Waiting:
                    continue  # the consistency run whose CPU time it is given is not finished: come back later
            pending.remove(job)
            ran = True
            break  # back to the head of the queue
        if not ran and pending:
            time.sleep(60)


def status(out: Path) -> None:
    """
    Print each job's progress.

    :param out: The table-(a) results folder (full-protocol jobs are in `FULL`).
    """
    for job in jobs():
        if job.bounds == ("renyi",):
            continue  # shown with the job that certifies the same model by CERTIFY
        folder = out if job.folder == OUT else job.folder
        done, seconds = checkpoint_state(folder / f"{job.name}.pt")
        kinds = ("cohen-chosen",) if job.bounds == ("cohen-chosen",) else ("cohen", "renyi")
        files = {b: folder / f"{job.name}-{b}.tsv" for b in kinds} if job.folder == FULL else {}
        files = files or {"": folder / f"{job.name}.tsv"}
        rows = {b: sum(1 for line in f.open() if line[:1].isdigit()) if f.exists() else 0 for b, f in files.items()}
        per = f"{seconds / done:.0f} CPU s/epoch" if done else "-"
        certified = ", ".join(f"{b} {n:3d}/500".strip() for b, n in rows.items())
        print(f"{folder.name}/{job.name:24s} epochs {done:3d}/{job.epochs} ({per:>16s}), certified {certified}")


def summarize(out: Path) -> None:
    """
    Write `<run>.train.json` beside every finished training checkpoint (one whose certification has started): its
    method settings, per-epoch history and the base model's clean accuracy on the 10,000 test images.

    :param out: The results folder.
    """

    from art_stn import STNClassifier
    from art_stn.data import load_dataset

    x, y = load_dataset("mnist", None, train=False)
    for job in jobs():
        if job.bounds in (("renyi",), ("cohen-chosen",)):
            continue  # the same model as its CERTIFY job
        path = (out if job.folder == OUT else job.folder) / f"{job.name}.pt"
        if not path.exists():
            continue
        if checkpoint_state(path)[0] < job.epochs and job.method not in ART_METHODS:
            continue  # still training
        if job.method in ART_METHODS and not path.with_suffix(".tsv").exists():
            continue  # an ART run's epochs are set by its budget: it is done once its certification has started
        ckpt = load_checkpoint(path)
        clf = STNClassifier.load(path, device_type="cpu")
        clf.model.eval()
        with torch.no_grad():
            pred = torch.cat([clf.model(torch.from_numpy(x[i : i + 2000])).argmax(1) for i in range(0, len(x), 2000)])
        write_record(path, ckpt, float((pred.numpy() == y).mean()))


def write_record(path: Path, ckpt: dict, clean_accuracy: float) -> None:
    """
    Write `<run>.train.json` beside a checkpoint: its settings (no weights or resume state), per-epoch history and
    the base model's clean accuracy.

    :param path: The checkpoint file.
    :param ckpt: Its content.
    :param clean_accuracy: The base model's accuracy on the 10,000 test images.
    """
    import json

    skip = {"model_state", "optimizer_state", "scheduler_state", "rng_state", "partial", "history", "smoothing"}
    record = {k: v for k, v in ckpt.items() if k not in skip}
    record |= {"scale": ckpt["smoothing"].get("scale"), "noise": ckpt["smoothing"]["noise"]}
    if ckpt.get("deterministic"):
        record["scale"] = None
    history = [{k: None if v != v else v for k, v in h.items()} for h in ckpt["history"]]  # NaN: valid JSON null
    record |= {"epochs": int(ckpt["epoch"]) + 1, "history": history, "clean_accuracy": clean_accuracy}
    target = path.with_suffix(".train.json")
    target.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote {target}")


def main(argv: list[str] | None = None) -> int:
    """
    :param argv: Command-line arguments.
    :return: Exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("run", "status", "summarize"))
    parser.add_argument("--stream", type=int, default=0, help="this stream's number (names its log)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.what == "run":
        stream(args.stream, args.out)
    elif args.what == "summarize":
        summarize(args.out)
    else:
        status(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
