"""
Additive noise for smoothing, drawn on the estimator's device from a seedable `torch.Generator`.

Two kinds: `"gaussian"` (standard deviation `scale`, the L2 certificates) and `"laplace"` (i.i.d. Laplace of scale
`scale`, density `exp(-|r|/scale) / (2 scale)`, the L1 certificate). Laplace noise is the difference of two
exponential draws, so both kinds use only generator-aware in-place samplers and never touch the host.

Seeded streams (:func:`fill_stream_noise`): with a seed, the noise of one block of one example's copies comes from its
own generator, keyed by `(seed, purpose, index, block)` so that distinct keys can never share a stream: on a CUDA
device a Philox generator seeded with a 64-bit key that is a bijection of the packed key (:func:`stream_key`), on the
CPU numpy's Philox generator keyed by the 128-bit pair `(seed, packed key)` (PyTorch's CPU generator keeps only the
low 32 bits of a seed, so hashed keys would collide). Blocks hold :func:`stream_block` copies, a number that depends
on the sample count and the input size only, so the noise does not depend on the batch size.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "NOISES",
    "STREAM_BLOCK_FLOATS",
    "check_noise",
    "fill_noise",
    "fill_stream_noise",
    "noise_generator",
    "sample_noise",
    "stream_block",
    "stream_key",
]

NOISES = ("gaussian", "laplace")
#: Floats of noise per seeded block (16 MiB of float32): a block holds `max(1, STREAM_BLOCK_FLOATS // input size)`
#: copies of one example.
STREAM_BLOCK_FLOATS = 1 << 22

_MASK64 = (1 << 64) - 1
# Bit widths of the packed stream key: purpose | block | index (64 bits in all).
_PURPOSE_BITS, _BLOCK_BITS, _INDEX_BITS = 6, 18, 40


def check_noise(noise: str) -> str:
    """
    Validate a noise name.

    :param noise: `"gaussian"` or `"laplace"`.
    :return: The name.
    :raises ValueError: for any other value.
    """
    if noise not in NOISES:
        raise ValueError(f"`noise` must be one of {NOISES}; got {noise!r}.")
    return noise


def fill_noise(out: torch.Tensor, noise: str, scale: float, generator: torch.Generator | None) -> torch.Tensor:
    """
    Fill `out` in place with noise of the given kind and scale.

    :param out: The floating-point tensor to fill (on the generator's device).
    :param noise: `"gaussian"` or `"laplace"`.
    :param scale: Standard deviation (Gaussian) or scale (Laplace), > 0.
    :param generator: The random generator (None: torch's default generator for the device).
    :return: `out`.
    """
    if noise == "gaussian":
        return out.normal_(0.0, scale, generator=generator)
    out.exponential_(1.0, generator=generator)
    other = torch.empty_like(out).exponential_(1.0, generator=generator)
    return out.sub_(other).mul_(scale)


def sample_noise(
    shape: tuple[int, ...],
    noise: str,
    scale: float,
    generator: torch.Generator | None,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """
    Draw a noise tensor on `device`.

    :param shape: Shape of the tensor.
    :param noise: `"gaussian"` or `"laplace"`.
    :param scale: Standard deviation (Gaussian) or scale (Laplace), > 0.
    :param generator: The random generator, on `device`.
    :param device: The device.
    :param dtype: The floating-point dtype.
    :return: The noise.
    """
    return fill_noise(torch.empty(shape, device=device, dtype=dtype), noise, scale, generator)


def stream_block(n: int, numel: int) -> int:
    """
    The number of copies per seeded noise block: `min(n, max(1, STREAM_BLOCK_FLOATS // numel))`.

    It depends only on the number of samples and the input size, so seeded noise does not depend on the batch size.

    :param n: Noisy copies per example.
    :param numel: Number of elements of one input.
    :return: Copies per block.
    """
    return max(1, min(int(n), STREAM_BLOCK_FLOATS // max(1, int(numel))))


def _mix64(z: int) -> int:
    """
    The splitmix64 finalizer: a bijection of 64-bit integers (xor-shifts and multiplications by odd constants).

    :param z: An integer in `[0, 2**64)`.
    :return: Its image in `[0, 2**64)`.
    """
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _packed_key(seed: int, purpose: int, index: int, block: int) -> int:
    """
    Pack `(purpose, index, block)` into 64 bits, injectively, after checking every part is in range.

    :param seed: The user's seed, in `[0, 2**64)`.
    :param purpose: 0 (`n0` selection samples), 1 (estimation samples), 2 (scores of `predict(logits=True)`), 3 and
           up (later stages of sequential certification); below 2**6.
    :param index: Global index of the example, in `[0, 2**40)`.
    :param block: Index of the block of copies within the example, in `[0, 2**18)`.
    :return: The packed key.
    :raises ValueError: for a part out of range.
    """
    for name, value, bits in (
        ("seed", seed, 64),
        ("purpose", purpose, _PURPOSE_BITS),
        ("index", index, _INDEX_BITS),
        ("block", block, _BLOCK_BITS),
    ):
        if not 0 <= value < 1 << bits:
            raise ValueError(f"noise stream `{name}` must lie in [0, 2**{bits}); got {value}.")
    return purpose | (block << _PURPOSE_BITS) | (index << (_PURPOSE_BITS + _BLOCK_BITS))


def stream_key(seed: int, purpose: int, index: int, block: int) -> int:
    """
    The 64-bit generator seed of one block of one example's noise on a CUDA device.

    `(purpose, index, block)` is packed injectively into 64 bits and mapped through a bijection that depends on the
    seed, so for one seed distinct blocks get distinct keys by construction (and a Philox generator uses all 64 bits).

    :param seed: The user's seed, in `[0, 2**64)`.
    :param purpose: 0 for the `n0` selection samples, 1 for the estimation samples, 2 for the scores of
           `predict(logits=True)`.
    :param index: Global index of the example, in `[0, 2**40)`.
    :param block: Index of the block of copies within the example, in `[0, 2**18)`.
    :return: The key, in `[0, 2**64)`.
    :raises ValueError: for a part out of range.
    """
    return _mix64(_packed_key(seed, purpose, index, block) ^ _mix64(seed))


def noise_generator(device: str | torch.device) -> str:
    """
    The generator that seeded noise streams use on a device (:func:`fill_stream_noise`): what, with the seed and
    the stream keys, determines the noise, so results files record it.

    :param device: The device the noise is drawn on.
    :return: `"numpy-philox"` on the CPU, `"torch-philox-cuda"` on a CUDA device, `"torch-<type>"` on another.
    :raises TypeError: if `device` is not a device or a device name.
    """
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"`device` must be a torch.device or a device name; got {type(device).__name__}.")
    kind = torch.device(device).type
    if kind == "cpu":
        return "numpy-philox"
    return "torch-philox-cuda" if kind == "cuda" else f"torch-{kind}"


def fill_stream_noise(
    out: torch.Tensor,
    noise: str,
    scale: float,
    seed: int,
    purpose: int,
    index: int,
    block: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """
    Fill `out` in place with the noise of one seeded stream (one block of copies of one example).

    On the CPU the stream is numpy's Philox generator keyed by `(seed, packed key)` (128 bits, distinct keys by
    construction); on another device a torch generator (Philox on CUDA) seeded with :func:`stream_key`.

    :param out: The float32 or float64 tensor to fill.
    :param noise: `"gaussian"` or `"laplace"`.
    :param scale: Standard deviation (Gaussian) or scale (Laplace), > 0.
    :param seed: The user's seed.
    :param purpose: 0, 1 or 2 (see :func:`stream_key`).
    :param index: Global index of the example.
    :param block: Index of the block within the example.
    :param generator: Optional torch generator on `out`'s device to reseed (saves creating one per block; unused on
           the CPU).
    :return: `out`.
    """
    if out.device.type != "cpu":
        gen = generator if generator is not None else torch.Generator(device=out.device)
        gen.manual_seed(stream_key(seed, purpose, index, block))
        return fill_noise(out, noise, scale, gen)
    rng = np.random.Generator(np.random.Philox(key=(seed << 64) | _packed_key(seed, purpose, index, block)))
    target = out if out.is_contiguous() and out.dtype in (torch.float32, torch.float64) else None
    arr = target.numpy() if target is not None else np.empty(tuple(out.shape), dtype=np.float32)
    if noise == "gaussian":
        rng.standard_normal(out=arr, dtype=arr.dtype)
    else:
        rng.standard_exponential(out=arr, dtype=arr.dtype)
        arr -= rng.standard_exponential(size=arr.shape, dtype=arr.dtype)
    arr *= scale
    if target is None:
        out.copy_(torch.from_numpy(arr))
    return out
