"""
The resumable results-file format of `art-stn certify` and `art-stn attack`: a first line
`# art-stn <kind> <json settings>`, a tab-separated header, then one line per example (or attack size), flushed as
it is done. Resuming checks the settings (a hash of the weights and the noise generator among them) in both
directions and drops a half-written last line (rewriting the file atomically); shards of a distributed run merge into
one file in index order.

Layer 3: numpy / torch only.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import torch

from art_stn.noise import noise_generator

__all__ = [
    "attack_summary",
    "LEGACY_DEFAULTS",
    "NOISE_STREAMS",
    "RESULTS_MAGIC",
    "check_resume",
    "complete_lines",
    "directed",
    "follow_recorded_layout",
    "merge_results",
    "model_settings",
    "open_results",
    "read_results",
    "results_header",
    "settings_differences",
    "weights_sha256",
    "write_atomic",
]

#: The first word of every results file.
RESULTS_MAGIC = "# art-stn"
#: Version of the seeded noise streams, recorded in results files: files written with other streams do not resume.
NOISE_STREAMS = 2
#: Settings that files written by earlier art-stn versions left out when they held these values: a file without one is
#: read as holding the value (`interval` was recorded only when it was not Clopper-Pearson; sequential runs' futility
#: level was not recorded while it was fixed at 1e-3).
LEGACY_DEFAULTS: dict[str, Any] = {"interval": "clopper-pearson", "futility": 1e-3}
#: Settings that do not change a row (`compile_forward`: only the order of floating-point operations, and a run may
#: switch to the compiled forward part-way): not compared on resume.
IGNORED_SETTINGS = ("batch_size", "compile_forward")
#: Settings that earlier art-stn versions did not record, unknown for their files: such a file resumes with a warning.
UNRECORDED_BEFORE = ("noise_generator",)


def _plain(value: Any) -> Any:
    """
    :param value: A setting (number, string, array, sequence, or another object).
    :return: A JSON-able form of it (arrays as lists, other objects by type name).
    """
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return type(value).__name__


def weights_sha256(model: Any) -> str:
    """
    SHA-256 of a model's `state_dict`: every entry's name, dtype, shape and bytes, in the `state_dict`'s order.

    :param model: A torch module.
    :return: The hex digest.
    """
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        digest.update(name.encode())
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()


def model_settings(classifier: Any) -> dict[str, Any]:
    """
    The settings of the classifier behind a results file, beyond its smoothing settings: a hash of the model's
    weights, the sampling precision, memory format and compilation setting (`compile_forward`: None is automatic),
    ART's preprocessing, and the noise-stream version.

    :param classifier: An :class:`~art_stn.STNClassifier`.
    :return: Plain values for the file's header.
    """
    preprocessing = [
        {"name": type(op).__name__, **{p: _plain(getattr(op, p, None)) for p in getattr(op, "params", [])}}
        for op in classifier.preprocessing_operations
    ]
    return {
        "model_sha256": weights_sha256(classifier.model),
        "precision": classifier.precision,
        "channels_last": classifier.uses_channels_last(),
        "compile_forward": classifier.compile_forward,
        "preprocessing": preprocessing,
        "noise_streams": NOISE_STREAMS,
        "noise_generator": noise_generator(_model_device(classifier)),
    }


def _model_device(classifier: Any) -> torch.device:
    """
    :param classifier: An :class:`~art_stn.STNClassifier`.
    :return: The device its model's parameters are on (where the seeded noise is drawn), else the classifier's.
    """
    for parameter in classifier.model.parameters():
        return parameter.device
    return torch.device(getattr(classifier, "_device", "cpu"))


def write_atomic(path: Path, text: str) -> None:
    """
    Write a text file through a temporary file in the same folder and `os.replace`, so that a failure part-way (a
    kill, a full disk) leaves the old file as it was; the temporary file is removed on failure.

    :param path: The file.
    :param text: Its new content.
    """
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def settings_differences(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """
    The settings in which a results file (`old`) and a run (`new`) differ, in either direction: a key missing on
    one side counts as a difference (shown as `"<missing>"`), except where :data:`LEGACY_DEFAULTS` says what an older
    file's missing key meant. :data:`IGNORED_SETTINGS` are not compared; a key of :data:`UNRECORDED_BEFORE` missing
    from the file only is not a difference (the caller warns).

    :param old: The file's settings.
    :param new: The run's settings.
    :return: `{key: (file's value, run's value)}` for every difference.
    """
    plain_new = json.loads(json.dumps(new))  # tuples as lists, as the file holds them
    old = {**LEGACY_DEFAULTS, **{k: v for k, v in old.items() if k not in IGNORED_SETTINGS}}
    plain_new = {**LEGACY_DEFAULTS, **{k: v for k, v in plain_new.items() if k not in IGNORED_SETTINGS}}
    for key in UNRECORDED_BEFORE:
        if key not in old and key in plain_new:
            old[key] = plain_new[key]
    missing = "<missing>"
    keys = sorted(set(old) | set(plain_new))
    return {
        k: (old.get(k, missing), plain_new.get(k, missing))
        for k in keys
        if k not in old or k not in plain_new or old[k] != plain_new[k]
    }


def check_resume(path: Path, kind: str, meta: dict[str, Any], columns: Sequence[str]) -> set[float]:
    """
    Check that an existing results file can be continued by a run with these settings and columns.

    :param path: The results file.
    :param kind: `"certify"` or `"attack"`.
    :param meta: The run's settings.
    :param columns: The run's column names.
    :return: The values of the first column already in the file.
    :raises ValueError: when the file's kind, settings (see :func:`settings_differences`) or columns differ.
    """
    old_meta, table, _ = read_results(path, expect=kind)
    mismatched = settings_differences(old_meta, meta)
    if mismatched:
        older = " (written by an older art-stn: start a new file)" if "noise_streams" in mismatched else ""
        raise ValueError(f"cannot resume {path}: its settings differ (file, now): {mismatched}{older}.")
    if list(table) != list(columns):
        raise ValueError(f"cannot resume {path}: its columns differ from {list(columns)}.")
    unrecorded = [k for k in UNRECORDED_BEFORE if k not in old_meta and k in meta]
    if unrecorded:
        warnings.warn(
            f"{path} does not record {unrecorded} (written by an older art-stn): its rows stay valid certificates, "
            f"but if they were drawn on another device (noise generator) than {[meta[k] for k in unrecorded]}, a "
            "resumed file differs from an unbroken run's.",
            UserWarning,
            stacklevel=3,
        )
    return {float(v) for v in table[columns[0]]}


def complete_lines(path: Path) -> list[str]:
    """
    The lines of a text file that end with a newline: a last line without one was cut short by a killed run (or a
    write buffer flushed mid-line) and is left out, even when its fields happen to parse.

    :param path: The file.
    :return: The complete lines, without their newlines.
    """
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    return lines if text.endswith("\n") or not lines else lines[:-1]


def directed(value: float, digits: int, up: bool = False) -> str:
    """
    Write a number in `digits` significant digits rounded toward minus infinity (or plus infinity), so that a
    written certificate never claims more than the computed one: radii and `p1_lower` are written down, `p2_upper`
    up. Reading the text back gives a float on the same side of `value` (it is exactly representable).

    :param value: The number.
    :param digits: Significant digits.
    :param up: Round toward plus infinity instead.
    :return: The text.
    """
    value = float(value)
    if not np.isfinite(value) or value == 0.0:
        return f"{value:g}"
    exact = Decimal(value)
    quantum = Decimal(1).scaleb(exact.adjusted() - digits + 1)
    rounded = exact.quantize(quantum, rounding=ROUND_CEILING if up else ROUND_FLOOR)
    return f"{float(rounded):.{digits}g}"


def results_header(kind: str, meta: dict[str, Any], columns: Sequence[str]) -> str:
    """
    The two header lines of a results file: `# art-stn <kind> <json settings>` and the tab-separated column names.

    :param kind: `"certify"` or `"attack"`.
    :param meta: The settings the rows depend on.
    :param columns: The column names.
    :return: The header, ending with a newline.
    """
    return f"{RESULTS_MAGIC} {kind} {json.dumps(meta, sort_keys=True)}\n" + "\t".join(columns) + "\n"


def open_results(
    path: Path, kind: str, meta: dict[str, Any], columns: list[str], resume: bool, overwrite: bool
) -> tuple[set[int], Any]:
    """
    Open a results file for appending, after checking it can be written (before any work starts).

    A new file gets a first line `# art-stn <kind> <json settings>` and a tab-separated header. With `resume`, an
    existing file must have the same kind, settings and columns (:func:`check_resume`); a last line without its
    newline (cut short by a killed run) is dropped (the file is rewritten atomically), so its example is done again.

    :param path: The results file.
    :param kind: `"certify"` or `"attack"`.
    :param meta: The settings the rows depend on.
    :param columns: The column names.
    :param resume: Continue an existing file.
    :param overwrite: Replace an existing file.
    :return: The values of the first column already in the file, and the open file.
    """
    done: set[float] = set()
    if path.exists() and path.stat().st_size > 0:
        if resume:
            done = check_resume(path, kind, meta, columns)
            text = path.read_text(encoding="utf-8")
            if not text.endswith("\n"):  # a killed run may leave half a line
                write_atomic(path, text[: text.rfind("\n") + 1])
        elif not overwrite:
            raise FileExistsError(f"{path} exists: pass --resume to continue it or --overwrite to replace it.")
        else:
            path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by the caller
    if handle.tell() == 0:
        handle.write(results_header(kind, meta, columns))
        handle.flush()
    return done, handle


def read_results(path: str | Path, expect: str | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray], str]:
    """
    Read a results file written by `art-stn certify` or `art-stn attack`. A last line without its newline (the
    half-written line of a killed run) is left out.

    :param path: The file.
    :param expect: The kind it must be (`"certify"` or `"attack"`), or None for either.
    :return: `(settings, columns, kind)`, columns as float arrays by name.
    :raises FileNotFoundError: if the file does not exist.
    :raises ValueError: if it is not a well-formed results file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file not found: {path}")
    lines = complete_lines(path)
    if len(lines) < 2 or not lines[0].startswith(RESULTS_MAGIC + " "):
        raise ValueError(f"{path} is not an art-stn results file (no '{RESULTS_MAGIC} <kind> {{...}}' first line).")
    try:
        _, _, kind, meta_text = lines[0].split(" ", 3)
        meta = json.loads(meta_text)
    except (ValueError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: malformed first line: {err}") from err
    if expect is not None and kind != expect:
        raise ValueError(f"{path} holds {kind} results, not {expect} results.")
    columns = lines[1].split("\t")
    rows = []
    for number, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(columns):
            raise ValueError(f"{path}:{number}: expected {len(columns)} tab-separated fields, got {len(fields)}.")
        try:
            rows.append([float(f) for f in fields])
        except ValueError as err:
            raise ValueError(f"{path}:{number}: not a number: {err}") from err
    data = np.array(rows, dtype=np.float64).reshape(len(rows), len(columns))
    return meta, {c: data[:, i] for i, c in enumerate(columns)}, kind


def _rows(path: Path) -> list[tuple[float, str]]:
    """
    :param path: A results file.
    :return: Its complete rows as `(first column's value, line)`.
    """
    return [(float(line.split("\t", 1)[0]), line) for line in complete_lines(path)[2:] if line.strip()]


def merge_results(
    out: str | Path, shards: Sequence[str | Path], remove: bool = False, base: str | Path | None = None
) -> Path:
    """
    Merge results files of one run (e.g. the shards of `torchrun` ranks) into one, rows in index order (written to
    a temporary file, then renamed).

    :param out: The merged results file.
    :param shards: The files to merge; they must share kind, settings and columns.
    :param remove: Delete the shard files afterwards.
    :param base: An existing merged file being resumed (usually `out`), already checked against the shards'
           settings (:func:`check_resume`): its header and rows are kept, and shard rows of examples it holds are
           left out (the shards of an earlier run of the same settings).
    :return: The merged file.
    :raises ValueError: when the shards disagree on their settings or columns, or hold an index twice.
    """
    out = Path(out)
    shards = [Path(s) for s in shards]
    parts = [read_results(s) for s in shards]
    meta, table, kind = parts[0]
    for s, (m, t, k) in zip(shards[1:], parts[1:], strict=True):
        if (m, list(t), k) != (meta, list(table), kind):
            raise ValueError(f"shard {s} has other settings or columns than {shards[0]}.")
    rows: list[tuple[float, str]] = []
    for s in shards:
        rows += _rows(s)
    keys = [k for k, _ in rows]
    if len(set(keys)) != len(keys):
        raise ValueError("the shards hold an example twice: were they written with different world sizes?")
    header = results_header(kind, meta, list(table))
    if base is not None and Path(base).is_file():
        kept = _rows(Path(base))
        held = {k for k, _ in kept}
        rows = kept + [(k, line) for k, line in rows if k not in held]
        header = "\n".join(complete_lines(Path(base))[:2]) + "\n"
    rows.sort(key=lambda kv: kv[0])
    write_atomic(out, header + "".join(line + "\n" for _, line in rows))
    if remove:
        for s in shards:
            s.unlink()
    return out


def follow_recorded_layout(classifier: Any, path: str | Path | None, resume: bool) -> None:
    """
    A classifier whose memory format is measured (`channels_last=None`) continues a results file in the format the
    file records, so that a resumed file has one format throughout (its header is compared on resume).

    :param classifier: The classifier.
    :param path: The results file that `resume` continues.
    :param resume: Whether the run resumes.
    """
    if not resume or classifier.channels_last is not None or path is None:
        return
    path = Path(path)
    if path.is_file() and path.stat().st_size:
        recorded = read_results(path)[0].get("channels_last")
        if isinstance(recorded, bool):
            classifier.set_params(channels_last=recorded)


def attack_summary(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """
    Robust accuracy by attack size from the lines of an attack results file (one per image and size): per size,
    the fraction of its images that are robust (`accuracy`), the clean accuracy of the same images, their number,
    and the mean L2 and L-infinity norms of the perturbations. A file of an older art-stn, one line per size, is
    returned as it is.

    :param table: The columns of an attack results file (:func:`read_results`).
    :return: Columns `eps`, `accuracy`, `clean_accuracy`, `examples` (and `mean_l2`, `mean_linf` for per-image
             files, `mean_perturbation` for older ones), one entry per size in increasing order.
    :raises ValueError: when the table is neither form, or an attacked image lacks its size-0 (clean) line.
    """
    if "accuracy" in table:  # one line per size
        return dict(table)
    if not {"idx", "eps", "correct", "l2", "linf"} <= set(table):
        raise ValueError(f"not attack results: columns {list(table)}.")
    clean = {int(i): bool(c) for i, e, c in zip(table["idx"], table["eps"], table["correct"], strict=True) if e == 0}
    out: dict[str, list[float]] = {
        k: [] for k in ("eps", "accuracy", "clean_accuracy", "examples", "mean_l2", "mean_linf")
    }
    for e in np.unique(table["eps"]):
        rows = table["eps"] == e
        images = table["idx"][rows].astype(int)
        missing = [i for i in images if i not in clean]
        if missing:
            raise ValueError(f"images {missing[:5]} have attack lines but no size-0 (clean) line.")
        for key, value in (
            ("eps", e),
            ("accuracy", table["correct"][rows].mean()),
            ("clean_accuracy", np.mean([clean[i] for i in images])),
            ("examples", rows.sum()),
            ("mean_l2", table["l2"][rows].mean()),
            ("mean_linf", table["linf"][rows].mean()),
        ):
            out[key].append(float(value))
    return {k: np.array(v) for k, v in out.items()}
