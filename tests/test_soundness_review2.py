"""
Issue 22: seven defects of a soundness review, each reproduced by a test named after it that failed before its fix
(the issue's closing note lists the failure each one showed).

Statistical tests use fixed seeds; each states its false-failure probability.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

from art_stn.bounds import cohen_certify_l2_radius
from art_stn.certification import _RADIUS_FUNCTIONS, certify_counts, certify_sequential
from art_stn.confidence import clopper_pearson_lower, clopper_pearson_upper, stage_schedule, top_two_bounds
from art_stn.distributed import shard_path
from art_stn.evaluate import certify_to_file, max_certifiable_radius, read_results
from art_stn.results import open_results

ROOT = Path(__file__).resolve().parents[1]


def _certify(clf, x, y, out, **kwargs):
    return certify_to_file(clf, x, y, np.arange(len(x)), out, n=40, n0=8, alpha=0.01, verbose=False, **kwargs)


def _edit_header(path: Path, edit) -> None:
    """Rewrite a results file's settings with `edit(meta)` (simulating a file written elsewhere or earlier)."""
    lines = path.read_text().splitlines(keepends=True)
    _, _, kind, meta_text = lines[0].split(" ", 3)
    meta = json.loads(meta_text)
    edit(meta)
    lines[0] = f"# art-stn {kind} {json.dumps(meta, sort_keys=True)}\n"
    path.write_text("".join(lines))


# ------------------------------------------------------------------------------------------------ defect 1
@pytest.mark.parametrize("interval", ["sison-glaz", "goodman"])
@pytest.mark.parametrize(("n", "alpha"), [(1, 0.001), (1, 0.05), (5, 0.05), (100, 0.05)])
def test_sison_glaz_all_one_class_radius_finite(interval, n, alpha):
    # Every sample on one class: any valid (1 - alpha) lower bound on its probability is at most alpha^(1/n) (the
    # probability of n out of n is p^n, so p1 = alpha^(1/n) gives these counts with probability alpha).
    counts = np.zeros((1, 10), dtype=np.int64)
    counts[0, 3] = n
    for noise in ("gaussian", "laplace"):
        report = certify_counts(counts, alpha, 0.5, noise=noise, interval=interval)
        assert report.p1_lower[0] <= alpha ** (1.0 / n) + 1e-12, report.p1_lower
        assert all(np.isfinite(r).all() for r in report.radii.values()), report.radii
    ceiling = max_certifiable_radius(n, alpha, 0.5, interval=interval, nb_classes=10)
    assert all(np.isfinite(r) for r in ceiling.values()), ceiling


def test_sison_glaz_degenerate_region_is_handled():
    # statsmodels' Sison-Glaz gives [0, 1] for every class on these counts (its search finds no width): the
    # degenerate region is replaced by the Clopper-Pearson bounds with Bonferroni, which hold on their own.
    counts = np.array([[99, 1, 0, 0, 0, 0, 0, 0, 0, 0]])
    bounds = top_two_bounds(counts, 0.05, interval="sison-glaz")
    assert bounds.p1_lower[0] == pytest.approx(clopper_pearson_lower(99, 100, 0.025))
    assert bounds.p2_upper[0] == pytest.approx(clopper_pearson_upper(1, 100, 0.025))


@pytest.mark.parametrize("interval", ["sison-glaz", "goodman"])
def test_sison_glaz_coverage_of_a_peaked_input(interval):
    # The case: p1 = 0.999 over 10 classes, n = 100, alpha = 0.05; 2000 count vectors (seed 7), the top class
    # taken from the counts (simultaneous intervals allow it). Sound bounds fail at most alpha of the time, so the
    # violations are at most Binomial(2000, 0.05); the test allows its 1 - 1e-6 quantile (149): false-failure
    # probability < 1e-6. Before the fix Sison-Glaz's zero-width [1, 1] failed 88.7% of the time.
    p = np.array([0.999] + [0.001 / 9] * 9)
    repeats, alpha = 2000, 0.05
    counts = np.random.default_rng(7).multinomial(100, p, size=repeats)
    bounds = top_two_bounds(counts, alpha, interval=interval)
    p_top = p[bounds.top]
    p_other = np.array([np.max(np.delete(p, t)) for t in bounds.top])
    violations = int(np.sum((bounds.p1_lower > p_top) | (bounds.p2_upper < p_other)))
    assert violations <= int(binom.isf(1e-6, repeats, alpha)), f"{violations} of {repeats} bounds are wrong"


# ------------------------------------------------------------------------------------------------ defect 2
EXE = shutil.which("art-stn")
TORCHRUN = shutil.which("torchrun")


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("review2") / "digits.pt"
    subprocess.run(
        [EXE, "train", "--dataset", "digits", "--epochs", "1", "--sigma", "0.5", "--out", str(path), "--quiet"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return path


def _cli_certify(checkpoint: Path, out: Path, *extra: str, processes: int = 1) -> subprocess.CompletedProcess:
    args = ["certify", "--checkpoint", str(checkpoint), "--n0", "10", "--out", str(out), "--quiet", *extra]
    if processes == 1:
        cmd = [EXE, *args]
    else:
        if TORCHRUN is None:
            pytest.fail("torchrun is not installed beside torch")
        cmd = [TORCHRUN, "--standalone", f"--nproc_per_node={processes}", "-m", "art_stn", "--", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)


def test_distributed_resume_refuses_other_settings(digits_checkpoint, tmp_path):
    out = tmp_path / "eight.tsv"
    assert _cli_certify(digits_checkpoint, out, "--n", "100", "--max", "8").returncode == 0
    before = out.read_text()
    run = _cli_certify(digits_checkpoint, out, "--n", "50", "--max", "4", "--resume", processes=2)
    assert out.read_text() == before, "the existing file was rewritten"
    assert run.returncode != 0 and "settings differ" in run.stderr, run.stderr[-2000:]


def test_distributed_resume_keeps_rows(digits_checkpoint, tmp_path):
    single, out = tmp_path / "single.tsv", tmp_path / "resumed.tsv"
    assert _cli_certify(digits_checkpoint, single, "--n", "100", "--max", "8").returncode == 0
    assert _cli_certify(digits_checkpoint, out, "--n", "100", "--max", "4").returncode == 0
    kept = out.read_text().splitlines()
    run = _cli_certify(digits_checkpoint, out, "--n", "100", "--max", "8", "--resume", processes=2)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = out.read_text().splitlines()
    assert lines[: len(kept)] == kept  # the four rows are kept as they were (their `seconds` included)
    expected = single.read_text().splitlines()
    assert [line.split("\t")[:-1] for line in lines] == [line.split("\t")[:-1] for line in expected]
    shards = [shard_path(out, r, 2).read_text().splitlines()[2:] for r in range(2)]
    assert sorted(int(line.split("\t")[0]) for shard in shards for line in shard) == [4, 5, 6, 7]  # only the missing


# ------------------------------------------------------------------------------------------------ defect 3
def test_resume_refuses_interval_change_in_either_direction(digits_classifier, digits, tmp_path):
    x, y = digits[0][:3], digits[1][:3]
    goodman = _certify(digits_classifier(), x, y, tmp_path / "goodman.tsv", interval="goodman")
    with pytest.raises(ValueError, match="interval"):
        _certify(digits_classifier(), x, y, goodman, resume=True)  # Clopper-Pearson rows into a goodman file
    plain = _certify(digits_classifier(), x, y, tmp_path / "plain.tsv")
    assert read_results(plain)[0]["interval"] == "clopper-pearson"
    with pytest.raises(ValueError, match="interval"):
        _certify(digits_classifier(), x, y, plain, resume=True, interval="goodman")


def test_resume_refuses_keys_missing_on_either_side(digits_classifier, digits, tmp_path):
    x, y = digits[0][:3], digits[1][:3]
    meta = {"dataset": "digits", "skip": 1, "checkpoint": "stn.pt"}
    cli = _certify(digits_classifier(), x, y, tmp_path / "cli.tsv", meta=meta)
    with pytest.raises(ValueError, match="dataset"):
        _certify(digits_classifier(), x, y, cli, resume=True)  # a library call without `meta`
    bare = _certify(digits_classifier(), x, y, tmp_path / "bare.tsv")
    with pytest.raises(ValueError, match="dataset"):
        _certify(digits_classifier(), x, y, bare, resume=True, meta=meta)


def test_resume_of_a_file_written_before_the_fix(digits_classifier, digits, tmp_path):
    # Older files recorded no `interval` for Clopper-Pearson and no noise generator; nothing else differs, so they
    # resume, and the rows equal an unbroken run's.
    x, y = digits[0][:4], digits[1][:4]
    unbroken = _certify(digits_classifier(), x, y, tmp_path / "unbroken.tsv")
    old = _certify(digits_classifier(), x[:2], y[:2], tmp_path / "old.tsv")

    def legacy(meta):
        meta.pop("interval", None)
        meta.pop("noise_generator", None)

    _edit_header(old, legacy)
    with pytest.warns(UserWarning, match="noise_generator"):
        _certify(digits_classifier(), x, y, old, resume=True)
    strip = [line.split("\t")[:-1] for line in unbroken.read_text().splitlines()[1:]]
    assert [line.split("\t")[:-1] for line in old.read_text().splitlines()[1:]] == strip


# ------------------------------------------------------------------------------------------------ defect 4
def _dtype_state(names, fields, flags):
    return (3, "|", None, names, fields, 8, 1, flags)


class _Forged:
    """Pickles as `numpy.dtype('f8')` followed by a BUILD that turns it into a structured dtype."""

    def __init__(self, fields, flags=0):
        self.fields, self.flags = fields, flags

    def __reduce__(self):
        return np.dtype, ("f8", False, True), _dtype_state(tuple(self.fields), self.fields, self.flags)


class _Array:
    """Pickles as numpy's array reconstruction with the given dtype object and raw bytes."""

    def __init__(self, dtype, raw: bytes):
        self.dtype, self.raw = dtype, raw

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        return _reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), self.dtype, False, self.raw)


@pytest.mark.parametrize(
    "payload",
    [
        np.array([1, None], dtype=object),
        np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]),
        np.array(["ab"]),
        _Array(_Forged({"a": (np.dtype("<i8"), 0)}), b"\0" * 8),
    ],
    ids=["object", "structured", "unicode", "forged-structured"],
)
def test_unpickler_refuses_object_and_structured_dtypes(payload):
    from art_stn.data import _restricted_unpickle

    data = pickle.dumps((payload, payload), protocol=4)
    with pytest.raises(pickle.UnpicklingError, match="dtype"):
        _restricted_unpickle(data)


def test_unpickler_refuses_a_forged_object_field_without_crashing(tmp_path):
    # A float64 dtype whose BUILD adds an object field while its flags say it holds no objects: numpy would then read
    # the array's bytes as object pointers. Loaded in a subprocess, so that a crash cannot take the test run down.
    data = pickle.dumps(_Array(_Forged({"a": (np.dtype(object), 0)}), b"\x41" * 8), protocol=4)
    (tmp_path / "forged.pkl").write_bytes(data)
    path = str(tmp_path / "forged.pkl")
    code = (
        "import pickle, sys\nfrom art_stn.data import _restricted_unpickle\n"
        f"try:\n    a = _restricted_unpickle(open({path!r}, 'rb').read()); print(repr(a['a']))\n"
        "except pickle.UnpicklingError as err:\n    print('refused:', err); sys.exit(3)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 3 and "dtype" in run.stdout, (run.returncode, run.stdout[-500:], run.stderr[-500:])


def test_unpickler_still_reads_plain_numeric_arrays():
    from art_stn.data import _restricted_unpickle

    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(3, dtype=">i8"), np.array([True, False]))
    for protocol in (3, 4):
        loaded = _restricted_unpickle(pickle.dumps(arrays, protocol=protocol))
        for got, want in zip(loaded, arrays, strict=True):
            assert got.dtype.kind == want.dtype.kind and np.array_equal(got, want)


# ------------------------------------------------------------------------------------------------ defect 5
def test_results_resume_rewrite_is_atomic(digits_classifier, digits, tmp_path, monkeypatch):
    x, y = digits[0][:3], digits[1][:3]
    out = _certify(digits_classifier(), x, y, tmp_path / "r.tsv")
    original = out.read_text()[:-3]  # a killed run's half-written last line: resuming rewrites the file without it
    out.write_text(original)
    meta, table, _ = read_results(out)

    def full_disk(self, text, *args, **kwargs):  # writes half, then the disk is full
        with open(self, "w", encoding="utf-8") as handle:
            handle.write(text[: len(text) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_disk)
    monkeypatch.setattr(Path, "write_bytes", lambda self, data: full_disk(self, data.decode()))
    with pytest.raises(OSError, match="No space"):
        open_results(out, "certify", meta, list(table), resume=True, overwrite=False)
    monkeypatch.undo()
    assert out.read_text() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.tsv"]  # no temporary file left behind


# ------------------------------------------------------------------------------------------------ defect 6
def _cp(bound, k, m, alpha) -> np.ndarray:
    """A Clopper-Pearson bound with a failure probability per row."""
    out = np.empty(len(k))
    for a in np.unique(alpha):
        rows = alpha == a
        out[rows] = bound(k[rows], m[rows], float(a))
    return out


def _recompute(table, meta) -> dict[str, np.ndarray]:
    """Each row's radii from what it records: its stage's counts, samples and failure probability."""
    c1, c2 = table["count1"], table["count2"]
    m, a = table["stage_n"], table["stage_alpha"]
    p1 = _cp(clopper_pearson_lower, c1, m, a / 2)
    p2 = np.minimum(_cp(clopper_pearson_upper, c2, m, a / 2), 1 - p1)
    np.testing.assert_allclose(table["p1_lower"], p1, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(table["p2_upper"], p2, rtol=1e-7, atol=1e-12)
    scale, radii = meta["scale"], {}
    for name in ("renyi", "cohen-top2", "pixeldp"):
        r = np.zeros(len(c1))
        ok = p1 > p2
        r[ok] = _RADIUS_FUNCTIONS[name](p1[ok], p2[ok], scale)
        radii[name] = r
    pa = _cp(clopper_pearson_lower, c1, m, a)
    radii["cohen"] = np.where(pa >= 0.5, cohen_certify_l2_radius(np.maximum(pa, 0.5), scale), 0.0)
    return radii


def test_sequential_row_radius_recomputable_from_the_row(digits_classifier, digits, tmp_path):
    x, y = digits[0][:150], digits[1][:150]
    clf = digits_classifier(scale=0.5)
    out = certify_to_file(
        clf, x, y, np.arange(len(x)), tmp_path / "seq.tsv", n=3200, n0=32, alpha=0.01, verbose=False,
        radii=[0.25, 0.5, 0.75, 1.0, 1.25, 1.5], sequential=True, stages=[100, 200, 400, 800, 1600],
    )  # fmt: skip
    meta, table, _ = read_results(out)
    sizes, alphas = stage_schedule(3200, 0.01, meta["stages"])
    assert set(table["stage_n"]) <= set(sizes)
    np.testing.assert_allclose(table["stage_alpha"], [alphas[sizes.index(int(s))] for s in table["stage_n"]])
    radii = _recompute(table, meta)
    for name, r in radii.items():
        np.testing.assert_allclose(table[f"radius_{name}"], r, rtol=1e-5, atol=1e-12, err_msg=name)  # 6 digits written
    np.testing.assert_allclose(table["radius"], radii[meta["bound"]], rtol=1e-5, atol=1e-12)


def test_sequential_report_bounds_support_its_radius():
    # 400 inputs with top-class probabilities spread over [0.5, 1), counts drawn by numpy (seed 5): every input's
    # reported radius must be the radius of its reported bounds, which must be those of its reported stage.
    rng = np.random.default_rng(5)
    p1 = rng.uniform(0.5, 1.0, size=400)
    probs = np.column_stack([p1, (1 - p1) * 0.6, (1 - p1) * 0.4])

    def sample(rows, m, purpose):
        return np.stack([rng.multinomial(m, probs[r]) for r in rows])

    sizes, alphas = stage_schedule(6400, 0.01, [100, 200, 400, 800, 1600, 3200])
    report = certify_sequential(
        sample, np.zeros(400, dtype=np.int64), 3, 100, sizes, alphas, (0.25, 0.5, 0.75, 1.0, 1.25), 0.5
    )
    ok = report.p1_lower > report.p2_upper
    expected = np.zeros(400)
    expected[ok] = _RADIUS_FUNCTIONS["renyi"](report.p1_lower[ok], report.p2_upper[ok], 0.5)
    wrong = int(np.sum(~np.isclose(report.radius, expected, rtol=1e-9)))
    assert wrong == 0, f"{wrong} of 400 radii differ from the radius of their own bounds"
    m = report.counts.sum(axis=1)
    assert np.array_equal(m, np.asarray(sizes)[report.stage])
    stage_alpha = np.asarray(alphas)[report.stage]
    c1, c2 = report.counts[:, 0], report.counts[:, 1:].max(axis=1)
    np.testing.assert_allclose(report.p1_lower, _cp(clopper_pearson_lower, c1, m, stage_alpha / 2))
    p2 = np.minimum(_cp(clopper_pearson_upper, c2, m, stage_alpha / 2), 1 - report.p1_lower)
    np.testing.assert_allclose(report.p2_upper, p2)


# ------------------------------------------------------------------------------------------------ defect 7
def test_resume_refuses_another_noise_generator(digits_classifier, digits, tmp_path):
    x, y = digits[0][:3], digits[1][:3]
    out = _certify(digits_classifier(), x, y, tmp_path / "cpu.tsv")
    assert read_results(out)[0]["noise_generator"] == "numpy-philox"

    def on_cuda(meta):
        meta["noise_generator"] = "torch-philox-cuda"

    _edit_header(out, on_cuda)  # as if the file had been started on a GPU
    with pytest.raises(ValueError, match="noise_generator"):
        _certify(digits_classifier(), x, y, out, resume=True)
