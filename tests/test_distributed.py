"""torch.distributed with the gloo backend on CPU, two processes launched by torchrun: sharded certification that
merges into the single-process file, DDP training with identical weights on every rank, and a rank killed mid-run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from art_stn.distributed import merge_shards, shard_path

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = shutil.which("torchrun")
EXE = shutil.which("art-stn")


def torchrun(*args, wait: bool = True):
    if TORCHRUN is None:
        pytest.fail("torchrun is not installed beside torch")
    cmd = [TORCHRUN, "--standalone", "--nproc_per_node=2", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not wait:
        return subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True
        )
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def rows(path: Path) -> list[list[str]]:
    """The file without its timing column, which differs from run to run."""
    return [line.split("\t")[:-1] for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dist") / "digits.pt"
    subprocess.run(
        [EXE, "train", "--dataset", "digits", "--epochs", "3", "--sigma", "0.5", "--out", str(path), "--quiet"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return path


def test_two_process_certify_equals_single_process_run(checkpoint, tmp_path):
    common = (
        "certify",
        "--checkpoint",
        checkpoint,
        "--n",
        "300",
        "--n0",
        "20",
        "--skip",
        "2",
        "--max",
        "25",
        "--quiet",
    )
    subprocess.run([EXE, *map(str, common), "--out", str(tmp_path / "single.tsv")], check=True, timeout=600)
    out = torchrun("-m", "art_stn", "--", *common, "--out", tmp_path / "merged.tsv")
    assert "25 examples" in out.stdout
    assert rows(tmp_path / "merged.tsv") == rows(tmp_path / "single.tsv")
    shard0 = rows(shard_path(tmp_path / "merged.tsv", 0, 2))[2:]
    assert [int(r[0]) for r in shard0] == list(range(0, 50, 4))  # rank 0 took examples 0, 2, 4, ... of 0, 2, ...


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_rank_killed_mid_run_then_resumed_loses_nothing(checkpoint, tmp_path):
    common = ("certify", "--checkpoint", checkpoint, "--n", "4000", "--n0", "20", "--max", "24", "--quiet")
    subprocess.run([EXE, *map(str, common), "--out", str(tmp_path / "single.tsv")], check=True, timeout=600)
    merged = tmp_path / "merged.tsv"
    proc = torchrun("-m", "art_stn", "--", *common, "--out", merged, wait=False)
    shard1 = shard_path(merged, 1, 2)
    deadline = time.time() + 300
    while time.time() < deadline and (not shard1.exists() or len(shard1.read_text().splitlines()) < 4):
        time.sleep(0.01)
    workers = _children(proc.pid)
    assert len(workers) == 2, workers
    victim = max(workers)  # one of the two ranks
    os.kill(victim, signal.SIGKILL)
    proc.wait(timeout=300)
    assert proc.returncode != 0  # the job failed ...
    assert not merged.exists() or rows(merged) != rows(tmp_path / "single.tsv")
    torchrun("-m", "art_stn", "--", *common, "--out", merged, "--resume")  # ... and resumes
    assert rows(merged) == rows(tmp_path / "single.tsv")


@pytest.mark.parametrize("method", ["stn", "consistency"])
def test_ddp_training_keeps_ranks_identical(tmp_path, method):
    torchrun(ROOT / "tests" / "dist_train_worker.py", tmp_path, method)
    r0, r1 = torch.load(tmp_path / "rank0.pt", weights_only=True), torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["steps"] == r1["steps"] == 1
    for key in r0["state"]:
        torch.testing.assert_close(r0["state"][key], r1["state"][key], rtol=0, atol=0)
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["model_state"])  # written unwrapped, by rank 0
    assert ckpt["method"] == method
    for key in r0["state"]:
        torch.testing.assert_close(ckpt["model_state"][key], r0["state"][key])


def test_ddp_train_command_and_resume_on_all_ranks(tmp_path):
    ckpt = tmp_path / "ddp.pt"
    # a step schedule: it does not depend on the total, so a 1-epoch run may continue to 2 (a cosine one may not)
    args = ("-m", "art_stn", "--", "train", "--dataset", "digits", "--sigma", "0.5", "--lr-schedule", "step", "--out",
            ckpt, "--quiet")  # fmt: skip
    torchrun(*args, "--epochs", "1")
    out = torchrun(*args, "--epochs", "2", "--resume")
    assert out.stdout.strip().startswith("epoch 2 (stn):")
    from art_stn import STNClassifier

    clf = STNClassifier.load(ckpt, device_type="cpu")
    assert clf.predict(np.zeros((1, 1, 8, 8), dtype=np.float32)).shape == (1, 10)


def test_merge_rejects_inconsistent_shards(tmp_path):
    out = tmp_path / "r.tsv"
    header = '# art-stn certify {"n": 10}\nidx\tlabel\n'
    shard_path(out, 0, 2).write_text(header + "0\t1\n2\t1\n")
    shard_path(out, 1, 2).write_text(header + "1\t1\n")
    merge_shards(out, 2)
    assert [line.split("\t")[0] for line in out.read_text().splitlines()[2:]] == ["0", "1", "2"]
    shard_path(out, 1, 2).write_text(header + "2\t1\n")
    with pytest.raises(ValueError, match="twice"):
        merge_shards(out, 2)
    shard_path(out, 1, 2).write_text('# art-stn certify {"n": 20}\nidx\tlabel\n1\t1\n')
    with pytest.raises(ValueError, match="other settings"):
        merge_shards(out, 2)
    assert sys.executable
