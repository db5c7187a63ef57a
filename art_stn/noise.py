"""
Additive noise for smoothing, drawn on the estimator's device from a seedable `torch.Generator`.

Two kinds: `"gaussian"` (standard deviation `scale`, the L2 certificates) and `"laplace"` (i.i.d. Laplace of scale
`scale`, density `exp(-|r|/scale) / (2 scale)`, the L1 certificate). Laplace noise is the difference of two
exponential draws, so both kinds use only generator-aware in-place samplers and never touch the host.
"""

from __future__ import annotations

import torch

__all__ = ["NOISES", "check_noise", "fill_noise", "sample_noise", "stream_key"]

NOISES = ("gaussian", "laplace")

_MASK64 = (1 << 63) - 1


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


def stream_key(seed: int, purpose: int, index: int, block: int) -> int:
    """
    A 63-bit generator seed for one block of one example's noise (splitmix64-style mixing).

    Seeding each (example, block) separately makes certificates independent of how examples are batched or
    sharded across processes.

    :param seed: The user's seed.
    :param purpose: 0 for the `n0` selection samples, 1 for the estimation samples.
    :param index: Global index of the example.
    :param block: Index of the block of samples within the example.
    :return: The seed.
    """
    z = (seed * 0x9E3779B97F4A7C15 + purpose * 0xD1B54A32D192ED03 + index * 0xBF58476D1CE4E5B9 + block) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) & _MASK64
