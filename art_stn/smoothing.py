"""
The Monte Carlo core of randomized smoothing, framework-free (torch only, no ART): class counts of noisy copies.

    counts = sample_counts(model, x, n=10_000, scale=0.5, nb_classes=10, seed=0)

`model` is any callable from a batch of inputs to scores (a `torch.nn.Module` returning logits, or
`STNClassifier._logits`, which adds ART's preprocessing). Noisy copies of several inputs share a model call, noise
is drawn on the device, counts accumulate there, and only they cross to the host. With `seed` set, each block of an
example's copies comes from its own stream keyed by `(seed, purpose, index, block)` (:mod:`art_stn.noise`), so the
counts do not depend on the batch size, on how examples are grouped, or on out-of-memory retries (which halve the
batch size).

Layer 2: it imports only from layer 1 (:mod:`art_stn.noise`, :mod:`art_stn.validation`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from art_stn.noise import check_noise, fill_noise, fill_stream_noise, stream_block
from art_stn.validation import check_int

logger = logging.getLogger(__name__)

__all__ = [
    "CPU_BATCH_SIZE",
    "PRECISIONS",
    "auto_batch_size",
    "prepare_model",
    "probe_batch_size",
    "sample_counts",
    "set_memory_format",
    "spans",
]

#: Numerical precisions of the sampling forward passes.
PRECISIONS = ("fp32", "bf16")
#: The batch size (noisy copies per model call) used when none is given, on the CPU.
CPU_BATCH_SIZE = 256
# Upper limit on the floats of clean inputs moved to the device at once.
_MAX_CHUNK_FLOATS = 1 << 25


def spans(total: int, per: int) -> list[tuple[int, int]]:
    """
    Cut `range(total)` into consecutive `(start, end)` spans of `max(1, per)` items (the last may be shorter).

    :param total: Number of items.
    :param per: Items per span.
    :return: The spans.
    """
    per = max(1, per)
    return [(s, min(s + per, total)) for s in range(0, total, per)]


def set_memory_format(model: torch.nn.Module, channels_last: bool) -> torch.nn.Module:
    """
    Put a model's 4-D parameters and buffers in the channels-last memory format, or back in the default one
    (`Module.to(memory_format=...)` would also try, and fail on, the 5-D weights of 3-D convolutions). The tensors
    stay the same objects, so an optimizer holding them is not disturbed.

    :param model: The model.
    :param channels_last: True for channels-last, False for the default (contiguous) format.
    :return: The model.
    """
    layout = torch.channels_last if channels_last else torch.contiguous_format
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.ndim == 4:
            # The format's own strides: with one input channel both formats count as "contiguous", and
            # `.contiguous(memory_format=...)` would keep strides that make the convolution run in the other format.
            canonical = torch.empty_like(tensor.data, memory_format=layout)
            if canonical.stride() != tensor.data.stride():
                tensor.data = canonical.copy_(tensor.data)
    return model


def prepare_model(model: torch.nn.Module, channels_last: bool = False) -> torch.nn.Module:
    """
    Put a model in eval mode for sampling, its 4-D weights in the channels-last or the default memory format
    (:func:`set_memory_format`).

    :param model: The model.
    :param channels_last: Channels-last (True) or the default format (False).
    :return: The model.
    """
    model.eval()
    return set_memory_format(model, channels_last)


def _model_device(model: Any, x: torch.Tensor) -> torch.device:
    """
    :param model: The model callable.
    :param x: The inputs.
    :return: The device of the model's first parameter, else that of `x`.
    """
    if isinstance(model, torch.nn.Module):
        for parameter in model.parameters():
            return parameter.device
    return x.device


def sample_counts(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    n: int,
    scale: float,
    nb_classes: int,
    noise: str = "gaussian",
    batch_size: int = CPU_BATCH_SIZE,
    seed: int | None = None,
    indices: Sequence[int] | np.ndarray | None = None,
    purpose: int = 1,
    device: str | torch.device | None = None,
    generator: torch.Generator | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    soft: bool = False,
    progress: Any = None,
) -> np.ndarray:
    """
    Class counts of `n` noisy copies `x_i + r` of every input: the Monte Carlo core of predict and certify.

    The copies of each example come in blocks of :func:`~art_stn.noise.stream_block` copies (a number set by `n` and
    the input size only); batches of `batch_size` copies are cut from the sequence of blocks, so copies of several
    examples share a model call and a block may span calls. When the device runs out of memory the call is retried
    with half the batch size, down to 1.

    :param model: Callable from a batch `(B, *input_shape)` on `device` to scores `(B, nb_classes)`; a
           `torch.nn.Module` is put in eval mode (:func:`prepare_model`).
    :param x: Clean inputs, shape `(N, *input_shape)`, float, on any device.
    :param n: Noisy copies per input, >= 1.
    :param scale: Gaussian sigma or Laplace lambda, > 0.
    :param nb_classes: Width of the model's output.
    :param noise: `"gaussian"` or `"laplace"`.
    :param batch_size: Noisy copies per model call, >= 1.
    :param seed: Seed of the per-(seed, purpose, index, block) noise streams; None draws from `generator`.
    :param indices: Global example indices keying the streams (default: positions in `x`).
    :param purpose: Stream purpose: 0 for top-class selection samples, 1 for estimation samples, 2 for
           `predict(logits=True)`, 3 and up for the stages of sequential certification.
    :param device: Where to sample (default: the model's device, else `x`'s).
    :param generator: Generator of unseeded noise on `device` (None: torch's default generator).
    :param precision: `"fp32"` or `"bf16"` (`torch.autocast` in bfloat16).
    :param channels_last: Feed 4-D batches in the channels-last memory format.
    :param soft: Accumulate softmax probabilities instead of argmax counts.
    :param progress: Optional tqdm bar, advanced by the number of inputs finished.
    :return: Counts `(N, nb_classes)`, int64 (float64 sums of probabilities with `soft`).
    :raises ValueError: on bad arguments, or when the model returns NaN / inf or an output of the wrong width.
    """
    n = check_int(n, "n", 1)
    nb_classes = check_int(nb_classes, "nb_classes", 2)
    batch_size = check_int(batch_size, "batch_size", 1)
    noise = check_noise(noise)
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}; got {precision!r}.")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2:
        raise TypeError("`x` must be a floating-point torch tensor of shape (N, *input_shape).")
    device = _model_device(model, x) if device is None else torch.device(device)
    if isinstance(model, torch.nn.Module):
        prepare_model(model, channels_last)
    keys = np.arange(x.shape[0]) if indices is None else np.asarray(indices, dtype=np.int64)
    if keys.shape != (x.shape[0],):
        raise ValueError(f"`indices` must have shape ({x.shape[0]},); got {keys.shape}.")
    done = progress.n if progress is not None else 0
    while True:
        try:
            return _counts(
                model, x, n, float(scale), nb_classes, noise, batch_size, seed, keys, purpose, device, generator,
                precision, channels_last, soft, progress,
            )  # fmt: skip
        except torch.cuda.OutOfMemoryError:
            if batch_size == 1:
                raise
            batch_size //= 2
            logger.warning("out of memory: retrying with batch_size=%d", batch_size)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if progress is not None:
                progress.n = done
                progress.refresh()


@torch.no_grad()
def _counts(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    n: int,
    scale: float,
    k: int,
    noise: str,
    batch_size: int,
    seed: int | None,
    indices: np.ndarray,
    purpose: int,
    device: torch.device,
    generator: torch.Generator | None,
    precision: str,
    channels_last: bool,
    soft: bool,
    progress: Any,
) -> np.ndarray:
    """
    One attempt of :func:`sample_counts` at a fixed batch size (arguments as there, validated).

    :return: The counts.
    """
    shape = tuple(x.shape[1:])
    block = stream_block(n, int(np.prod(shape)))
    sizes = [block] * (n // block) + ([n % block] if n % block else [])
    seeded = seed is not None
    stream = torch.Generator(device=device) if seeded and device.type != "cpu" else None
    dtype = torch.float64 if soft else torch.int64
    out = np.zeros((x.shape[0], k), dtype=np.float64 if soft else np.int64)
    finite = torch.ones((), dtype=torch.bool, device=device)  # checked once per chunk: no sync per batch
    buf = torch.empty((min(batch_size, x.shape[0] * n), *shape), device=device)
    owner = np.empty(len(buf), dtype=np.int64)  # chunk-local example of each copy in `buf`

    def run(count: int, x_dev: torch.Tensor, acc: torch.Tensor) -> None:
        # Add the clean inputs to the first `count` noise rows of `buf`, classify, accumulate into `acc`.
        nonlocal finite
        batch = buf[:count]
        if not seeded:
            fill_noise(batch, noise, scale, generator)
        example = torch.from_numpy(owner[:count].copy()).to(device, non_blocking=True)
        batch += x_dev.index_select(0, example)
        if channels_last and batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(batch)
        if logits.ndim != 2 or logits.shape[1] != k:
            raise ValueError(f"the model's output has shape {tuple(logits.shape)}; expected (batch, {k}).")
        finite &= torch.isfinite(logits).all()
        if soft:
            acc.index_add_(0, example, torch.softmax(logits.float(), dim=1).to(dtype))
        else:
            acc.view(-1).scatter_add_(0, example * k + logits.argmax(dim=1), torch.ones_like(example))

    for start, end in spans(x.shape[0], _MAX_CHUNK_FLOATS // max(1, int(np.prod(shape)))):
        x_dev = x[start:end].to(device, non_blocking=True)
        acc = torch.zeros((end - start, k), dtype=dtype, device=device)
        pos, complete = 0, 0  # copies waiting in `buf`; examples finished since the last progress update
        for e in range(end - start):
            index = int(indices[start + e])
            for b, size in enumerate(sizes):
                block_noise = None
                if seeded and size <= len(buf) - pos:  # the whole block fits: draw it in place
                    fill_stream_noise(buf[pos : pos + size], noise, scale, seed, purpose, index, b, stream)
                elif seeded:  # the block spans model calls: draw it whole, then cut it
                    block_noise = torch.empty((size, *shape), device=device)
                    fill_stream_noise(block_noise, noise, scale, seed, purpose, index, b, stream)
                done = 0
                while done < size:
                    take = min(size - done, len(buf) - pos)
                    if block_noise is not None:
                        buf[pos : pos + take] = block_noise[done : done + take]
                    owner[pos : pos + take] = e
                    pos, done = pos + take, done + take
                    if pos == len(buf):
                        run(pos, x_dev, acc)
                        pos = 0
                        if progress is not None and complete:
                            progress.update(complete)
                            complete = 0
            complete += 1
        if pos:
            run(pos, x_dev, acc)
        if progress is not None and complete:
            progress.update(complete)
        if not bool(finite):
            raise ValueError("the model returned NaN or inf logits on noisy inputs: no certificate can be issued.")
        out[start:end] = acc.cpu().numpy()
    return out


def probe_batch_size(
    model: Callable[[torch.Tensor], torch.Tensor],
    modules: torch.nn.Module,
    input_shape: Sequence[int],
    device: str | torch.device,
    free: int,
    peak_memory: Callable[[], int],
    precision: str = "fp32",
    channels_last: bool = False,
) -> int:
    """
    Measure the device memory of one noisy copy with a probe batch of 64 zeros and size the batch from it.

    The probe runs in eval mode (batch-norm statistics untouched) under the sampling precision and memory format;
    every module's mode is restored afterwards.

    :param model: The scoring callable the sampling uses.
    :param modules: The `torch.nn.Module` behind it (put in eval mode during the probe).
    :param input_shape: The shape of one input.
    :param device: The sampling device.
    :param free: Free device memory in bytes.
    :param peak_memory: Returns the peak memory allocated so far, in bytes (reset before the call).
    :param precision: `"fp32"` or `"bf16"`.
    :param channels_last: Probe in the channels-last memory format.
    :return: The largest power of two (64 to 16384) whose batch needs at most half of `free`.
    """
    device = torch.device(device)
    modes = [(module, module.training) for module in modules.modules()]
    modules.eval()
    try:
        base = peak_memory()
        probe = torch.zeros((64, *input_shape), device=device)
        if channels_last and probe.ndim == 4:
            probe = probe.contiguous(memory_format=torch.channels_last)
        with (
            torch.no_grad(),
            torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"),
        ):
            model(probe)
        per_copy = max(1, (peak_memory() - base) // 64)
    finally:
        for module, mode in modes:
            module.training = mode
    fit = int(0.5 * free // per_copy)
    return int(2 ** np.clip(np.floor(np.log2(max(fit, 64))), 6, 14))


def auto_batch_size(
    model: Callable[[torch.Tensor], torch.Tensor],
    modules: torch.nn.Module,
    input_shape: Sequence[int],
    device: str | torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
) -> int:
    """
    The automatic batch size: :data:`CPU_BATCH_SIZE` on the CPU; on a GPU the largest power of two (64 to 16384)
    whose noisy batch needs at most half of the free device memory (:func:`probe_batch_size`). Seeded counts do not
    depend on the batch size, so processes that pick different sizes (torchrun ranks with different free memory)
    still agree.

    :param model: The scoring callable the sampling uses.
    :param modules: The `torch.nn.Module` behind it.
    :param input_shape: The shape of one input.
    :param device: The sampling device.
    :param precision: `"fp32"` or `"bf16"`.
    :param channels_last: Probe in the channels-last memory format.
    :return: The batch size.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return CPU_BATCH_SIZE
    torch.cuda.synchronize(device)  # pragma: no cover - the rest needs a GPU
    free, _ = torch.cuda.mem_get_info(device)
    torch.cuda.reset_peak_memory_stats(device)
    peak = functools.partial(torch.cuda.max_memory_allocated, device)
    return probe_batch_size(model, modules, input_shape, device, free, peak, precision, channels_last)
