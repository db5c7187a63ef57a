"""
`STNClassifier`: a smoothed PyTorch classifier for ART with Renyi-divergence (Gaussian, L2) and Laplace (L1)
certificates, noise-averaged gradients for ART's attacks, and device-side Monte Carlo sampling.

| Paper link: https://arxiv.org/abs/1809.03113 (Li, Wang, Chen, Carin, NeurIPS 2019)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from art.estimators.certification.randomized_smoothing.randomized_smoothing import RandomizedSmoothingMixin
from art.estimators.classification.pytorch import PyTorchClassifier
from tqdm.auto import tqdm

from art_stn.bounds import (
    cohen_certify_l2_radius,
    cohen_l2_radius,
    laplace_l1_radius,
    pixeldp_l2_radius,
    renyi_l2_radius,
)
from art_stn.confidence import (
    INTERVALS,
    abstain_pvalue,
    check_alpha,
    check_interval,
    clopper_pearson_lower,
    clopper_pearson_upper,
    stage_schedule,
    top_two_bounds,
)
from art_stn.noise import check_noise, fill_noise, fill_stream_noise, stream_block

if TYPE_CHECKING:
    from art.defences.postprocessor import Postprocessor
    from art.defences.preprocessor import Preprocessor
    from art.utils import CLIP_VALUES_TYPE, PREPROCESSING_TYPE

logger = logging.getLogger(__name__)

__all__ = [
    "BOUNDS",
    "FUTILITY_LEVEL",
    "INTERVALS",
    "N0_ZERO_WARNING",
    "CertifyReport",
    "STNClassifier",
    "certify_counts",
    "check_int",
    "check_labels",
]

#: The bounds that apply to each kind of noise (the first is the default).
#: Numerical precisions of the sampling forward passes.
PRECISIONS = ("fp32", "bf16")
#: The batch size (noisy copies per model call) used when none is given, on the CPU.
CPU_BATCH_SIZE = 256
BOUNDS: dict[str, tuple[str, ...]] = {
    "gaussian": ("renyi", "cohen", "cohen-top2", "pixeldp"),
    "laplace": ("laplace",),
}
# The bounds computed from (p1_lower, p2_upper); "cohen" is computed from pa_lower (Cohen et al.'s CERTIFY).
_RADIUS_FUNCTIONS = {
    "renyi": renyi_l2_radius,
    "cohen-top2": cohen_l2_radius,
    "pixeldp": pixeldp_l2_radius,
    "laplace": laplace_l1_radius,
}
#: The warning of `certify` with `n0=0` (the paper's protocol: one sample set selects and bounds the top class).
N0_ZERO_WARNING = (
    "n0=0: the top class is selected from the same samples that bound it (the paper's protocol), so p1_lower and "
    "p2_upper hold with probability below 1 - alpha near ties (simulated at alpha=0.05, n=100: 10% failures with "
    "5 tied classes, 20% with 10). Use n0 > 0 (Cohen et al.'s protocol) for the stated guarantee."
)
# Noise-stream purpose of stage s >= 1 of sequential certification (stage 0 uses 1, the estimation samples' own
# purpose; 0 is the selection samples', 2 the scores of predict(logits=True)): `_STAGE_PURPOSE + s` (3, 4, ...), so
# every stage draws fresh, independent noise.
_STAGE_PURPOSE = 2
#: Default level of the optimistic bounds of sequential certification's futility rule.
FUTILITY_LEVEL = 1e-3
# Upper limit on the floats of clean inputs moved to the device at once.
_MAX_CHUNK_FLOATS = 1 << 25


def check_int(value: Any, name: str, minimum: int) -> int:
    """
    Validate an integer argument.

    :param value: The value.
    :param name: The argument's name, for the error message.
    :param minimum: The smallest allowed value.
    :return: The value as an int.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an integer; got {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {value}.")
    return int(value)


def check_labels(y: np.ndarray | torch.Tensor, nb_classes: int, name: str = "y") -> np.ndarray:
    """
    Validate labels given as class indices `(N,)` or one-hot rows `(N, nb_classes)`.

    :param y: The labels (numpy array, torch tensor or sequence).
    :param nb_classes: The number of classes.
    :param name: The argument's name, for the error message.
    :return: Class indices, int64.
    :raises ValueError: on a wrong shape or width, non-integer indices, or a label outside `[0, nb_classes)`.
    """
    y_np = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if y_np.ndim == 2:
        if y_np.shape[1] != nb_classes:
            raise ValueError(f"`{name}` one-hot rows must have width nb_classes={nb_classes}; got {y_np.shape[1]}.")
        y_np = np.argmax(y_np, axis=1)
    if y_np.ndim != 1 or y_np.dtype.kind not in "iuf":
        raise ValueError(f"`{name}` must be class indices (N,) or one-hot rows (N, {nb_classes}); got {y_np.shape}.")
    if y_np.dtype.kind == "f" and not np.all(np.mod(y_np, 1) == 0):
        raise ValueError(f"`{name}` must hold integer class indices.")
    if y_np.size and ((y_np < 0) | (y_np >= nb_classes)).any():
        raise ValueError(f"`{name}` holds a label outside [0, {nb_classes}).")
    return y_np.astype(np.int64)


def _spans(total: int, per: int) -> list[tuple[int, int]]:
    """
    Cut `range(total)` into consecutive `(start, end)` spans of `max(1, per)` items (the last may be shorter).

    :param total: Number of items.
    :param per: Items per span.
    :return: The spans.
    """
    per = max(1, per)
    return [(s, min(s + per, total)) for s in range(0, total, per)]


def _halve_batch_on_oom(sample_counts: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """
    Retry a counting call `(self, x, n, batch_size, ..., progress=None)` with half the batch size whenever the
    device runs out of memory, down to a batch of 1.

    :param sample_counts: The counting method.
    :return: The wrapped method.
    """

    @functools.wraps(sample_counts)
    def wrapper(
        self: Any, x: torch.Tensor, n: int, batch_size: int, *args: Any, progress: Any = None, **kwargs: Any
    ) -> np.ndarray:
        done = progress.n if progress is not None else 0
        while True:
            try:
                return sample_counts(self, x, n, batch_size, *args, progress=progress, **kwargs)
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

    return wrapper


@dataclass(frozen=True)
class CertifyReport:
    """
    The full record of a certification: counts, bounds and the radius under every bound that applies to the noise.

    :param prediction: Certified class per input, -1 where abstained.
    :param radius: Radius under the classifier's configured bound (0 where abstained).
    :param top: Selected top class per input (from the `n0` samples when `n0 > 0`).
    :param counts: Class counts of the `n` estimation samples, shape `(N, nb_classes)`.
    :param n: Number of estimation samples per input.
    :param n0: Number of selection samples per input (0: the top class is chosen from the `n` samples).
    :param alpha: Failure probability of each certificate.
    :param p1_lower: Lower confidence bound on the top-class probability.
    :param p2_upper: Upper confidence bound on the runner-up probability.
    :param radii: Radius per bound name (`renyi`, `cohen`, `cohen-top2`, `pixeldp` for Gaussian noise, `laplace` for
           Laplace), 0 where that bound does not certify.
    :param bound: The configured bound, whose radius is `radius`.
    :param norm: The norm of the radii: 2 (Gaussian) or 1 (Laplace).
    :param pa_lower: Cohen et al.'s bound: the one-sided Clopper-Pearson lower bound at level `alpha` on the
           top-class probability (the `cohen` bound certifies where it is >= 0.5).
    :param interval: The interval of `p1_lower` / `p2_upper`: `clopper-pearson`, `sison-glaz` or `goodman`.
    :param certified_by: Per bound name, the inputs that bound certifies (`renyi`, `cohen-top2`, `pixeldp`,
           `laplace`: `p1_lower > p2_upper`; `cohen`: `pa_lower >= 0.5`). `prediction` follows the configured bound.
    :param samples: Noisy samples drawn per input (`n0` plus the estimation samples), shape `(N,)`.
    :param requested_radii: The radii asked about (`radii` of `certify_report`), ascending; None if none were.
    :param certified_radius: With `requested_radii`: per input the largest requested radius certified under the
           configured bound, -1 where none is (abstentions included; 0 when 0 was asked about and the input is
           certified with a radius below the next requested one).
    :param stages: Sequential certification: the cumulative estimation sample sizes of the stages; None for fixed n.
    """

    prediction: np.ndarray
    radius: np.ndarray
    top: np.ndarray
    counts: np.ndarray
    n: int
    n0: int
    alpha: float
    p1_lower: np.ndarray
    p2_upper: np.ndarray
    radii: dict[str, np.ndarray] = field(default_factory=dict)
    bound: str = "renyi"
    norm: int = 2
    pa_lower: np.ndarray | None = None
    interval: str = "clopper-pearson"
    certified_by: dict[str, np.ndarray] = field(default_factory=dict)
    samples: np.ndarray | None = None
    requested_radii: tuple[float, ...] | None = None
    certified_radius: np.ndarray | None = None
    stages: tuple[int, ...] | None = None

    @property
    def certified(self) -> np.ndarray:
        """
        Boolean mask of inputs with a certificate (`prediction != -1`).
        """
        return self.prediction >= 0


def certify_counts(
    counts: np.ndarray,
    alpha: float,
    scale: float,
    noise: str = "gaussian",
    bound: str | None = None,
    top: np.ndarray | None = None,
    interval: str = "clopper-pearson",
    n0: int = 0,
) -> CertifyReport:
    """
    Certificates from class counts alone: the bounds and the radius under every bound for the noise, without a model.

    This is what :meth:`STNClassifier.certify_report` does after sampling; it lets counts from elsewhere (e.g.
    Cohen et al.'s or the reference code's scripts) be certified by the same rules.

    - `renyi`, `cohen-top2`, `pixeldp` (Gaussian) and `laplace` (Laplace) take `p1_lower` and `p2_upper` from
      `interval` (Clopper-Pearson at `alpha / 2` each by default) and certify where `p1_lower > p2_upper`.
    - `cohen` is Cohen et al.'s CERTIFY (as ART's `RandomizedSmoothingMixin.certify`): `pa_lower` is the one-sided
      Clopper-Pearson lower bound at level `alpha` on the top-class count, whatever `interval` is; it certifies where
      `pa_lower >= 0.5` (their code abstains when `pa_lower < 0.5`) with radius `scale * Phi^-1(pa_lower)`.

    :param counts: Class counts of shape `(N, k)` of the estimation samples.
    :param alpha: Failure probability of each certificate, in (0, 1).
    :param scale: Gaussian sigma or Laplace lambda, > 0.
    :param noise: `"gaussian"` or `"laplace"`.
    :param bound: The bound whose radius and certification are `radius` and `prediction` (default: the first of
           :data:`BOUNDS` for the noise).
    :param top: Top class per input selected from separate samples (default: the argmax of `counts`).
    :param interval: One of :data:`INTERVALS`.
    :param n0: The number of selection samples behind `top`, recorded in the report (and in `samples`).
    :return: The :class:`CertifyReport` (`n` is the largest row sum).
    """
    noise = check_noise(noise)
    bound = BOUNDS[noise][0] if bound is None else bound
    if bound not in BOUNDS[noise]:
        raise ValueError(f"`bound` must be one of {BOUNDS[noise]} for {noise} noise; got {bound!r}.")
    n0 = check_int(n0, "n0", 0)
    bounds = top_two_bounds(counts, alpha, top=top, interval=interval)
    pa_lower = clopper_pearson_lower(bounds.count1, bounds.n, alpha)
    radii: dict[str, np.ndarray] = {}
    certified: dict[str, np.ndarray] = {}
    for name in BOUNDS[noise]:
        ok = pa_lower >= 0.5 if name == "cohen" else bounds.certified
        r = np.zeros(len(ok))
        if ok.any():
            if name == "cohen":
                r[ok] = cohen_certify_l2_radius(pa_lower[ok], scale)
            else:
                r[ok] = _RADIUS_FUNCTIONS[name](bounds.p1_lower[ok], bounds.p2_upper[ok], float(scale))
        radii[name], certified[name] = r, ok
    return CertifyReport(
        prediction=np.where(certified[bound], bounds.top, -1),
        radius=radii[bound],
        top=bounds.top,
        counts=np.asarray(counts),
        n=int(bounds.n.max()) if len(bounds.n) else 0,
        n0=n0,
        alpha=float(alpha),
        p1_lower=bounds.p1_lower,
        p2_upper=bounds.p2_upper,
        radii=radii,
        bound=bound,
        norm=2 if noise == "gaussian" else 1,
        pa_lower=pa_lower,
        interval=interval,
        certified_by=certified,
        samples=bounds.n + n0,
    )


def _check_radii(radii: Sequence[float]) -> tuple[float, ...]:
    """
    Validate the radii asked about.

    :param radii: A non-empty sequence of finite radii >= 0.
    :return: The distinct radii, ascending.
    """
    try:
        values = np.asarray(radii, dtype=np.float64).ravel()
    except (TypeError, ValueError) as err:
        raise TypeError(f"`radii` must be a sequence of numbers: {err}") from err
    if values.size == 0 or not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"`radii` must be a non-empty list of finite radii >= 0; got {radii!r}.")
    return tuple(float(r) for r in np.unique(values))


def _levels(radius: np.ndarray, certified: np.ndarray, radii: tuple[float, ...]) -> np.ndarray:
    """
    How many of the (ascending) requested radii each certificate reaches.

    :param radius: Certified radius per input.
    :param certified: Whether the input is certified.
    :param radii: The requested radii, ascending.
    :return: Per input the number of requested radii `r <= radius` (0 where not certified).
    """
    return np.where(certified, np.searchsorted(np.asarray(radii), radius, side="right"), 0)


def _largest_certified(levels: np.ndarray, radii: tuple[float, ...]) -> np.ndarray:
    """
    :param levels: Output of :func:`_levels`.
    :param radii: The requested radii, ascending.
    :return: The largest requested radius certified per input, -1 where none is.
    """
    return np.where(levels > 0, np.asarray((-1.0, *radii))[levels], -1.0)


class STNClassifier(RandomizedSmoothingMixin, PyTorchClassifier):
    """
    Smoothed classifier with additive Gaussian or Laplace noise and certified radii (Li et al. 2019).

    It is a drop-in for ART's `PyTorchRandomizedSmoothing`: `predict` is the smoothed classifier (class frequencies
    of `sample_size` noisy copies, zero rows where the binomial test abstains), `certify` returns ART's
    `(prediction, radius)` and `loss_gradient` / `class_gradient` average over the noise (expectation over
    transformation), so ART's attacks run against the smoothed classifier unchanged.

    All sampling runs on the estimator's device: noise is drawn there, noisy copies of several inputs share a
    batch, class counts accumulate there, and only the counts cross to the host. Noise is added in input space
    (before ART's `preprocessing`), and noisy copies are not clipped (as in ART and Cohen et al.); `clip_values`
    bounds the adversarial examples of attacks.

    With `seed` set, each example's noise comes from its own stream, keyed by the seed and the example's index
    (`indices` of `certify`, default its position), so certificates do not depend on how examples are batched.

    | Paper link: https://arxiv.org/abs/1809.03113
    """

    estimator_params = PyTorchClassifier.estimator_params + [
        "sample_size",
        "scale",
        "alpha",
        "noise",
        "bound",
        "n0",
        "eot_samples",
        "seed",
        "precision",
        "channels_last",
        "interval",
    ]

    def __init__(
        self,
        model: torch.nn.Module,
        loss: torch.nn.modules.loss._Loss,
        input_shape: tuple[int, ...],
        nb_classes: int,
        optimizer: torch.optim.Optimizer | None = None,
        channels_first: bool = True,
        clip_values: CLIP_VALUES_TYPE | None = None,
        preprocessing_defences: Preprocessor | list[Preprocessor] | None = None,
        postprocessing_defences: Postprocessor | list[Postprocessor] | None = None,
        preprocessing: PREPROCESSING_TYPE = (0.0, 1.0),
        device_type: str = "gpu",
        noise: str = "gaussian",
        scale: float = 0.25,
        sample_size: int = 100,
        alpha: float = 0.001,
        bound: str | None = None,
        n0: int = 100,
        eot_samples: int | None = None,
        seed: int | None = None,
        precision: str = "fp32",
        channels_last: bool = False,
        interval: str = "clopper-pearson",
    ) -> None:
        """
        Create a smoothed classifier.

        :param model: PyTorch model returning logits (or any scores whose argmax is the class).
        :param loss: The loss for `loss_gradient` and training, e.g. `torch.nn.CrossEntropyLoss()`.
        :param input_shape: The shape of one input, e.g. `(1, 28, 28)`.
        :param nb_classes: The number of classes; the model's output width must equal it.
        :param optimizer: The optimizer used for training.
        :param channels_first: Set channels first or last.
        :param clip_values: `(min, max)` of the input features; bounds adversarial examples.
        :param preprocessing_defences: ART preprocessing defence(s), PyTorch-framework ones only (they run on the
               device after the noise is added).
        :param postprocessing_defences: ART postprocessing defence(s).
        :param preprocessing: `(subtrahend, divisor)` applied after the noise, as in ART.
        :param device_type: `"gpu"` (CUDA if available) or `"cpu"`.
        :param noise: `"gaussian"` (L2 certificates) or `"laplace"` (L1 certificate).
        :param scale: Standard deviation sigma of the Gaussian noise, or scale lambda of the Laplace noise, > 0.
        :param sample_size: Number of noisy copies per input in `predict` (Algorithm 1), >= 1.
        :param alpha: Failure probability of certificates and of the abstain test, in (0, 1).
        :param bound: The certificate reported by `certify`: `"renyi"` (the paper, default for Gaussian),
               `"cohen"` (Cohen et al.'s CERTIFY, as ART), `"cohen-top2"` (Cohen's Theorem 1 with both bounds) or
               `"pixeldp"` for Gaussian noise, `"laplace"` (default and only choice) for Laplace noise.
        :param n0: Number of separate samples that select the top class in `certify` (Cohen et al.'s protocol);
               0 selects it from the `n` estimation samples (the paper's protocol).
        :param eot_samples: Noise draws averaged in `loss_gradient` / `class_gradient` (default `sample_size`).
        :param seed: Seed of the noise; None draws fresh randomness.
        :param precision: `"fp32"` (default) or `"bf16"`: run the model under `torch.autocast` in bfloat16 while
               sampling (predict / certify). The counts are those of the bf16 model, so its certificates are sound
               for the bf16 classifier, not for the fp32 one with the same weights: a choice of base classifier.
        :param channels_last: Use the channels-last memory format for 4-D inputs and weights while sampling (faster
               convolutions on recent GPUs); other tensors (e.g. of 3-D convolutions) keep their format.
        :param interval: The confidence interval behind `p1_lower` / `p2_upper`: `"clopper-pearson"` (one-sided,
               `alpha / 2` each, Bonferroni: the paper's text), `"sison-glaz"` (needs >= 7 classes) or `"goodman"`
               (simultaneous multinomial intervals at level `alpha`: the reference code's choice). The `cohen` bound
               always uses its own one-sided Clopper-Pearson bound.
        """
        super().__init__(
            model=model,
            loss=loss,
            input_shape=input_shape,
            nb_classes=nb_classes,
            optimizer=optimizer,
            channels_first=channels_first,
            clip_values=clip_values,
            preprocessing_defences=preprocessing_defences,
            postprocessing_defences=postprocessing_defences,
            preprocessing=preprocessing,
            device_type=device_type,
            sample_size=sample_size,
            scale=scale,
            alpha=alpha,
        )
        self.noise = noise
        self.bound = BOUNDS.get(noise, ("renyi",))[0] if bound is None else bound
        self.n0 = n0
        self.eot_samples = eot_samples
        self.seed = seed
        self.precision = precision
        self.channels_last = channels_last
        self.interval = interval
        self._auto_batch: int | None = None
        self._abstain = True
        self._generators: dict[str, torch.Generator] = {}
        self._stream_generator: torch.Generator | None = None
        self._check_params()

    # ------------------------------------------------------------------------------------------------ parameters
    def _check_params(self) -> None:
        """
        Validate the smoothing parameters (called on construction and by `set_params`).
        """
        super()._check_params()
        if not hasattr(self, "seed"):  # during PyTorchClassifier.__init__
            return
        check_noise(self.noise)
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float, np.integer, np.floating)):
            raise TypeError(f"`scale` must be a positive float; got {type(self.scale).__name__}.")
        if not math.isfinite(self.scale) or self.scale <= 0:
            raise ValueError(f"`scale` must be finite and > 0; got {self.scale!r}.")
        self.sample_size = check_int(self.sample_size, "sample_size", 1)
        self.alpha = check_alpha(self.alpha)
        if self.bound not in BOUNDS[self.noise]:
            raise ValueError(f"`bound` must be one of {BOUNDS[self.noise]} for {self.noise} noise; got {self.bound!r}.")
        self.n0 = check_int(self.n0, "n0", 0)
        if self.eot_samples is not None:
            self.eot_samples = check_int(self.eot_samples, "eot_samples", 1)
        if self.seed is not None:
            self.seed = check_int(self.seed, "seed", 0)
        if self.precision not in PRECISIONS:
            raise ValueError(f"`precision` must be one of {PRECISIONS}; got {self.precision!r}.")
        if not isinstance(self.channels_last, bool):
            raise TypeError("`channels_last` must be a bool.")
        if self.nb_classes < 2:
            raise ValueError(f"`nb_classes` must be >= 2; got {self.nb_classes}.")
        check_interval(self.interval, self.nb_classes)
        if not self.all_framework_preprocessing:
            raise ValueError(
                "`preprocessing_defences` must all be PyTorch-framework defences (with `forward`): the noise is "
                "drawn and the preprocessing applied on the device."
            )
        self._generators = {}
        self._stream_generator = None
        self._auto_batch = None

    @property
    def norm(self) -> int:
        """
        The norm of the certified radius: 2 for Gaussian noise, 1 for Laplace noise.
        """
        return 2 if self.noise == "gaussian" else 1

    # ------------------------------------------------------------------------------------------------ helpers
    def _generator(self) -> torch.Generator:
        """
        The sequential generator on the estimator's device (seeded with `seed` on first use, else at random).

        :return: The generator.
        """
        key = str(self._device)
        if key not in self._generators:
            gen = torch.Generator(device=self._device)
            if self.seed is None:
                gen.seed()
            else:
                gen.manual_seed(self.seed)
            self._generators[key] = gen
        return self._generators[key]

    def _check_x(self, x: np.ndarray | torch.Tensor, name: str = "x") -> torch.Tensor:
        """
        Validate inputs and return them as a float32 tensor (on the host for numpy input).

        :param x: Inputs of shape `(N, *input_shape)`.
        :param name: The argument's name, for the error message.
        :return: The inputs as a tensor.
        """
        if isinstance(x, (list, tuple)):
            x = np.asarray(x)
        if isinstance(x, torch.Tensor):
            if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int32, torch.int64)):
                raise TypeError(f"`{name}` must hold real numbers; got dtype {x.dtype}.")
            x_t = x.detach().float()
        elif isinstance(x, np.ndarray):
            if x.dtype.kind not in "fiu":
                raise TypeError(f"`{name}` must be a numeric array; got dtype {x.dtype}.")
            x_t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        else:
            raise TypeError(f"`{name}` must be a numpy array or torch tensor; got {type(x).__name__}.")
        expected = tuple(self.input_shape)
        if x_t.ndim != len(expected) + 1 or tuple(x_t.shape[1:]) != expected:
            raise ValueError(
                f"`{name}` must have shape (N, {', '.join(map(str, expected))}) (input_shape={expected}, "
                f"channels_first={self.channels_first}); got {tuple(x_t.shape)}."
            )
        if x_t.shape[0] == 0:
            raise ValueError(f"`{name}` is empty: pass at least one input.")
        if not torch.isfinite(x_t).all():
            raise ValueError(f"`{name}` contains NaN or inf.")
        return x_t

    def _labels(self, y: np.ndarray | torch.Tensor, n: int | None = None, name: str = "y") -> torch.Tensor:
        """
        Validate labels (indices or one-hot) and return class indices on the device.

        :param y: Labels of shape `(N,)` or `(N, nb_classes)`.
        :param n: The number of inputs they must match (None: any).
        :param name: The argument's name, for the error message.
        :return: Class indices, int64, on the device.
        """
        indices = check_labels(y, self.nb_classes, name=name)
        if n is not None and len(indices) != n:
            raise ValueError(f"`{name}` has {len(indices)} labels for {n} inputs.")
        return torch.from_numpy(indices).to(self._device)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """
        ART preprocessing then the model, on a device tensor; checks the output width.

        :param x: Inputs on the device (noise already added).
        :return: The model's outputs, shape `(B, nb_classes)`.
        """
        x_pre, _ = self._apply_preprocessing(x, y=None, fit=False, no_grad=not torch.is_grad_enabled())
        out = self._model(x_pre)[-1]
        if out.ndim != 2 or out.shape[1] != self.nb_classes:
            raise ValueError(
                f"the model's output has shape {tuple(out.shape)}, but nb_classes={self.nb_classes}: its output "
                "width must equal `nb_classes`."
            )
        return out

    def _chunks(self, n_inputs: int) -> list[tuple[int, int]]:
        """
        Split input indices into chunks small enough to move to the device at once.

        :param n_inputs: Number of inputs.
        :return: `(start, end)` pairs.
        """
        return _spans(n_inputs, _MAX_CHUNK_FLOATS // max(1, int(np.prod(self.input_shape))))

    @_halve_batch_on_oom
    @torch.no_grad()
    def _sample_counts(
        self,
        x: torch.Tensor,
        n: int,
        batch_size: int,
        indices: np.ndarray | None = None,
        purpose: int = 1,
        progress: tqdm | None = None,
        soft: bool = False,
    ) -> np.ndarray:
        """
        Class counts of `n` noisy copies of every input: the Monte Carlo core of predict and certify.

        The copies of each example come in blocks of :func:`~art_stn.noise.stream_block` copies (a number that depends
        on `n` and the input size only); batches of `batch_size` copies are cut from the sequence of blocks, so copies
        of several examples share a model call and a block may span calls. With `seed` set each block's noise comes
        from its own stream keyed by `(seed, purpose, index, block)`, so counts do not depend on the batch size (nor
        on out-of-memory retries, which halve it). Noise is drawn on the device, counts accumulate there, and only
        they are copied back.

        :param x: Clean inputs, shape `(N, *input_shape)`, on any device.
        :param n: Noisy copies per input.
        :param batch_size: Noisy copies per model call.
        :param indices: Global example indices keying the noise streams (default: positions in `x`).
        :param purpose: 0 for top-class selection samples, 1 for estimation samples, 2 for `predict(logits=True)`
               (separate streams).
        :param progress: Optional tqdm bar, advanced by the number of inputs finished.
        :param soft: Accumulate the softmax probabilities instead of the argmax counts.
        :return: Counts of shape `(N, nb_classes)`, int64 (float64 sums of probabilities with `soft`).
        """
        self._model.eval()
        if self.channels_last:  # 4-D weights only: `Module.to` would also try (and fail on) 5-D ones
            for tensor in (*self._model.parameters(), *self._model.buffers()):
                if tensor.ndim == 4:
                    tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
        k = self.nb_classes
        device = torch.device(self._device)
        shape = tuple(x.shape[1:])
        block = stream_block(n, int(np.prod(shape)))
        sizes = [block] * (n // block) + ([n % block] if n % block else [])
        seeded = self.seed is not None
        if indices is None:
            indices = np.arange(x.shape[0])
        shared = None if seeded else self._generator()
        stream = self._stream_gen() if seeded and device.type != "cpu" else None
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
                fill_noise(batch, self.noise, float(self.scale), shared)
            example = torch.from_numpy(owner[:count].copy()).to(device, non_blocking=True)
            batch += x_dev.index_select(0, example)
            if self.channels_last and batch.ndim == 4:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                logits = self._logits(batch)
            finite &= torch.isfinite(logits).all()
            if soft:
                acc.index_add_(0, example, torch.softmax(logits.float(), dim=1).to(dtype))
            else:
                acc.view(-1).scatter_add_(0, example * k + logits.argmax(dim=1), torch.ones_like(example))

        scale, seed = float(self.scale), self.seed
        for start, end in self._chunks(x.shape[0]):
            x_dev = x[start:end].to(device, non_blocking=True)
            acc = torch.zeros((end - start, k), dtype=dtype, device=device)
            pos, complete = 0, 0  # copies waiting in `buf`; examples finished since the last progress update
            for e in range(end - start):
                index = int(indices[start + e])
                for b, size in enumerate(sizes):
                    noise = None
                    if seeded and size <= len(buf) - pos:  # the whole block fits: draw it in place
                        fill_stream_noise(buf[pos : pos + size], self.noise, scale, seed, purpose, index, b, stream)
                    elif seeded:  # the block spans model calls: draw it whole, then cut it
                        noise = torch.empty((size, *shape), device=device)
                        fill_stream_noise(noise, self.noise, scale, seed, purpose, index, b, stream)
                    done = 0
                    while done < size:
                        take = min(size - done, len(buf) - pos)
                        if noise is not None:
                            buf[pos : pos + take] = noise[done : done + take]
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

    def _batch_size(self, batch_size: int | None) -> int:
        """
        The batch size to sample with: the given one, or an automatic one.

        Automatic: :data:`CPU_BATCH_SIZE` on the CPU; on a GPU the largest power of two (64 to 16384) whose noisy
        batch needs at most half of the free device memory, measured once by :meth:`_probe_batch_size`. With `seed`
        set the counts do not depend on the batch size, so processes that pick different sizes (torchrun ranks with
        different free memory) still agree.

        :param batch_size: The requested batch size, or None.
        :return: The batch size.
        """
        if batch_size is not None:
            return check_int(batch_size, "batch_size", 1)
        if self._auto_batch is None:
            device = torch.device(self._device)
            if device.type != "cuda":
                self._auto_batch = CPU_BATCH_SIZE
            else:  # pragma: no cover - needs a GPU
                torch.cuda.synchronize(device)
                free, _ = torch.cuda.mem_get_info(device)
                torch.cuda.reset_peak_memory_stats(device)
                peak = functools.partial(torch.cuda.max_memory_allocated, device)
                self._auto_batch = self._probe_batch_size(free, peak)
            logger.info("batch_size=None: using %d noisy copies per model call", self._auto_batch)
        return self._auto_batch

    def _probe_batch_size(self, free: int, peak_memory: Callable[[], int]) -> int:
        """
        Measure the device memory of one noisy copy with a probe batch of 64 zeros and size the batch from it.

        The probe runs in eval mode (batch-norm statistics untouched) under the sampling precision and memory format;
        every module's mode is restored afterwards.

        :param free: Free device memory in bytes.
        :param peak_memory: Returns the peak memory allocated so far, in bytes (reset before the call).
        :return: The largest power of two (64 to 16384) whose batch needs at most half of `free`.
        """
        device = torch.device(self._device)
        modes = [(module, module.training) for module in self._model.modules()]
        self._model.eval()
        try:
            base = peak_memory()
            probe = torch.zeros((64, *self.input_shape), device=device)
            if self.channels_last and probe.ndim == 4:
                probe = probe.contiguous(memory_format=torch.channels_last)
            with (
                torch.no_grad(),
                torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"),
            ):
                self._logits(probe)
            per_copy = max(1, (peak_memory() - base) // 64)
        finally:
            for module, mode in modes:
                module.training = mode
        fit = int(0.5 * free // per_copy)
        return int(2 ** np.clip(np.floor(np.log2(max(fit, 64))), 6, 14))

    def _stream_gen(self) -> torch.Generator:
        """
        The generator reseeded per block of noise when `seed` is set.

        :return: The generator, on the estimator's device.
        """
        if self._stream_generator is None or self._stream_generator.device != torch.device(self._device):
            self._stream_generator = torch.Generator(device=self._device)
        return self._stream_generator

    # ------------------------------------------------------------------------------------------------ prediction
    def predict(  # type: ignore[override]
        self,
        x: np.ndarray | torch.Tensor,
        batch_size: int | None = None,
        verbose: bool = False,
        is_abstain: bool | None = None,
        logits: bool = False,
        **kwargs: Any,
    ) -> np.ndarray:
        """
        The smoothed classifier (Algorithm 1 of Li et al.): class frequencies of `sample_size` noisy copies.

        With `logits=True` (what ART's Carlini-Wagner attacks ask for) it returns instead the log of the
        noise-averaged softmax, `log mean_i softmax(f(x + r_i))` over `eot_samples` draws, without abstention: the
        function whose gradient :meth:`class_gradient` computes, so an attack's scores and gradients describe one
        smooth function (frequencies are a step function of `x`).

        :param x: Inputs of shape `(N, *input_shape)`.
        :param batch_size: Noisy copies per model call (None: automatic, see `_batch_size`).
        :param verbose: Show a progress bar.
        :param is_abstain: Return a zero row where the two-sided binomial test of the top two counts does not reach
               `alpha` (Cohen et al.'s PREDICT); `False` always returns the frequencies. None (the default): True,
               except inside :meth:`without_abstention`.
        :param logits: Return the log of the noise-averaged softmax (see above) instead of the frequencies.
        :param kwargs: ART's other keyword arguments (e.g. `training_mode`), accepted and ignored.
        :return: Array of shape `(N, nb_classes)`, float32: rows summing to 1 (or 0 where abstained), or log
                 probabilities with `logits=True`.
        """
        if is_abstain is None:
            is_abstain = self._abstain
        if not isinstance(is_abstain, bool):
            raise TypeError("`is_abstain` must be a bool.")
        x_t = self._check_x(x)
        batch_size = self._batch_size(batch_size)
        if logits:
            draws = self._eot()
            with tqdm(total=x_t.shape[0], desc="smoothed scores", unit="input", disable=not verbose) as bar:
                sums = self._sample_counts(x_t, draws, batch_size, None, 2, progress=bar, soft=True)
            return np.log(np.maximum(sums / draws, np.finfo(np.float32).tiny)).astype(np.float32)
        with tqdm(total=x_t.shape[0], desc="smoothed predict", unit="input", disable=not verbose) as bar:
            counts = self._sample_counts(x_t, self.sample_size, batch_size, progress=bar)
        freq = counts / float(self.sample_size)
        if is_abstain:
            sorted_counts = np.sort(counts, axis=1)
            abstain = abstain_pvalue(sorted_counts[:, -1], sorted_counts[:, -2]) > self.alpha
            freq[abstain] = 0.0
            if abstain.any():
                logger.info("%d of %d prediction(s) abstained.", int(abstain.sum()), len(abstain))
        return freq.astype(np.float32)

    @contextlib.contextmanager
    def without_abstention(self) -> Iterator[STNClassifier]:
        """
        A context in which `predict` returns the smoothed frequencies without abstention unless asked otherwise.

        ART's decision-based attacks (BoundaryAttack, HopSkipJump) and the success checks of the others take the
        argmax of `predict`: an abstaining zero row would look like class 0 to them, adversarial for every other
        class and never for class 0. Run attacks inside this context and count abstentions as errors afterwards
        with `predict(..., is_abstain=True)`, as :func:`art_stn.evaluate.robust_accuracy_to_file` does.

        :return: A context manager yielding the classifier.
        """
        previous, self._abstain = self._abstain, False
        try:
            yield self
        finally:
            self._abstain = previous

    def certify_report(
        self,
        x: np.ndarray | torch.Tensor,
        n: int,
        batch_size: int | None = None,
        n0: int | None = None,
        alpha: float | None = None,
        indices: np.ndarray | None = None,
        verbose: bool = False,
        interval: str | None = None,
        radii: Sequence[float] | None = None,
        sequential: bool = False,
        stages: Sequence[int] | None = None,
        futility: float = FUTILITY_LEVEL,
    ) -> CertifyReport:
        """
        Certify inputs and report counts, confidence bounds and the radius under every bound for the noise.

        With `n0 > 0` the top class is the most frequent in `n0` separate noisy copies (Cohen et al.); otherwise the
        most frequent of the `n` estimation copies (the paper), which voids the `1 - alpha` coverage of the bounds
        and warns (see :data:`N0_ZERO_WARNING`). `p1_lower` and `p2_upper` come from `interval` (one-sided
        Clopper-Pearson bounds at `alpha / 2` each by default); the `renyi`, `cohen-top2`, `pixeldp` and `laplace`
        bounds certify where `p1_lower > p2_upper`, the `cohen` bound (Cohen et al.'s CERTIFY) where its own
        `pa_lower >= 0.5` (see :func:`certify_counts`).

        With `sequential=True` (Gaussian or Laplace noise alike), `n` is the most estimation samples an input may
        get: samples are drawn in stages (cumulative sizes `stages`, by default 100, 200, 400, ... then `n`),
        the failure probability is split over the stages (:func:`art_stn.confidence.stage_schedule`: a union bound,
        so every certificate of the run holds with probability >= 1 - alpha together with all the others of the
        same input), and an input stops as soon as it is certified at the largest requested radius it can still
        reach (the largest of `radii`, or less when even optimistic bounds rule the larger ones out). Its radius
        (per bound) is the largest over the stages it ran; `samples` says how many it drew. Sequential
        certification needs `n0 >= 1`: the top class is fixed before any stage.

        :param x: Inputs of shape `(N, *input_shape)`.
        :param n: Number of noisy copies per input for the estimation, >= 1 (the most per input when sequential).
        :param batch_size: Noisy copies per model call.
        :param n0: Selection copies per input (default: the classifier's `n0`).
        :param alpha: Failure probability (default: the classifier's `alpha`).
        :param indices: Global example indices that key the noise streams when `seed` is set (default: positions).
        :param verbose: Show a progress bar.
        :param interval: The interval of `p1_lower` / `p2_upper` (default: the classifier's `interval`).
        :param radii: Radii asked about: the report's `certified_radius` is the largest of them each input is
               certified at (-1 for none). Required with `sequential`.
        :param sequential: Sample in stages and stop each input once it is decided at the requested radii.
        :param stages: Cumulative stage sizes for `sequential` (default 100, 200, 400, ... below `n`, then `n`).
        :param futility: One-sided level of the optimistic bounds with which `sequential` judges whether an input can
               still reach a larger requested radius (see :meth:`_reachable_levels`): larger values stop more inputs
               early, saving samples at a higher chance of missing a certificate that more samples would have given.
               It never affects soundness.
        :return: The :class:`CertifyReport`.
        """
        n = check_int(n, "n", 1)
        n0 = self.n0 if n0 is None else check_int(n0, "n0", 0)
        alpha = self.alpha if alpha is None else check_alpha(alpha)
        interval = self.interval if interval is None else check_interval(interval, self.nb_classes)
        requested = None if radii is None else _check_radii(radii)
        if not isinstance(sequential, bool):
            raise TypeError("`sequential` must be a bool.")
        if sequential and requested is None:
            raise ValueError("`sequential=True` needs `radii`: the radii that decide when an input may stop.")
        if sequential and n0 < 1:
            raise ValueError("`sequential=True` needs `n0 >= 1`: the top class is selected before the first stage.")
        if stages is not None and not sequential:
            raise ValueError("`stages` applies to sequential certification only; pass `sequential=True`.")
        futility = check_alpha(futility, "futility")
        x_t = self._check_x(x)
        batch_size = self._batch_size(batch_size)
        if n0 == 0:
            warnings.warn(N0_ZERO_WARNING, UserWarning, stacklevel=2)
        if indices is not None:
            indices = np.asarray(indices, dtype=np.int64)
            if indices.shape != (x_t.shape[0],):
                raise ValueError(f"`indices` must have shape ({x_t.shape[0]},); got {indices.shape}.")
        if sequential:
            sizes, alphas = stage_schedule(n, alpha, stages)
            return self._certify_sequential(
                x_t, n0, batch_size, indices, interval, requested, sizes, alphas, futility, verbose
            )
        passes = 2 if n0 > 0 else 1
        with tqdm(total=passes * x_t.shape[0], desc="certify", unit="input", disable=not verbose) as bar:
            top = None
            if n0 > 0:
                top = np.argmax(self._sample_counts(x_t, n0, batch_size, indices, 0, progress=bar), axis=1)
            counts = self._sample_counts(x_t, n, batch_size, indices, 1, progress=bar)
        report = certify_counts(counts, alpha, float(self.scale), self.noise, self.bound, top, interval, n0)
        if requested is None:
            return report
        levels = _levels(report.radius, report.certified, requested)
        return dataclasses.replace(
            report, requested_radii=requested, certified_radius=_largest_certified(levels, requested)
        )

    def _certify_sequential(
        self,
        x: torch.Tensor,
        n0: int,
        batch_size: int,
        indices: np.ndarray | None,
        interval: str,
        radii: tuple[float, ...],
        sizes: list[int],
        alphas: list[float],
        futility: float,
        verbose: bool,
    ) -> CertifyReport:
        """
        Sequential certification (see :meth:`certify_report`): stages of fresh samples, counts accumulated, each
        stage's certificates at its own failure probability, inputs stopped once decided.

        :param x: Validated inputs.
        :param n0: Selection samples per input, >= 1.
        :param batch_size: Noisy copies per model call.
        :param indices: Global example indices keying the noise streams (None: positions).
        :param interval: The interval of `p1_lower` / `p2_upper`.
        :param radii: The requested radii, ascending.
        :param sizes: Cumulative estimation sample sizes of the stages.
        :param alphas: Failure probability of each stage (summing to alpha).
        :param futility: Level of the optimistic bounds of the futility rule.
        :param verbose: Show a progress bar.
        :return: The report; `counts`, `p1_lower`, `p2_upper` and `pa_lower` are those of each input's last stage.
        """
        total = x.shape[0]
        keys = np.arange(total) if indices is None else indices
        scale = float(self.scale)
        counts = np.zeros((total, self.nb_classes), dtype=np.int64)
        drawn = np.zeros(total, dtype=np.int64)
        active = np.ones(total, dtype=bool)
        best: dict[str, np.ndarray] = {name: np.zeros(total) for name in BOUNDS[self.noise]}
        certified = {name: np.zeros(total, dtype=bool) for name in BOUNDS[self.noise]}
        p1_lower, p2_upper, pa_lower = np.zeros(total), np.zeros(total), np.zeros(total)
        with tqdm(total=total, desc="certify (sequential)", unit="input", disable=not verbose) as bar:
            top = np.argmax(self._sample_counts(x, n0, batch_size, keys, 0), axis=1)
            previous = 0
            for stage, (size, stage_alpha) in enumerate(zip(sizes, alphas, strict=True)):
                rows = np.flatnonzero(active)
                purpose = 1 if stage == 0 else _STAGE_PURPOSE + stage
                sub = x[torch.from_numpy(rows)]
                counts[rows] += self._sample_counts(sub, size - previous, batch_size, keys[rows], purpose)
                drawn[rows] = size
                previous = size
                step = certify_counts(counts[rows], stage_alpha, scale, self.noise, self.bound, top[rows], interval)
                for name in best:
                    best[name][rows] = np.maximum(best[name][rows], step.radii[name])
                    certified[name][rows] |= step.certified_by[name]
                p1_lower[rows], p2_upper[rows], pa_lower[rows] = step.p1_lower, step.p2_upper, step.pa_lower
                if stage == len(sizes) - 1:
                    break
                level = _levels(best[self.bound][rows], certified[self.bound][rows], radii)
                reach = self._reachable_levels(
                    counts[rows], top[rows], sizes[-1], alphas[-1], interval, radii, futility
                )
                done = level >= reach
                active[rows[done]] = False
                bar.update(int(done.sum()))
                if not active.any():
                    break
            bar.update(int(active.sum()))
        levels = _levels(best[self.bound], certified[self.bound], radii)
        return CertifyReport(
            prediction=np.where(certified[self.bound], top, -1),
            radius=best[self.bound],
            top=top,
            counts=counts,
            n=int(sizes[-1]),
            n0=n0,
            alpha=float(sum(alphas)),
            p1_lower=p1_lower,
            p2_upper=p2_upper,
            radii=best,
            bound=self.bound,
            norm=self.norm,
            pa_lower=pa_lower,
            interval=interval,
            certified_by=certified,
            samples=drawn + n0,
            requested_radii=radii,
            certified_radius=_largest_certified(levels, radii),
            stages=tuple(sizes),
        )

    def _reachable_levels(
        self,
        counts: np.ndarray,
        top: np.ndarray,
        n_max: int,
        alpha_last: float,
        interval: str,
        radii: tuple[float, ...],
        level: float,
    ) -> np.ndarray:
        """
        How many requested radii each input could still be certified at by the last stage, judged optimistically.

        From the counts so far, `p1` is taken at its upper and `p2` (the runner-up's) at its lower one-sided
        Clopper-Pearson bound at `level`. For Clopper-Pearson and Goodman intervals these are
        turned into the counts of `n_max` samples (the rest of the samples spread over the other classes, no class
        above the runner-up, any remainder given to the top class) and certified by the last stage's rule; for
        Sison-Glaz (slow to evaluate) the radius of the optimistic probabilities themselves is used, without any
        interval width. Misjudging only stops an input early; it never issues a certificate.

        :param counts: Counts of the active inputs so far.
        :param top: Their selected top classes.
        :param n_max: Samples per input at the last stage.
        :param alpha_last: Failure probability of the last stage.
        :param interval: The interval of `p1_lower` / `p2_upper`.
        :param radii: The requested radii, ascending.
        :param level: One-sided level of the optimistic bounds.
        :return: Per input the number of requested radii that might be reached.
        """
        rows = np.arange(len(counts))
        m = counts.sum(axis=1)
        others = counts.copy()
        others[rows, top] = -1
        runner = np.argmax(others, axis=1)
        p1 = clopper_pearson_upper(counts[rows, top], m, level)
        p2 = np.minimum(clopper_pearson_lower(others[rows, runner], m, level), 1.0 - p1)
        if interval == "sison-glaz":
            if self.bound == "cohen":
                radius = np.asarray(cohen_certify_l2_radius(p1, float(self.scale)))
                return _levels(radius, p1 >= 0.5, radii)
            ok = p1 > p2
            radius = np.zeros(len(p1))
            radius[ok] = _RADIUS_FUNCTIONS[self.bound](p1[ok], p2[ok], float(self.scale))
            return _levels(radius, ok, radii)
        c1 = np.minimum(np.ceil(p1 * n_max), n_max).astype(np.int64)
        c2 = np.minimum(np.floor(p2 * n_max).astype(np.int64), n_max - c1)
        rest = n_max - c1 - c2
        k = counts.shape[1]
        fill = np.minimum(c2, rest // (k - 2)) if k > 2 else np.zeros_like(c2)
        projected = np.repeat(fill[:, None], k, axis=1)
        projected[rows, runner] = c2
        projected[rows, top] = c1 + rest - fill * (k - 2)
        step = certify_counts(projected, alpha_last, float(self.scale), self.noise, self.bound, top, interval)
        return _levels(step.radius, step.certified, radii)

    def certify(  # type: ignore[override]
        self, x: np.ndarray | torch.Tensor, n: int, batch_size: int | None = None, **kwargs: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """
        Certified prediction and radius, as ART's `RandomizedSmoothingMixin.certify`: prediction -1 and radius 0
        where the classifier abstains. The radius is under the configured `bound` (L2 for Gaussian noise, L1 for
        Laplace noise).

        :param x: Inputs of shape `(N, *input_shape)`.
        :param n: Number of noisy copies per input for the estimation.
        :param batch_size: Noisy copies per model call.
        :param kwargs: Passed to :meth:`certify_report` (`n0`, `alpha`, `indices`, `verbose`, `interval`, `radii`,
               `sequential`, `stages`, `futility`).
        :return: `(prediction, radius)`: int64 classes (-1 = abstain) and float64 radii.
        """
        report = self.certify_report(x, n, batch_size=batch_size, **kwargs)
        return report.prediction, report.radius

    # ------------------------------------------------------------------------------------------------ gradients
    def _eot(self) -> int:
        """
        :return: The number of noise draws averaged by the gradients.
        """
        return self.eot_samples if self.eot_samples is not None else self.sample_size

    def _noisy_copies(self, x_grad: torch.Tensor, draws: int) -> torch.Tensor:
        """
        `draws` noisy copies of each input, differentiable with respect to `x_grad`.

        :param x_grad: Inputs on the device, shape `(m, *input_shape)`.
        :param draws: Copies per input.
        :return: Tensor of shape `(m * draws, *input_shape)`, copies of one input contiguous.
        """
        rep = x_grad.repeat_interleave(draws, dim=0)
        noise = torch.empty_like(rep)
        fill_noise(noise, self.noise, float(self.scale), self._generator())
        return rep + noise

    def _gradient_chunks(self, n_inputs: int, draws: int, batch_size: int) -> list[tuple[int, int]]:
        """
        :param n_inputs: Number of inputs.
        :param draws: Noisy copies per input.
        :param batch_size: Noisy copies per backward pass.
        :return: `(start, end)` pairs of inputs per backward pass.
        """
        return _spans(n_inputs, batch_size // draws)

    def loss_gradient(  # type: ignore[override]
        self,
        x: np.ndarray | torch.Tensor,
        y: np.ndarray | torch.Tensor,
        training_mode: bool = False,
        batch_size: int = 1024,
        **kwargs: Any,
    ) -> np.ndarray | torch.Tensor:
        """
        Noise-averaged gradient of the loss (expectation over transformation): `mean_i grad_x L(f(x + r_i), y)`
        over `eot_samples` draws, in one batched backward pass per chunk of inputs.

        The scaling follows ART's `PyTorchClassifier.loss_gradient` for the same loss (with a `mean` reduction the
        gradient of each input carries the factor `1/N`), averaged over the noise.

        :param x: Inputs, numpy array or torch tensor (ART's PyTorch attacks pass tensors).
        :param y: Labels, indices or one-hot.
        :param training_mode: Run the model in training mode.
        :param batch_size: Noisy copies per backward pass.
        :param kwargs: Ignored extra keyword arguments.
        :return: Gradients of the shape of `x`, of the same kind (numpy or tensor on the same device).
        """
        x_t = self._check_x(x)
        labels = self._labels(y, x_t.shape[0])
        draws = self._eot()
        reduction = getattr(self._loss, "reduction", "mean")
        self._model.train(mode=training_mode)
        grads = torch.empty_like(x_t)
        total = x_t.shape[0]
        for start, end in self._gradient_chunks(total, draws, batch_size):
            x_grad = x_t[start:end].to(self._device).requires_grad_(True)
            logits = self._logits(self._noisy_copies(x_grad, draws))
            loss = self._loss(logits, labels[start:end].repeat_interleave(draws))
            if loss.ndim:
                loss = loss.sum()
            self._model.zero_grad()
            (g,) = torch.autograd.grad(loss, x_grad)
            scale = (end - start) / total if reduction == "mean" else 1.0 / draws
            grads[start:end] = (g * scale).detach().to(grads.device)
        if not torch.isfinite(grads).all():
            raise ValueError("the loss gradient is NaN or inf: the model returned non-finite outputs.")
        if isinstance(x, torch.Tensor):
            return grads.to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)
        return grads.numpy()

    def class_gradient(  # type: ignore[override]
        self,
        x: np.ndarray | torch.Tensor,
        label: int | list[int] | np.ndarray | None = None,
        training_mode: bool = False,
        batch_size: int = 1024,
        **kwargs: Any,
    ) -> np.ndarray | torch.Tensor:
        """
        Gradient of the noise-averaged softmax `s_c(x) = mean_i softmax(f(x + r_i))_c` with respect to `x`.

        :param x: Inputs, numpy array or torch tensor.
        :param label: None for all classes, an int for one class of every input, or one class per input.
        :param training_mode: Run the model in training mode.
        :param batch_size: Noisy copies per backward pass.
        :param kwargs: Ignored extra keyword arguments.
        :return: Shape `(N, nb_classes, *input_shape)` for `label=None`, else `(N, 1, *input_shape)`; numpy or
                 tensor as `x`.
        """
        x_t = self._check_x(x)
        n_inputs = x_t.shape[0]
        if label is None:
            classes = None
        elif isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            if not 0 <= int(label) < self.nb_classes:
                raise ValueError(f"`label` must lie in [0, {self.nb_classes}); got {label}.")
            classes = torch.full((n_inputs,), int(label), dtype=torch.int64, device=self._device)
        else:
            classes = self._labels(np.asarray(label), n_inputs, name="label")
        draws = self._eot()
        self._model.train(mode=training_mode)
        width = self.nb_classes if classes is None else 1
        grads = torch.empty((n_inputs, width, *x_t.shape[1:]))
        for start, end in self._gradient_chunks(n_inputs, draws, batch_size):
            x_grad = x_t[start:end].to(self._device).requires_grad_(True)
            probs = torch.softmax(self._logits(self._noisy_copies(x_grad, draws)), dim=1)
            smoothed = probs.view(end - start, draws, self.nb_classes).mean(dim=1)
            if classes is None:
                for c in range(self.nb_classes):
                    (g,) = torch.autograd.grad(smoothed[:, c].sum(), x_grad, retain_graph=c < self.nb_classes - 1)
                    grads[start:end, c] = g.detach().cpu()
            else:
                picked = smoothed.gather(1, classes[start:end, None]).sum()
                (g,) = torch.autograd.grad(picked, x_grad)
                grads[start:end, 0] = g.detach().cpu()
        if isinstance(x, torch.Tensor):
            return grads.to(x.device)
        return grads.numpy()

    def compute_loss(  # type: ignore[override]
        self,
        x: np.ndarray | torch.Tensor,
        y: np.ndarray | torch.Tensor,
        reduction: str = "none",
        batch_size: int = 1024,
        **kwargs: Any,
    ) -> np.ndarray | torch.Tensor:
        """
        The noise-averaged loss `mean_i L(f(x + r_i), y)` over `eot_samples` draws per input: the function whose
        gradient :meth:`loss_gradient` returns, so that attacks comparing loss values between steps (ART's AutoPGD)
        and their gradients see one function. (ART's `PyTorchClassifier.compute_loss` would be the base model's loss
        without noise.)

        :param x: Inputs, numpy array or torch tensor.
        :param y: Labels, indices or one-hot.
        :param reduction: `"none"` (one loss per input), `"mean"` or `"sum"` over the inputs.
        :param batch_size: Noisy copies per forward pass.
        :param kwargs: Ignored extra keyword arguments.
        :return: The loss, numpy or a (detached) tensor on `x`'s device as `x`.
        """
        if reduction not in ("none", "mean", "sum"):
            raise ValueError(f"`reduction` must be 'none', 'mean' or 'sum'; got {reduction!r}.")
        x_t = self._check_x(x)
        labels = self._labels(y, x_t.shape[0])
        draws = self._eot()
        self._model.eval()
        losses = torch.empty(x_t.shape[0], dtype=torch.float32)
        previous, self._loss.reduction = self._loss.reduction, "none"
        try:
            with torch.no_grad():
                for start, end in self._gradient_chunks(x_t.shape[0], draws, batch_size):
                    x_dev = x_t[start:end].to(self._device)
                    per_copy = self._loss(
                        self._logits(self._noisy_copies(x_dev, draws)), labels[start:end].repeat_interleave(draws)
                    )
                    losses[start:end] = per_copy.float().view(end - start, draws).mean(dim=1).cpu()
        finally:
            self._loss.reduction = previous
        result = losses if reduction == "none" else (losses.mean() if reduction == "mean" else losses.sum())
        if isinstance(x, torch.Tensor):
            return result.to(x.device)
        return result.numpy()

    def get_activations(  # type: ignore[override]
        self,
        x: np.ndarray | torch.Tensor,
        layer: int | str | None = None,
        batch_size: int = 128,
        framework: bool = False,
    ) -> np.ndarray | torch.Tensor:
        """
        The output of a layer of the base model for `x` itself, without noise, as in ART's `PyTorchClassifier` (and
        ART's `PyTorchRandomizedSmoothing`). It is left unsmoothed on purpose: a layer of the smoothed classifier has
        no activation of its own (the noise-averaged activation is not computed by any model), and the activations
        of noisy copies are those of `x + r` for noise `r` drawn by the caller.

        :param x: Inputs.
        :param layer: Layer index or name (see `layer_names`).
        :param batch_size: Batch size.
        :param framework: Return the torch tensor instead of a numpy array.
        :return: The activations, first dimension the number of inputs.
        """
        return super().get_activations(x, layer=layer, batch_size=batch_size, framework=framework)

    # ------------------------------------------------------------------------------------------------ training
    def fit(  # type: ignore[override]
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int = 128,
        nb_epochs: int = 10,
        gamma: float = 0.0,
        **kwargs: Any,
    ) -> None:
        """
        Train the base classifier under the classifier's noise. `gamma=0` (the default, as ART's
        `PyTorchRandomizedSmoothing.fit`) trains on noisy inputs (Gaussian augmentation); `gamma > 0` is stability
        training. Both run through :class:`art_stn.STNTrainer`.

        :param x: Training inputs.
        :param y: Labels, indices or one-hot.
        :param batch_size: Batch size.
        :param nb_epochs: Number of epochs.
        :param gamma: Weight of the stability term.
        :param kwargs: Passed to :meth:`art_stn.STNTrainer.fit` (`validation_data`, `scheduler`, `verbose`, ...).
        """
        from art_stn.trainer import STNTrainer

        STNTrainer(self, gamma=gamma).fit(x, y, nb_epochs=nb_epochs, batch_size=batch_size, **kwargs)

    def _fit_classifier(self, x: np.ndarray, y: np.ndarray, batch_size: int, nb_epochs: int, **kwargs: Any) -> None:
        """
        ART's hook for `fit`; see :meth:`fit`.

        :param x: Training inputs.
        :param y: Labels.
        :param batch_size: Batch size.
        :param nb_epochs: Number of epochs.
        :param kwargs: Passed to :meth:`fit`.
        """
        self.fit(x, y, batch_size=batch_size, nb_epochs=nb_epochs, **kwargs)

    @classmethod
    def load(
        cls,
        path: str | Path,
        model: torch.nn.Module | None = None,
        loss: torch.nn.modules.loss._Loss | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        device_type: str = "gpu",
        **kwargs: Any,
    ) -> STNClassifier:
        """
        Restore a classifier from a checkpoint written by :class:`art_stn.STNTrainer` (or :meth:`save_checkpoint`),
        loaded with `torch.load(..., weights_only=True)`.

        :param path: The checkpoint file.
        :param model: A model of the same architecture; its weights are replaced by the checkpoint's. None builds the
               model named in the checkpoint's metadata (checkpoints written by `art-stn train`) from
               :data:`art_stn.models.MODELS`.
        :param loss: The loss (default `torch.nn.CrossEntropyLoss()`).
        :param optimizer: Optional optimizer over `model`'s parameters (its state is not restored here; the trainer's
               `resume_from` does that).
        :param device_type: `"gpu"` or `"cpu"`.
        :param kwargs: Overrides of the stored smoothing settings (e.g. `sample_size=1000`) or other constructor
               arguments (`preprocessing`, ...).
        :return: The classifier.
        :raises FileNotFoundError: if `path` does not exist.
        :raises ValueError: if the file is not an art-stn checkpoint or does not fit `model`.
        """
        from art_stn.trainer import load_checkpoint

        ckpt = load_checkpoint(path)
        if model is None:
            from art_stn.models import build_model

            name = (ckpt.get("metadata") or {}).get("model")
            if name is None:
                raise ValueError(f"checkpoint {path} names no model: pass `model=` (an instance of its architecture).")
            model = build_model(name, num_classes=int(ckpt["smoothing"]["nb_classes"]))
        try:
            model.load_state_dict(ckpt["model_state"])
        except RuntimeError as err:
            raise ValueError(f"checkpoint {path} does not fit the given model: {err}") from err
        settings = dict(ckpt["smoothing"])
        settings["input_shape"] = tuple(settings["input_shape"])
        clip = settings.pop("clip_values", None)
        settings["clip_values"] = None if clip is None else tuple(clip)
        settings.update(kwargs)
        return cls(
            model=model,
            loss=torch.nn.CrossEntropyLoss() if loss is None else loss,
            optimizer=optimizer,
            device_type=device_type,
            **settings,
        )

    @classmethod
    def from_estimator(
        cls,
        estimator: PyTorchClassifier,
        noise: str | None = None,
        scale: float | None = None,
        loss: torch.nn.modules.loss._Loss | None = None,
        **smoothing: Any,
    ) -> STNClassifier:
        """
        A smoothed classifier around the model of an existing ART `PyTorchClassifier`: Renyi / Cohen / Laplace
        certificates and noise-averaged attacks for a model that ART trained, e.g. with
        `PyTorchRandomizedSmoothing.fit`, `PyTorchMACER`, `PyTorchSmoothAdv` or `PyTorchSmoothMix`.

        The new classifier shares the estimator's model (the same `torch.nn.Module`, not a copy), device, loss,
        optimizer, input shape, classes, clip values, preprocessing and pre- and postprocessing defences. Smoothing
        settings the estimator has (`scale`, `sample_size`, `alpha` of ART's smoothing estimators; every setting of
        an `STNClassifier`) are the defaults; keyword arguments override them.

        :param estimator: An ART `PyTorchClassifier` (or a subclass, including ART's randomized-smoothing
               estimators and `STNClassifier`).
        :param noise: `"gaussian"` or `"laplace"` (default: the estimator's noise, else `"gaussian"`).
        :param scale: Noise scale (default: the estimator's `scale`; required when it has none).
        :param loss: The loss of `loss_gradient` (default: the estimator's loss).
        :param smoothing: Other constructor arguments: `sample_size`, `alpha`, `bound`, `n0`, `eot_samples`, `seed`,
               `precision`, `channels_last`.
        :return: The smoothed classifier.
        :raises TypeError: if `estimator` is not an ART `PyTorchClassifier` or `smoothing` names an unknown argument.
        :raises ValueError: if no `scale` is given and the estimator has none.
        """
        if not isinstance(estimator, PyTorchClassifier):
            raise TypeError(f"`estimator` must be an ART PyTorchClassifier; got {type(estimator).__name__}.")
        names = ("sample_size", "alpha", "bound", "n0", "eot_samples", "seed", "precision", "channels_last")
        unknown = sorted(set(smoothing) - set(names))
        if unknown:
            raise TypeError(f"from_estimator() got unknown smoothing argument(s) {unknown}; choose from {names}.")
        own_noise = getattr(estimator, "noise", None)
        settings = {k: getattr(estimator, k) for k in names if hasattr(estimator, k)}
        if noise is not None and noise != own_noise:
            settings.pop("bound", None)  # the estimator's bound belongs to its own noise
        settings.update(smoothing)
        if scale is None:
            scale = getattr(estimator, "scale", None)
            if scale is None:
                raise ValueError("`scale` is required: the estimator has no noise scale of its own.")
        clf = cls(
            model=estimator.model,
            loss=estimator.loss if loss is None else loss,
            input_shape=tuple(estimator.input_shape),
            nb_classes=estimator.nb_classes,
            optimizer=estimator.optimizer,
            channels_first=estimator.channels_first,
            clip_values=estimator.clip_values,
            preprocessing_defences=estimator.preprocessing_defences,
            postprocessing_defences=estimator.postprocessing_defences,
            preprocessing=estimator.preprocessing,
            device_type=estimator.device_type,
            noise=noise or own_noise or "gaussian",
            scale=float(scale),
            **settings,
        )
        clf._device = estimator.device  # the same device, e.g. "cuda:1" (the constructor picks the current one)
        clf._model.to(clf._device)
        return clf

    def smoothing_settings(self) -> dict[str, Any]:
        """
        The smoothing settings, as stored in checkpoints.

        :return: A dict of plain values (noise, scale, sample_size, alpha, bound, n0, eot_samples, seed,
                 precision, channels_last, interval, input_shape, nb_classes, clip_values).
        """
        return {
            "noise": self.noise,
            "scale": float(self.scale),
            "sample_size": int(self.sample_size),
            "alpha": float(self.alpha),
            "bound": self.bound,
            "n0": int(self.n0),
            "eot_samples": self.eot_samples,
            "seed": self.seed,
            "precision": self.precision,
            "channels_last": self.channels_last,
            "interval": self.interval,
            "input_shape": list(self.input_shape),
            "nb_classes": int(self.nb_classes),
            "clip_values": None if self.clip_values is None else [float(v) for v in np.ravel(self.clip_values)[:2]],
        }
