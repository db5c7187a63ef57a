"""
The smoothed prediction and certification of :class:`art_stn.STNClassifier` (a mixin of it): sampling on the
estimator's device through the framework-free core (:func:`art_stn.smoothing.sample_counts`), `predict`
(Algorithm 1 of Li et al.), `certify` / `certify_report` (fixed n or sequential), with the certificates of
:mod:`art_stn.certification`.

Layer 4 (the ART face). The mixin reads the estimator's settings (`noise`, `scale`, `sample_size`, `alpha`,
`bound`, `n0`, `seed`, `precision`, `channels_last`, `compile_forward`, `interval`, `uses_channels_last()`) and ART's
`_model`, `_device`, `_apply_preprocessing`, `input_shape`, `nb_classes`.

| Paper link: https://arxiv.org/abs/1809.03113
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from art_stn.certification import (
    FUTILITY_LEVEL,
    N0_ZERO_WARNING,
    CertifyReport,
    certify_counts,
    certify_sequential,
    largest_certified,
    levels,
)
from art_stn.confidence import abstain_pvalue, check_alpha, check_interval, stage_schedule
from art_stn.smoothing import auto_batch_size, prepare_model, probe_batch_size, sample_counts
from art_stn.speed import COMPILE_AFTER, CompiledForward
from art_stn.validation import check_inputs, check_int, check_labels, check_radii

logger = logging.getLogger(__name__)

__all__ = ["SmoothedPredictionMixin"]


class SmoothedPredictionMixin:
    """
    `predict`, `certify` and `certify_report` of :class:`art_stn.STNClassifier`, and the sampling behind them.
    """

    # Set by STNClassifier's constructor and `_check_params`.
    _auto_batch: int | None
    _abstain: bool
    _generators: dict[str, torch.Generator]
    _compiled: dict[tuple[int, bool], CompiledForward]  # per (batch size, memory format); not pickled
    _sampled: int  # noisy copies sampled so far (for `compile_forward=None`)

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
        Validate inputs (:func:`art_stn.validation.check_inputs`) and return them as a float32 tensor.

        :param x: Inputs of shape `(N, *input_shape)`.
        :param name: The argument's name, for the error message.
        :return: The inputs as a tensor.
        """
        return check_inputs(x, self.input_shape, name=name, channels_first=self.channels_first)

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

    def _logits(self, x: torch.Tensor, forward: CompiledForward | None = None) -> torch.Tensor:
        """
        ART preprocessing then the model, on a device tensor; checks the output width.

        :param x: Inputs on the device (noise already added).
        :param forward: The model's compiled forward pass (None: ART's model wrapper, eager).
        :return: The model's outputs, shape `(B, nb_classes)`.
        """
        x_pre, _ = self._apply_preprocessing(x, y=None, fit=False, no_grad=not torch.is_grad_enabled())
        if x_pre.ndim == 4 and self.uses_channels_last():
            x_pre = x_pre.contiguous(memory_format=torch.channels_last)
        out = self._model(x_pre)[-1] if forward is None else forward(x_pre)
        if out.ndim != 2 or out.shape[1] != self.nb_classes:
            raise ValueError(
                f"the model's output has shape {tuple(out.shape)}, but nb_classes={self.nb_classes}: its output "
                "width must equal `nb_classes`."
            )
        return out

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
        Class counts of `n` noisy copies of every input under the classifier's settings: the framework-free core
        :func:`art_stn.smoothing.sample_counts` over ART's preprocessing and the model, on the estimator's device.

        :param x: Clean inputs, shape `(N, *input_shape)`, on any device.
        :param n: Noisy copies per input.
        :param batch_size: Noisy copies per model call.
        :param indices: Global example indices keying the noise streams (default: positions in `x`).
        :param purpose: 0 for top-class selection samples, 1 for estimation samples, 2 for `predict(logits=True)`,
               3 and up for the stages of sequential certification (separate streams).
        :param progress: Optional tqdm bar, advanced by the number of inputs finished.
        :param soft: Accumulate the softmax probabilities instead of the argmax counts.
        :return: Counts of shape `(N, nb_classes)`, int64 (float64 sums of probabilities with `soft`).
        """
        prepare_model(self._model, self.uses_channels_last())
        forward = self._compiled_forward(x.shape[0] * n, batch_size)
        return sample_counts(
            self._logits if forward is None else lambda batch: self._logits(batch, forward),
            x,
            n,
            scale=float(self.scale),
            nb_classes=self.nb_classes,
            noise=self.noise,
            batch_size=batch_size,
            seed=self.seed,
            indices=indices,
            purpose=purpose,
            device=self._device,
            generator=None if self.seed is not None else self._generator(),
            precision=self.precision,
            channels_last=self.uses_channels_last(),
            soft=soft,
            progress=progress,
        )

    def _compiled_forward(self, copies: int, batch_size: int) -> CompiledForward | None:
        """
        The compiled forward pass sampling uses: with `compile_forward=True` always, with None (automatic) on the
        CPU once the classifier's sampling, this call included, reaches :data:`art_stn.speed.COMPILE_AFTER` noisy
        copies (compiling pays for itself on a long run only), never with False.

        :param copies: Noisy copies this call samples.
        :param batch_size: Noisy copies per model call.
        :return: The compiled forward (built once per batch size and memory format), or None for the eager one.
        """
        self._sampled = getattr(self, "_sampled", 0) + copies
        if self.compile_forward is False or (
            self.compile_forward is None and (self._device.type != "cpu" or self._sampled < COMPILE_AFTER)
        ):
            return None
        key = (batch_size, self.uses_channels_last())
        compiled = self.__dict__.setdefault("_compiled", {})
        if key not in compiled:
            logger.info("compiling the forward pass for batches of %d (torch.compile)", batch_size)
            compiled[key] = CompiledForward(self.model, batch_size)
        return compiled[key]

    def _batch_size(self, batch_size: int | None) -> int:
        """
        The batch size to sample with: the given one, or :func:`art_stn.smoothing.auto_batch_size` (measured once).

        :param batch_size: The requested batch size, or None.
        :return: The batch size.
        """
        if batch_size is not None:
            return check_int(batch_size, "batch_size", 1)
        if self._auto_batch is None:
            self._auto_batch = auto_batch_size(
                self._logits, self._model, self.input_shape, self._device, self.precision, self.uses_channels_last()
            )
            logger.info("batch_size=None: using %d noisy copies per model call", self._auto_batch)
        return self._auto_batch

    def _probe_batch_size(self, free: int, peak_memory: Callable[[], int]) -> int:
        """
        :func:`art_stn.smoothing.probe_batch_size` for this classifier's model, device, precision and format.

        :param free: Free device memory in bytes.
        :param peak_memory: Returns the peak memory allocated so far, in bytes.
        :return: The batch size.
        """
        return probe_batch_size(
            self._logits, self._model, self.input_shape, self._device, free, peak_memory, self.precision,
            self.uses_channels_last(),
        )  # fmt: skip

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
    def without_abstention(self) -> Iterator[Any]:
        """
        A context in which `predict` returns the smoothed frequencies without abstention unless asked otherwise.

        ART's decision-based attacks (BoundaryAttack, HopSkipJump) and the success checks of the others take the
        argmax of `predict`: an abstaining zero row would look like class 0 to them, adversarial for every other
        class and never for class 0. Run attacks inside this context and count abstentions as errors afterwards
        with `predict(..., is_abstain=True)`, as :func:`art_stn.robustness.robust_accuracy_to_file` does.

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
        is the largest its bound certified over the stages it ran, and its counts, bounds and other bounds' radii
        are those of that stage (`stage`, `stage_alpha`), so the radius can be recomputed from them; `samples` says
        how many it drew. Sequential certification needs `n0 >= 1`: the top class is fixed before any stage.

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
               still reach a larger requested radius (see :func:`art_stn.certification.reachable_levels`): larger
               values stop more inputs early, saving samples at a higher chance of missing a certificate that more
               samples would have given. It never affects soundness.
        :return: The :class:`CertifyReport`.
        """
        n = check_int(n, "n", 1)
        n0 = self.n0 if n0 is None else check_int(n0, "n0", 0)
        alpha = self.alpha if alpha is None else check_alpha(alpha)
        interval = self.interval if interval is None else check_interval(interval, self.nb_classes)
        requested = None if radii is None else check_radii(radii)
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
        # One bar in inputs: the selection pass (n0 samples each), then the estimation pass (n samples each).
        desc = f"certify: select (n0={n0:,})" if n0 > 0 else f"certify (n={n:,})"
        with tqdm(total=x_t.shape[0], desc=desc, unit="input", disable=not verbose) as bar:
            top = None
            if n0 > 0:
                top = np.argmax(self._sample_counts(x_t, n0, batch_size, indices, 0, progress=bar), axis=1)
                bar.reset(total=x_t.shape[0])
                bar.set_description(f"certify: estimate (n={n:,})")
            counts = self._sample_counts(x_t, n, batch_size, indices, 1, progress=bar)
        report = certify_counts(counts, alpha, float(self.scale), self.noise, self.bound, top, interval, n0)
        if requested is None:
            return report
        level = levels(report.radius, report.certified, requested)
        return dataclasses.replace(
            report, requested_radii=requested, certified_radius=largest_certified(level, requested)
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
        Sequential certification (see :meth:`certify_report`): the top class from `n0` selection samples, then
        :func:`art_stn.certification.certify_sequential` drawing each stage's samples from this classifier.

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
        :return: The report.
        """
        keys = np.arange(x.shape[0]) if indices is None else indices

        def sample(rows: np.ndarray, size: int, purpose: int) -> np.ndarray:
            return self._sample_counts(x[torch.from_numpy(rows)], size, batch_size, keys[rows], purpose)

        with tqdm(total=x.shape[0], desc="certify (sequential)", unit="input", disable=not verbose) as bar:
            top = np.argmax(self._sample_counts(x, n0, batch_size, keys, 0), axis=1)
            return certify_sequential(
                sample, top, self.nb_classes, n0, sizes, alphas, radii, float(self.scale), self.noise, self.bound,
                interval, futility, progress=bar.update,
            )  # fmt: skip

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
