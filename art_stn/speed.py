"""
The fastest memory format for a model on the machine at hand, chosen by measurement.

Channels-last convolutions run 1.3x to 1.7x faster than the default layout on some CPUs and GPUs and slower on others,
so art-stn measures instead of assuming: :func:`fastest_channels_last` times a few forward passes of the model in
both layouts, interleaved, and keeps the faster one when it wins by more than 5%. The answer is cached per machine
(CPU model or GPU name, torch version, threads), model (class and parameter shapes), input shape and batch size, in
memory and in `speed.json` of art-stn's cache folder (`$ART_STN_CACHE` or `~/.cache/art-stn`), so a run probes once.
The layout changes only the order of floating-point operations, not the classifier.

Layer 3: it imports torch and the layers below (:mod:`art_stn.smoothing`, :mod:`art_stn.data`'s cache folder).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import logging
import os
import platform
import time
from pathlib import Path

import torch

from art_stn.data import cache_dir
from art_stn.smoothing import set_memory_format

logger = logging.getLogger(__name__)

__all__ = ["COMPILE_AFTER", "CompiledForward", "fastest_channels_last", "machine_name", "probe_memory_format"]

#: Channels-last is kept only when it is at least this much faster than the default layout.
MIN_GAIN = 1.05
#: Part of the cache key: a new probe (or a new way of applying the format) invalidates earlier answers.
PROBE_VERSION = 2
_MEMORY: dict[str, bool] = {}
#: Noisy copies a classifier with `compile_forward=None` samples on the CPU before it compiles its forward pass.
#: Measured on an AMD EPYC (docs/benchmarks.md): LeNet's first compiled call takes 1 to 30 s (warm or cold compile
#: cache) and certification then runs 1.28x faster (6,754 to 8,645 copies/s), saving 32 us per copy, so even a cold
#: compilation is repaid within another 930,000 copies. A run shorter than this never compiles; a longer one loses
#: at most the compile time (under 20% of the run) and gains from about twice this many copies on.
COMPILE_AFTER = 1_000_000


class CompiledForward:
    """
    A model's forward pass under `torch.compile` for batches of exactly `batch_size` inputs without gradients (one
    graph, compiled once: batch sizes are not made dynamic), the eager forward for any other batch. When compiling
    fails (no C++ compiler, an operator the compiler does not support), it warns once and stays eager: the two
    compute the same function, in another order of floating-point operations.
    """

    def __init__(self, model: torch.nn.Module, batch_size: int) -> None:
        """
        :param model: The model (shared, not copied: later weight changes are seen).
        :param batch_size: The batch size the compiled graph serves.
        """
        self.model, self.batch_size, self.failed = model, batch_size, False
        self.compiled = torch.compile(model, dynamic=False)
        if torch.cuda._is_compiled() and not torch.cuda.is_available():
            # Compiling imports torch.utils.cpp_extension, whose import logs a guess of CUDA_HOME on a CUDA build
            # without the runtime: noise about a compiler the CPU never uses. Import it once, quietly.
            quiet = logging.getLogger("torch.utils.cpp_extension")
            level = quiet.level
            quiet.setLevel(logging.ERROR)
            try:
                importlib.import_module("torch.utils.cpp_extension")
            finally:
                quiet.setLevel(level)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """
        :param x: A batch.
        :return: The model's output.
        """
        if self.failed or x.shape[0] != self.batch_size or torch.is_grad_enabled():
            return self.model(x)
        try:
            return self.compiled(x)
        except Exception as err:  # noqa: BLE001 - any failure to compile leaves the eager forward, which is exact
            self.failed = True
            logger.warning("torch.compile failed (%s: %s): sampling goes on without it.", type(err).__name__, err)
            return self.model(x)


def machine_name(device: torch.device) -> str:
    """
    :param device: The device the model runs on.
    :return: The GPU's name, or the CPU model (from /proc/cpuinfo where there is one, else `platform.processor()`).
    """
    if device.type == "cuda":  # pragma: no cover - needs a GPU
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _key(model: torch.nn.Module, input_shape: tuple[int, ...], device: torch.device, batch_size: int) -> str:
    """
    :return: The cache key of a probe: machine, torch, threads, model class and parameter shapes, input, batch.
    """
    shapes = ";".join(f"{name}:{tuple(p.shape)}" for name, p in model.named_parameters())
    digest = hashlib.sha256(f"{type(model).__qualname__}|{shapes}".encode()).hexdigest()[:16]
    threads = f"threads={torch.get_num_threads()}"
    shape = "x".join(map(str, input_shape))
    parts = [f"probe{PROBE_VERSION}", machine_name(device), device.type, torch.__version__, threads, digest, shape]
    return "|".join([*parts, f"batch={batch_size}"])


def _has_4d_weights(model: torch.nn.Module) -> bool:
    return any(t.ndim == 4 for t in (*model.parameters(), *model.buffers()))


def probe_memory_format(
    model: torch.nn.Module, input_shape: tuple[int, ...], device: torch.device, batch_size: int = 256, rounds: int = 3
) -> dict[str, float]:
    """
    Time forward passes of a copy of `model` in the default and the channels-last layout, interleaved.

    :param model: The model (not changed: a copy is timed).
    :param input_shape: The shape of one input, `(C, H, W)`.
    :param device: The device to time on.
    :param batch_size: Inputs per forward pass.
    :param rounds: Timed rounds per layout (the fastest counts).
    :return: Images per second of each layout, `{"contiguous": ..., "channels_last": ...}`.
    """
    probe = copy.deepcopy(model).to(device).eval()
    x = torch.rand((batch_size, *input_shape), device=device)
    best = {"contiguous": float("inf"), "channels_last": float("inf")}

    def run(layout: str) -> float:
        set_memory_format(probe, layout == "channels_last")
        batch = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x
        with torch.no_grad():
            probe(batch)  # warm-up in this layout
            if device.type == "cuda":  # pragma: no cover - needs a GPU
                torch.cuda.synchronize(device)
            start, calls = time.perf_counter(), 0
            while calls < 2 or time.perf_counter() - start < 0.05:
                probe(batch)
                calls += 1
            if device.type == "cuda":  # pragma: no cover - needs a GPU
                torch.cuda.synchronize(device)
        return (time.perf_counter() - start) / calls

    for _ in range(rounds):
        for layout in best:
            best[layout] = min(best[layout], run(layout))
    return {layout: batch_size / seconds for layout, seconds in best.items()}


def fastest_channels_last(
    model: torch.nn.Module,
    input_shape: tuple[int, ...],
    device: torch.device | str,
    batch_size: int = 256,
    cache: str | Path | None = None,
) -> bool:
    """
    Whether channels-last is the faster memory format for `model` here: measured once per machine, model, input
    shape and batch size (:func:`probe_memory_format`), then cached. Always False for inputs that are not images
    `(C, H, W)` or models without 4-D weights.

    :param model: The model (not changed).
    :param input_shape: The shape of one input.
    :param device: The device the model runs on.
    :param batch_size: Inputs per forward pass in the probe.
    :param cache: The cache folder (default: :func:`art_stn.data.cache_dir`); a folder that cannot be written only
           loses the cache on disk.
    :return: True when channels-last was measured at least 5% faster.
    """
    device = torch.device(device)
    if len(input_shape) != 3 or not _has_4d_weights(model):
        return False
    key = _key(model, tuple(input_shape), device, batch_size)
    if key in _MEMORY:
        return _MEMORY[key]
    path = cache_dir(cache) / "speed.json"
    try:
        stored = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        stored = {}
    entry = stored.get(key) if isinstance(stored, dict) else None
    if not (isinstance(entry, dict) and isinstance(entry.get("channels_last"), bool)):
        speeds = probe_memory_format(model, tuple(input_shape), device, batch_size)
        entry = {"channels_last": speeds["channels_last"] >= MIN_GAIN * speeds["contiguous"], "img_per_s": speeds}
        logger.info("memory-format probe on %s: %s", machine_name(device), speeds)
        stored = {**(stored if isinstance(stored, dict) else {}), key: entry}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"speed.json.tmp{os.getpid()}")
            tmp.write_text(json.dumps(stored, indent=1, sort_keys=True))
            os.replace(tmp, path)
        except OSError as err:
            logger.info("the memory-format probe's cache %s could not be written: %s", path, err)
    _MEMORY[key] = entry["channels_last"]
    return _MEMORY[key]
