"""
`STNClassifier`: a smoothed PyTorch classifier for ART with Renyi-divergence (Gaussian, L2) and Laplace (L1)
certificates, noise-averaged gradients for ART's attacks, and device-side Monte Carlo sampling.

This module is the estimator itself (its parameters and their checks, `load`, `from_estimator`, `fit`); its
`predict` / `certify` / `certify_report` come from :class:`art_stn.prediction.SmoothedPredictionMixin` and its
gradients from :class:`art_stn.gradients.NoiseAveragedGradientsMixin` (layer 4 of the [architecture](../architecture/)).

| Paper link: https://arxiv.org/abs/1809.03113 (Li, Wang, Chen, Carin, NeurIPS 2019)
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from art.estimators.certification.randomized_smoothing.randomized_smoothing import RandomizedSmoothingMixin
from art.estimators.classification.pytorch import PyTorchClassifier

from art_stn.certification import (
    BOUNDS,
    FUTILITY_LEVEL,
    N0_ZERO_WARNING,
    CertifyReport,
    certify_counts,
)
from art_stn.checkpoint import classifier_settings, load_checkpoint, model_from_checkpoint
from art_stn.confidence import INTERVALS, check_alpha, check_interval
from art_stn.distributed import unwrap
from art_stn.gradients import NoiseAveragedGradientsMixin
from art_stn.noise import check_noise
from art_stn.prediction import SmoothedPredictionMixin
from art_stn.smoothing import (
    CPU_BATCH_SIZE,
    PRECISIONS,
    set_memory_format,
)
from art_stn.speed import fastest_channels_last
from art_stn.trainer import STNTrainer
from art_stn.validation import check_int, check_labels

if TYPE_CHECKING:
    from art.defences.postprocessor import Postprocessor
    from art.defences.preprocessor import Preprocessor
    from art.utils import CLIP_VALUES_TYPE, PREPROCESSING_TYPE

logger = logging.getLogger(__name__)

# BOUNDS, FUTILITY_LEVEL, INTERVALS, N0_ZERO_WARNING, CertifyReport, certify_counts, CPU_BATCH_SIZE, PRECISIONS,
# check_int and check_labels live in the layers below (certification, confidence, smoothing, validation); they are
# re-exported here, where they were first defined, so that existing imports keep working.
__all__ = [
    "BOUNDS",
    "CPU_BATCH_SIZE",
    "FUTILITY_LEVEL",
    "INTERVALS",
    "N0_ZERO_WARNING",
    "PRECISIONS",
    "CertifyReport",
    "STNClassifier",
    "certify_counts",
    "check_int",
    "check_labels",
]


class STNClassifier(SmoothedPredictionMixin, NoiseAveragedGradientsMixin, RandomizedSmoothingMixin, PyTorchClassifier):
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
        "compile_forward",
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
        channels_last: bool | None = None,
        interval: str = "clopper-pearson",
        compile_forward: bool | None = None,
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
        :param channels_last: The memory format of 4-D inputs and weights in every forward pass (sampling, noise-
               averaged gradients, training): True for channels-last, False for PyTorch's default, None (default)
               for the faster of the two on this machine and model, measured once and cached
               (:func:`art_stn.speed.fastest_channels_last`; :meth:`uses_channels_last` tells the choice). Only
               the order of floating-point operations differs; other tensors (e.g. of 3-D convolutions) keep theirs.
        :param interval: The confidence interval behind `p1_lower` / `p2_upper`: `"clopper-pearson"` (one-sided,
               `alpha / 2` each, Bonferroni: the paper's text), `"sison-glaz"` (needs >= 7 classes) or `"goodman"`
               (simultaneous multinomial intervals at level `alpha`: the reference code's choice). The `cohen` bound
               always uses its own one-sided Clopper-Pearson bound.
        :param compile_forward: Sample (predict, certify) through `torch.compile`'s forward pass: True always, False
               never, None (default) on the CPU once the classifier has sampled
               :data:`art_stn.speed.COMPILE_AFTER` noisy copies, where compiling pays for itself
               (:class:`art_stn.speed.CompiledForward`: full batches only, eager if compiling fails). Only the order
               of floating-point operations differs; gradients and training stay eager.
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
        self.compile_forward = compile_forward
        self._auto_batch: int | None = None
        self._abstain = True
        self._generators: dict[str, torch.Generator] = {}
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
        if self.channels_last is not None and not isinstance(self.channels_last, bool):
            raise TypeError(f"`channels_last` must be True, False or None (measured); got {self.channels_last!r}.")
        if self.compile_forward is not None and not isinstance(self.compile_forward, bool):
            raise TypeError(f"`compile_forward` must be True, False or None (automatic); got {self.compile_forward!r}.")
        if self.nb_classes < 2:
            raise ValueError(f"`nb_classes` must be >= 2; got {self.nb_classes}.")
        check_interval(self.interval, self.nb_classes)
        if not self.all_framework_preprocessing:
            raise ValueError(
                "`preprocessing_defences` must all be PyTorch-framework defences (with `forward`): the noise is "
                "drawn and the preprocessing applied on the device."
            )
        self._generators = {}
        self._auto_batch = None
        self._layout: bool | None = None

    def uses_channels_last(self) -> bool:
        """
        The memory format of the forward passes: `channels_last` when it is set, else the faster one on this machine
        and model (:func:`art_stn.speed.fastest_channels_last`, measured on first use and cached). The model's 4-D
        weights are put in that format.

        :return: True for channels-last, False for PyTorch's default format.
        """
        if self._layout is None:
            layout = self.channels_last
            if layout is None:
                layout = fastest_channels_last(unwrap(self.model), tuple(self.input_shape), self._device)
            set_memory_format(self._model, layout)
            self._layout = layout
        return self._layout

    def __getstate__(self) -> dict[str, Any]:
        """
        ART's pickling state, without the compiled forward passes (rebuilt when needed).

        :return: The state.
        """
        state = super().__getstate__()
        state.pop("_compiled", None)
        return state

    @property
    def norm(self) -> int:
        """
        The norm of the certified radius: 2 for Gaussian noise, 1 for Laplace noise.
        """
        return 2 if self.noise == "gaussian" else 1

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
        checkpoint: dict[str, Any] | None = None,
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
        :param checkpoint: The checkpoint dict of `path`, when it is already loaded
               (:func:`art_stn.checkpoint.load_checkpoint`): the file is not read again.
        :param kwargs: Overrides of the stored smoothing settings (e.g. `sample_size=1000`) or other constructor
               arguments (`preprocessing`, ...).
        :return: The classifier.
        :raises FileNotFoundError: if `path` does not exist.
        :raises ValueError: if the file is not an art-stn checkpoint or does not fit `model`, or holds a deterministic
                model (standard training, TRADES, Madry: no noise, so no smoothed classifier to restore).
        """
        ckpt = load_checkpoint(path) if checkpoint is None else checkpoint
        if ckpt.get("deterministic"):
            raise ValueError(
                f"{path} holds a deterministic model (--method {ckpt.get('method', 'standard')}, trained without "
                "noise): it has no smoothed prediction to certify. `art-stn attack` evaluates it as the plain "
                "classifier; art_stn.checkpoint.model_from_checkpoint returns its model."
            )
        model = model_from_checkpoint(ckpt, path, model)
        settings = classifier_settings(ckpt, **kwargs)
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
               `precision`, `channels_last`, `compile_forward`.
        :return: The smoothed classifier.
        :raises TypeError: if `estimator` is not an ART `PyTorchClassifier` or `smoothing` names an unknown argument.
        :raises ValueError: if no `scale` is given and the estimator has none.
        """
        if not isinstance(estimator, PyTorchClassifier):
            raise TypeError(f"`estimator` must be an ART PyTorchClassifier; got {type(estimator).__name__}.")
        names = ("sample_size", "alpha", "bound", "n0", "eot_samples", "seed", "precision", "channels_last")
        names += ("compile_forward",)
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
