"""
ART's own certified-training estimators (`PyTorchMACER`, `PyTorchSmoothAdv`, `PyTorchSmoothMix`) trained through
their own `fit`, unchanged, with what art-stn's trainers give around it: art-stn checkpoints after every epoch, exact
resume, validation and seconds per epoch. `art-stn train --method macer|smoothadv|smoothmix` uses it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from art_stn.distributed import is_main
from art_stn.trainer import NoiseTrainer
from art_stn.validation import check_int

if TYPE_CHECKING:
    from art_stn.classifier import STNClassifier

__all__ = ["ART_METHODS", "ARTEstimatorTrainer"]


#: ART's certified-training estimators that :class:`ARTEstimatorTrainer` drives: class name -> (method, settings).
ART_METHODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "PyTorchMACER": ("macer", ("beta", "gamma", "lmbda", "gaussian_samples")),
    "PyTorchSmoothAdv": ("smoothadv", ("epsilon", "num_noise_vec", "num_steps", "warmup")),
    "PyTorchSmoothMix": (
        "smoothmix",
        ("eta", "num_noise_vec", "num_steps", "warmup", "mix_step", "maxnorm_s", "maxnorm"),
    ),
}


class ARTEstimatorTrainer(NoiseTrainer):
    """
    Trains one of ART's certified-training estimators (`PyTorchMACER`, `PyTorchSmoothAdv`, `PyTorchSmoothMix`)
    through its own `fit`, unchanged, one epoch per call, and wraps it in what art-stn's trainers give: art-stn
    checkpoints after every epoch (so that `STNClassifier.load` and `art-stn certify` take the model like any other),
    a resume that refuses other settings, validation accuracy, and seconds per epoch.

    Every epoch first seeds torch's and numpy's global generators from `(seed, epoch)` (ART's data order and noise
    draw from them), so a run resumed from an epoch checkpoint equals the unbroken run. ART's `fit` counts epochs from
    0 on every call; its warm-up (`warmup` epochs of SmoothAdv and SmoothMix) is kept on the run's epoch count by
    giving each one-epoch call `warmup / (epoch + 1)`, which makes ART's factor `min(1, (epoch + 1) / warmup)`, the
    unbroken run's. ART's `fit` reports no loss: the history has `nan` there.

    The checkpoint's smoothing settings are the classifier's: pass `STNClassifier.from_estimator(estimator,
    alpha=0.001)` (Gaussian noise at the estimator's `scale`; ART's SmoothMix uses its own `alpha` as the attack's
    step size, so the failure probability of certificates is set here, not taken from the estimator):

    >>> est = PyTorchMACER(model, loss, (1, 28, 28), 10, optimizer=opt, scale=0.5, device_type="cpu")
    >>> ARTEstimatorTrainer(STNClassifier.from_estimator(est, alpha=0.001), est).fit(x, y, nb_epochs=90)
    """

    def __init__(
        self, classifier: STNClassifier, estimator: Any, seed: int = 0, metadata: dict[str, Any] | None = None
    ) -> None:
        """
        Create a trainer.

        :param classifier: `STNClassifier.from_estimator(estimator)`: the smoothed classifier around the estimator's
               model, whose smoothing settings the checkpoints store.
        :param estimator: An ART `PyTorchMACER`, `PyTorchSmoothAdv` or `PyTorchSmoothMix` with an optimizer.
        :param seed: Seed of every epoch's data order and noise.
        :param metadata: Plain values stored in every checkpoint.
        :raises TypeError: for another estimator.
        :raises ValueError: if the classifier does not share the estimator's model.
        """
        name = type(estimator).__name__
        if name not in ART_METHODS:
            raise TypeError(f"`estimator` must be one of ART's {sorted(ART_METHODS)}; got {name}.")
        if getattr(classifier, "model", None) is not estimator.model:
            raise ValueError(
                "`classifier` must share the estimator's model: pass STNClassifier.from_estimator(estimator)."
            )
        self.estimator = estimator
        self.method, names = ART_METHODS[name]
        self._settings = {k: getattr(estimator, k) for k in names}
        super().__init__(classifier, seed=seed, metadata=metadata)

    def method_settings(self) -> dict[str, Any]:
        """
        :return: The estimator's method settings (e.g. MACER's `beta`, `gamma`, `lmbda`, `gaussian_samples`).
        """
        return dict(self._settings)

    def fit(  # type: ignore[override]
        self,
        x: np.ndarray,
        y: np.ndarray,
        nb_epochs: int = 10,
        batch_size: int = 128,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        scheduler: Any = None,
        verbose: bool = True,
        checkpoint: str | Path | None = None,
        resume_from: str | Path | None = None,
        **kwargs: Any,
    ) -> list[dict[str, float]]:
        """
        Train with the estimator's own `fit`, one epoch at a time.

        :param x: Training inputs.
        :param y: Labels, indices or one-hot.
        :param nb_epochs: Total number of epochs (a resumed run continues up to it).
        :param batch_size: Batch size of ART's `fit`.
        :param validation_data: Optional `(x_val, y_val)`: clean and noisy accuracy after every epoch.
        :param scheduler: Optional LR scheduler, which ART's `fit` steps after every epoch.
        :param verbose: Show a progress bar over the epochs.
        :param checkpoint: Optional file written after every epoch.
        :param resume_from: Optional checkpoint to continue from.
        :param kwargs: Ignored.
        :return: The history: one dict per epoch.
        """
        nb_epochs = check_int(nb_epochs, "nb_epochs", 0)
        start = self._resume(resume_from, scheduler) if resume_from is not None else 0
        if resume_from is None:
            self.history = []
        est, warmup = self.estimator, getattr(self.estimator, "warmup", None)
        bar = tqdm(range(start, nb_epochs), desc=self.method, unit="epoch", disable=not verbose)
        for epoch in bar:
            began, cpu_began = time.perf_counter(), time.process_time()
            epoch_seed = (self.seed * 1_000_003 + epoch) * 7
            torch.manual_seed(epoch_seed)
            np.random.seed(epoch_seed % 2**32)  # noqa: NPY002 - ART's own code draws from numpy's global state
            if warmup is not None:
                est.warmup = warmup / (epoch + 1)
            try:
                est.fit(x, y, batch_size=batch_size, nb_epochs=1, scheduler=scheduler, verbose=False)
            finally:
                if warmup is not None:
                    est.warmup = warmup
            record: dict[str, float] = {"epoch": epoch + 1, "loss": float("nan")}
            if validation_data is not None:
                record["val_clean_acc"], record["val_noisy_acc"] = self.evaluate(*validation_data, epoch=epoch)
            record["seconds"] = time.perf_counter() - began
            record["cpu_seconds"] = time.process_time() - cpu_began
            self.history.append(record)
            bar.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k.startswith("val")})
            if checkpoint is not None and is_main():
                self.save_checkpoint(checkpoint, epoch, scheduler)
        return self.history

    def fit_generator(self, generator: Any, nb_epochs: int = 10, **kwargs: Any) -> list[dict[str, float]]:
        """
        Not available: ART's certified-training estimators train on arrays only.

        :param generator: Unused.
        :param nb_epochs: Unused.
        :param kwargs: Unused.
        :raises NotImplementedError: always.
        """
        raise NotImplementedError("ART's certified-training estimators train on arrays: use fit(x, y).")
