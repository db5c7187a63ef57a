"""The command-line entry point, the examples and the docs figure script run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


def test_cli_version_and_help():
    out = _run("-m", "art_stn", "--version")
    assert out.returncode == 0 and "art-stn" in out.stdout
    out = _run("-m", "art_stn", "--help")
    assert out.returncode == 0 and "demo" in out.stdout


def test_cli_unknown_command_fails_clearly():
    out = _run("-m", "art_stn", "frobnicate")
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_example_certificates_from_counts():
    out = _run(str(ROOT / "examples" / "certificates_from_counts.py"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 4 and "abstain" not in lines[1]


def test_figure5_script_writes_png(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    assert matplotlib
    out = tmp_path / "fig.png"
    res = _run(str(ROOT / "docs" / "scripts" / "figure5.py"), str(out))
    assert res.returncode == 0, res.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_bounds_benchmark_runs():
    out = _run(str(ROOT / "benchmarks" / "bounds_speed.py"), "1000")
    assert out.returncode == 0, out.stderr
    assert "renyi_l2_radius" in out.stdout


def test_certify_throughput_benchmark_runs():
    out = _run(
        str(ROOT / "benchmarks" / "certify_throughput.py"), "--quick", "--device", "cpu", "--models", "digits-cnn"
    )
    assert out.returncode == 0, out.stderr
    assert "digits-cnn" in out.stdout and "ratio" in out.stdout


@pytest.mark.slow
def test_quickstart_example_runs():
    out = _run(str(ROOT / "examples" / "quickstart.py"))
    assert out.returncode == 0, out.stderr
    assert "certified accuracy at L2 radius 0.25" in out.stdout and "under PGD" in out.stdout


def test_cli_reference_documents_every_flag():
    """docs/cli.md stays in sync with the parser: every sub-command and every flag appears in it."""
    import argparse

    from art_stn.cli import build_parser

    text = (ROOT / "docs" / "cli.md").read_text()
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        assert f"## `art-stn {name}`" in text, name
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in text, (name, flag)


@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("*.sh")), ids=lambda p: p.name)
def test_example_shell_scripts_parse(script):
    out = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "art-stn" in script.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("script", ["certify_pretrained.py", "attack_smoothed.py"])
def test_digits_examples_run(script):
    out = _run(str(ROOT / "examples" / script))
    assert out.returncode == 0, out.stderr
    assert "certified" in out.stdout


def test_train_mnist_example_on_tiny_idx_files(tmp_path):
    from tests.conftest import write_mnist

    write_mnist(tmp_path / "data", n_train=16, n_test=4)
    out = _run(
        str(ROOT / "examples" / "train_mnist.py"),
        "--data-dir",
        str(tmp_path / "data"),
        "--epochs",
        "1",
        "--n",
        "20",
        "--max",
        "4",
        "--out",
        str(tmp_path / "m.pt"),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "certified accuracy at L2 1.58" in out.stdout and (tmp_path / "m.pt").is_file()


@pytest.mark.slow
def test_distributed_scaling_benchmark_runs():
    out = _run(str(ROOT / "benchmarks" / "distributed_scaling.py"), "--n", "100", "--max", "6")
    assert out.returncode == 0, out.stderr
    assert "merged file equals the single-process file: True" in out.stdout


@pytest.mark.slow
def test_cohen_agreement_benchmark_agrees_everywhere():
    out = _run(str(ROOT / "benchmarks" / "cohen_agreement.py"), "--random", "3")
    assert out.returncode == 0, out.stderr
    total = out.stdout.strip().splitlines()[-1].split("|")
    assert total[1].strip() == "all" and total[5].strip() == "0 / 0", total
    assert float(total[6]) <= 1e-12 and float(total[7]) <= 1e-12, total
