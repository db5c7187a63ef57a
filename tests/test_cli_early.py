"""The command line's rough edges: errors that need no model answer before torch is imported, Ctrl-C prints one
line with the command that continues, and a resumed run says where it resumes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import call

ROOT = Path(__file__).resolve().parents[1]
ROOT_FILE = "README.md"  # an existing file that is no checkpoint: the early checks only look for the file


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["certify", "--checkpoint", "missing.pt", "--out", "x.tsv"], "checkpoint not found"),
        (["certify", "--checkpoint", ROOT_FILE, "--n", "0", "--out", "x.tsv"], "--n (`n`) must be >= 1"),
        (["certify", "--checkpoint", ROOT_FILE, "--alpha", "2", "--out", "x.tsv"], "`alpha` must be in (0, 1)"),
        (["attack", "--checkpoint", "missing.pt", "--out", "x.tsv"], "checkpoint not found"),
        (["train", "--scale", "-1", "--out", "x.pt"], "`scale` must be finite and > 0"),
        (["train", "--max-train", "-5", "--out", "x.pt"], "--max-train (`max_train`) must be >= 1"),
    ],
)
def test_errors_that_need_no_model_answer_before_torch_is_imported(args, needle):
    code = (
        "import sys\nfrom art_stn.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit as e:\n    print('exit', e.code)\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.split() == ["exit", "2", "False"], result.stdout + result.stderr
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_ctrl_c_is_one_line_naming_the_command_that_continues(capsys, monkeypatch, tmp_path):
    from art_stn import commands

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "certify", interrupted)
    code, err = call(capsys, "certify", "--checkpoint", ROOT_FILE, "--n", "100", "--out", tmp_path / "c.tsv")
    assert code == 130 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "interrupted" in err and f"art-stn certify --checkpoint {ROOT_FILE} --n 100 --out" in err
    assert err.strip().endswith("--resume`")


def test_a_resumed_run_says_where_it_resumes(capsys, tmp_path):
    out = tmp_path / "r.pt"
    args = ["train", "--dataset", "digits", "--max-train", "200", "--val-size", "20", "--lr-schedule", "step"]
    assert call(capsys, *args, "--epochs", "1", "--out", out, "--quiet")[0] == 0
    code, err = call(capsys, *args, "--epochs", "2", "--out", out, "--resume", "--quiet")
    assert code == 0 and f"resuming {out} after epoch 1 of 2" in err


def test_certify_says_where_its_noise_comes_from_and_warnings_are_one_plain_line(capsys, monkeypatch, tmp_path):
    import warnings

    from art_stn import commands

    code, err = call(capsys, "certify", "--checkpoint", ROOT_FILE, "--scale", "-1", "--out", tmp_path / "c.tsv")
    assert code == 2 and "takes the noise, scale and model from --checkpoint" in err and "--scale" in err

    def warns(args):
        warnings.warn("the same samples select the class and estimate it (n0 = 0)", UserWarning, stacklevel=1)

    monkeypatch.setattr(commands, "certify", warns)
    original = warnings.showwarning
    try:
        code, err = call(capsys, "certify", "--checkpoint", ROOT_FILE, "--out", tmp_path / "c.tsv")
    finally:
        warnings.showwarning = original
    assert code == 0 and err == "art-stn certify: warning: the same samples select the class and estimate it (n0 = 0)\n"
