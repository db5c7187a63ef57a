"""
The certified-training benchmark on real MNIST (docs/certified-training.md): LeNet trained by Gaussian augmentation,
STN and consistency regularization at sigma 0.5 and 1.0 with the literature's optimizer and a scaled step schedule
(table a), and ART's MACER, SmoothAdv and SmoothMix at sigma 0.5 each given the consistency run's measured training
CPU time (table b: one thread each, so CPU seconds are the compute a run used, which other work on the machine does
not inflate as it does wall-clock seconds); every model certified the same way (Cohen's CERTIFY and the Renyi bound
on the same counts, n0 = 100, N = 10,000, alpha = 0.001, every 20th test image, noise seed 0).

Usage (each stream is one process on one thread, taking jobs from a shared queue; run as many streams side by side
as there are cores, in any session, as often as needed):

    python benchmarks/certified_training.py run --stream 0 &
    python benchmarks/certified_training.py run --stream 1 &
    python benchmarks/certified_training.py status
    python benchmarks/certified_training.py summarize   # each finished model's training record, as JSON

Every step resumes: `art-stn train --resume` (a checkpoint every 50 batches), `art-stn certify --resume` (one line per
image). A killed stream loses at most 50 batches or the image in flight. The report is
`python docs/scripts/certified_training_report.py`; it reads only committed files: the certify results (`.tsv`) and
the training records that `summarize` writes from the checkpoints (`.train.json`: settings, per-epoch wall-clock and
CPU seconds, validation accuracy, and the base model's clean accuracy on all 10,000 test images).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from art_stn.checkpoint import load_checkpoint
from art_stn.commands import ART_TRAINERS

OUT = Path("results/mnist-certified-training")
EPOCHS = 30  # 90 in the literature: scaled by 1/3 with the schedule (x0.1 every 10 epochs instead of every 30)
LR_STEP = 10
CERTIFY = ["--protocol", "tight", "--skip", "20", "--seed", "0"]  # n = 10,000, n0 = 100, alpha = 0.001; 500 images
LBD = {0.25: 10.0, 0.5: 5.0, 1.0: 5.0}  # Jeong & Shin's MNIST lambda
BATCH = {"consistency": 128}  # their code splits each batch of 256 into m = 2 steps of 128 inputs
ART_METHODS = ("macer", "smoothadv", "smoothmix")


def tag(method: str, sigma: float) -> str:
    """
    :param method: Training method.
    :param sigma: Noise scale.
    :return: The file stem of the run.
    """
    return f"{method}-sigma{sigma:g}"


def jobs() -> list[tuple[str, float]]:
    """
    :return: Every (method, sigma), in the order the streams take them: table a first, consistency and its
             Gaussian baseline at each sigma before STN, then the ART methods.
    """
    a = [("consistency", 0.5), ("gaussian", 0.5), ("stn", 0.5), ("consistency", 1.0), ("stn", 1.0), ("gaussian", 1.0)]
    return a + [(m, 0.5) for m in ART_METHODS]


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


def train_args(method: str, sigma: float, epochs: int, out: Path) -> list[str]:
    """
    :param method: Training method.
    :param sigma: Noise scale.
    :param epochs: Epochs.
    :param out: Checkpoint file.
    :return: The `art-stn train` arguments of the literature's protocol.
    """
    args = ["train", "--dataset", "mnist", "--model", "lenet", "--method", method, "--scale", str(sigma)]
    args += ["--optimizer", "sgd", "--lr", "0.01", "--momentum", "0.9", "--weight-decay", "1e-4"]
    args += ["--lr-schedule", "step", "--lr-step", str(max(1, round(epochs * LR_STEP / EPOCHS))), "--lr-decay", "0.1"]
    args += ["--batch-size", str(BATCH.get(method, 256)), "--epochs", str(epochs), "--seed", "0", "--quiet"]
    args += ["--checkpoint-every", "50", "--out", str(out), "--resume"]
    if method == "consistency":
        args += ["--lbd", str(LBD[sigma]), "--m", "2", "--eta", "0.5"]
    if method == "stn":
        args += ["--gamma", "1"]
    return args


def art_epochs(method: str, out: Path, log: Path) -> int | None:
    """
    Epochs that fit the consistency run's training CPU seconds at sigma 0.5, from one measured epoch of the method.

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
    return max(1, math.floor(budget / seconds))


class Waiting(Exception):  # noqa: N818 - a signal, not an error
    """An ART job waits for the consistency run whose CPU time it is given."""


def run_job(method: str, sigma: float, out: Path, log: Path) -> None:
    """
    Train (resumed) then certify (resumed) one model.

    :param method: Training method.
    :param sigma: Noise scale.
    :param out: The results folder.
    :param log: The log file.
    :raises Waiting: for an ART method while the consistency run at sigma 0.5 is unfinished.
    """
    ckpt = out / f"{tag(method, sigma)}.pt"
    epochs = EPOCHS
    if method in ART_METHODS:
        found = art_epochs(method, out, log)
        if found is None:
            raise Waiting
        epochs = found
    args = train_args(method, sigma, epochs, ckpt)
    if "warmup" in ART_TRAINERS.get(method, ("", {}))[1]:  # SmoothAdv, SmoothMix (MACER has none)
        warmup = max(1, round(10 * epochs / 90))  # the literature's 10 of 90 epochs, scaled
        args += ["--art-args", f"warmup={warmup}"]
    if checkpoint_state(ckpt)[0] < epochs:
        run(args, log)
    cert = ["certify", "--checkpoint", str(ckpt), "--dataset", "mnist", *CERTIFY]
    run([*cert, "--out", str(out / f"{tag(method, sigma)}.tsv"), "--resume", "--quiet"], log)


@contextlib.contextmanager
def claim(out: Path, job: tuple[str, float]) -> Iterator[bool]:
    """
    Hold a job while this stream runs it: an exclusive lock on `<run>.lock`, which the system releases when the
    process ends, however it ends, so a killed stream never leaves a job claimed.

    :param out: The results folder.
    :param job: (method, sigma).
    :return: Whether this stream holds the job (False: another stream runs it).
    """
    with (out / f"{tag(*job)}.lock").open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def stream(index: int, out: Path) -> None:
    """
    Take jobs from the shared queue until every job is done: the first job, in `jobs()` order, that no other stream
    holds; train it (resumed) then certify it (resumed). A job another stream finished is checked by running it
    again, which resumes to nothing. Streams balance themselves, and any number may run, in any session.

    :param index: This stream (names its log).
    :param out: The results folder.
    """
    out.mkdir(parents=True, exist_ok=True)
    log = out / f"run-stream{index}.log"
    torch.set_num_threads(1)
    pending = jobs()
    while pending:
        ran = False
        for job in list(pending):
            with claim(out, job) as mine:
                if not mine:
                    continue
                try:
                    run_job(*job, out, log)
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

    :param out: The results folder.
    """
    for method, sigma in jobs():
        name = tag(method, sigma)
        done, seconds = checkpoint_state(out / f"{name}.pt")
        tsv = out / f"{name}.tsv"
        rows = sum(1 for line in tsv.open() if line[:1].isdigit()) if tsv.exists() else 0
        per = f"{seconds / done:.0f} CPU s/epoch" if done else "-"
        print(f"{name:24s} epochs {done:3d} ({per:>16s}), certified {rows:3d}/500")


def summarize(out: Path) -> None:
    """
    Write `<run>.train.json` beside every finished training checkpoint (one whose certification has started): its
    method settings, per-epoch history and the base model's clean accuracy on the 10,000 test images.

    :param out: The results folder.
    """
    import json

    from art_stn import STNClassifier
    from art_stn.data import load_dataset

    x, y = load_dataset("mnist", None, train=False)
    for method, sigma in jobs():
        path = out / f"{tag(method, sigma)}.pt"
        if not path.exists():
            continue
        if not path.with_suffix(".tsv").exists():
            continue  # certification starts once training has finished: until then the run is not done
        ckpt = load_checkpoint(path)
        clf = STNClassifier.load(path, device_type="cpu")
        clf.model.eval()
        with torch.no_grad():
            pred = torch.cat([clf.model(torch.from_numpy(x[i : i + 2000])).argmax(1) for i in range(0, len(x), 2000)])
        skip = {"model_state", "optimizer_state", "scheduler_state", "rng_state", "partial", "history", "smoothing"}
        record = {k: v for k, v in ckpt.items() if k not in skip}
        record |= {"scale": ckpt["smoothing"]["scale"], "noise": ckpt["smoothing"]["noise"]}
        history = [{k: None if v != v else v for k, v in h.items()} for h in ckpt["history"]]  # NaN: valid JSON null
        record |= {"epochs": int(ckpt["epoch"]) + 1, "history": history}
        record["clean_accuracy"] = float((pred.numpy() == y).mean())
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
