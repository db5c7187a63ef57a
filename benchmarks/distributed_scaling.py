"""
Scaling of `art-stn certify` from 1 to K processes (torchrun, gloo on CPU or NCCL on GPUs).

Usage: `python benchmarks/distributed_scaling.py [--procs 2] [--n 2000] [--max 100] [--device cpu]`
Trains a small digits checkpoint (if none is given), certifies the same examples with 1 process (1 thread and all
threads) and with K processes of 1 thread each, checks the merged file equals the single-process file, and prints
wall times and speed-ups. The times include each process's start-up (importing torch and ART).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _timed(cmd: list[str], threads: int | None) -> float:
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    """
    Run the measurement and print the table.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--max", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()
    exe, torchrun = shutil.which("art-stn"), shutil.which("torchrun")
    work = Path(tempfile.mkdtemp())
    ckpt = args.checkpoint
    if ckpt is None:
        ckpt = str(work / "digits.pt")
        subprocess.run(
            [exe, "train", "--dataset", "digits", "--epochs", "3", "--sigma", "0.5", "--out", ckpt, "--quiet"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    job = [
        "certify",
        "--checkpoint",
        ckpt,
        "--n",
        str(args.n),
        "--n0",
        "50",
        "--max",
        str(args.max),
        "--device",
        args.device,
        "--quiet",
        "--overwrite",
    ]
    cores = os.cpu_count()
    t1 = _timed([exe, *job, "--out", str(work / "one.tsv")], 1)
    tall = _timed([exe, *job, "--out", str(work / "all.tsv")], None)
    tk = _timed(
        [
            torchrun,
            "--standalone",
            f"--nproc_per_node={args.procs}",
            "-m",
            "art_stn",
            "--",
            *job,
            "--out",
            str(work / "k.tsv"),
        ],
        1,
    )

    def body(name: str) -> list[list[str]]:
        return [line.split("\t")[:-1] for line in (work / name).read_text().splitlines()]

    same = body("one.tsv") == body("k.tsv") == body("all.tsv")
    images = args.max * (args.n + 50)
    print(f"device {args.device}, {cores} cores; {args.max} examples x (n={args.n} + n0=50) = {images:,} noisy images")
    print(f"{'run':<46} {'seconds':>8} {'img/s':>9} {'speed-up':>9}")
    for name, t in (
        ("1 process, 1 thread", t1),
        (f"1 process, {cores} threads", tall),
        (f"{args.procs} processes (torchrun), 1 thread each", tk),
    ):
        print(f"{name:<46} {t:>8.1f} {images / t:>9,.0f} {t1 / t:>8.2f}x")
    print(f"merged file equals the single-process file: {same}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
