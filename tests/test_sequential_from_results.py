"""benchmarks/sequential_from_results.py on small hand-written results files (fast, no model)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("sequential_from_results", ROOT / "benchmarks/sequential_from_results.py")
bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench)

COLUMNS = ["idx", "label", "predict", "radius", "radius_renyi", "correct", "seconds"]
SETTINGS = {"n": 1000, "n0": 100, "alpha": 0.001, "noise": "gaussian", "scale": 0.5, "bound": "renyi"}


def write(path: Path, rows: list[list], settings: dict, columns: list[str] = COLUMNS) -> Path:
    """A results file as `art-stn certify` writes it: the settings line, the column names, tab-separated rows."""
    lines = [f"# art-stn certify {json.dumps(settings)}", "\t".join(columns)]
    lines += ["\t".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def files(tmp_path: Path) -> tuple[Path, Path]:
    # idx, label, predict, radius (radius_renyi, correct, seconds follow); fixed holds idx 0-4, sequential 0-3 and 7.
    fixed = [[0, 1, 1, 0.9], [1, 2, 2, 0.3], [2, 3, 5, 1.2], [3, 4, -1, 0.0], [4, 5, 5, 0.6]]
    fixed = [[*r, r[3], int(r[1] == r[2]), 0.1] for r in fixed]
    seq_columns = [*COLUMNS[:-1], "samples", "certified_radius", "seconds"]
    # idx, label, predict, radius, samples
    seq = [[0, 1, 1, 0.8, 1100], [1, 2, 2, 0.2, 300], [2, 3, 5, 1.1, 200], [3, 4, -1, 0.0, 200], [7, 0, 0, 1.0, 700]]
    seq = [[i, lab, p, r, r, int(lab == p), s, 0.5, 0.1] for i, lab, p, r, s in seq]
    return (
        write(tmp_path / "fixed.tsv", fixed, SETTINGS),
        write(tmp_path / "seq.tsv", seq, {**SETTINGS, "sequential": True, "radii": [0.25, 0.5, 1.0]}, seq_columns),
    )


def test_compare_counts_forward_passes_and_certified_accuracy_over_common_inputs(tmp_path):
    fixed, seq = files(tmp_path)
    result = bench.compare(str(fixed), str(seq))
    assert result["images"] == 4 and result["only_in"] == {"fixed": 1, "sequential": 1}
    assert result["radii"] == [0.25, 0.5, 1.0]
    assert result["forward_passes"] == {"fixed": 4 * 1100, "sequential": 1100 + 300 + 200 + 200}
    assert result["ratio"] == pytest.approx(4400 / 1800)
    # Correct: idx 0 (radius 0.9 / 0.8) and idx 1 (0.3 / 0.2); idx 2 is wrong, idx 3 abstains.
    assert result["certified_accuracy"]["fixed"] == [0.5, 0.25, 0.0]
    assert result["certified_accuracy"]["sequential"] == [0.25, 0.25, 0.0]
    assert result["differing_settings"] == []
    text = bench.table(result)
    assert "| fixed | 4 | 4,400 | 50.0% | 25.0% | 0.0% |" in text
    assert "| sequential - fixed | | 2.44x fewer | -25.0 pp | +0.0 pp | +0.0 pp |" in text


def test_main_prints_the_table_and_radii_can_be_given(tmp_path, capsys):
    fixed, seq = files(tmp_path)
    assert bench.main([str(fixed), str(seq), "--radii", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "4 inputs in both files" in out and "cert. acc. r = 0.1 |" in out
    assert "| sequential | 4 | 1,800 | 50.0% |" in out and "warning" not in out
    seq.write_text(seq.read_text().replace('"scale": 0.5', '"scale": 0.7'))
    assert bench.main([str(fixed), str(seq)]) == 0
    assert "warning: the files differ in ['scale']" in capsys.readouterr().out


def test_main_refuses_a_file_without_samples_and_disjoint_files(tmp_path, capsys):
    fixed, _ = files(tmp_path)
    assert bench.main([str(fixed), str(fixed), "--radii", "0.5"]) == 2
    assert "no `samples` column" in capsys.readouterr().err
    other = write(tmp_path / "other.tsv", [[9, 1, 1, 0.5, 0.5, 1, 400, 0.5, 0.1]], SETTINGS,
                  [*COLUMNS[:-1], "samples", "certified_radius", "seconds"])  # fmt: skip
    assert bench.main([str(fixed), str(other), "--radii", "0.5"]) == 2
    assert "no input in common" in capsys.readouterr().err
    assert bench.main([str(fixed), str(tmp_path / "missing.tsv"), "--radii", "0.5"]) == 2
    assert "not found" in capsys.readouterr().err
