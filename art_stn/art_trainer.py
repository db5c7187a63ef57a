"""
ART's own certified-training estimators (`PyTorchMACER`, `PyTorchSmoothAdv`, `PyTorchSmoothMix`), and ART's training of
deterministic models (a plain `PyTorchClassifier`'s `fit`: standard training; `AdversarialTrainerTRADESPyTorch`,
`AdversarialTrainerMadryPGD`: the adversarial-training baselines), trained through their own `fit`, unchanged, with
what art-stn's trainers give around it: art-stn checkpoints after every epoch, exact resume, validation and seconds
per epoch. `art-stn train --method macer|smoothadv|smoothmix|standard|trades|madry` uses it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from art.estimators.classification.pytorch import PyTorchClassifier
from tqdm.auto import tqdm

from art_stn.checkpoint import model_from_checkpoint
from art_stn.distributed import is_main
from art_stn.models import OneOutput
from art_stn.trainer import NoiseTrainer
from art_stn.validation import check_int

if TYPE_CHECKING:
    from art_stn.classifier import STNClassifier

__all__ = [
    "ART_ARG_RULES",
    "ART_METHODS",
    "ART_TRAINERS",
    "DETERMINISTIC",
    "DETERMINISTIC_METHODS",
    "ARTEstimatorTrainer",
    "PlainClassifier",
    "art_settings",
    "deterministic_trainer",
    "plain_classifier",
]


#: ART's certified-training estimators that :class:`ARTEstimatorTrainer` drives: class name -> (method, settings).
ART_METHODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "PyTorchMACER": ("macer", ("beta", "gamma", "lmbda", "gaussian_samples")),
    "PyTorchSmoothAdv": ("smoothadv", ("epsilon", "num_noise_vec", "num_steps", "warmup")),
    "PyTorchSmoothMix": (
        "smoothmix",
        ("eta", "num_noise_vec", "num_steps", "warmup", "mix_step", "alpha", "maxnorm_s", "maxnorm"),
    ),
}


#: ART's training of deterministic models (no noise) that :class:`ARTEstimatorTrainer` drives: class name ->
#: (method, settings). Standard training is Figure 4's sigma = 0; TRADES and Madry's PGD training are the paper's
#: adversarial-training baselines. Their attack's settings (`eps`, `eps_step`, `max_iter`, `num_random_init`, `norm`)
#: and TRADES' `beta` are recorded.
DETERMINISTIC_METHODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "PyTorchClassifier": ("standard", ()),
    "AdversarialTrainerTRADESPyTorch": ("trades", ("beta", "eps", "eps_step", "max_iter", "num_random_init", "norm")),
    "AdversarialTrainerMadryPGD": ("madry", ("eps", "eps_step", "max_iter", "num_random_init", "norm")),
}


def _model_of(estimator: Any) -> Any:
    """
    :param estimator: An ART estimator, or an ART trainer (whose `classifier` holds the model).
    :return: The PyTorch model it trains.
    """
    return estimator.get_classifier().model if hasattr(estimator, "get_classifier") else estimator.model


def _setting(estimator: Any, name: str) -> Any:
    """
    :param estimator: An ART estimator or trainer.
    :param name: A setting of :data:`ART_METHODS` or :data:`DETERMINISTIC_METHODS`.
    :return: Its value, as a plain value (the attack's norm as a string, e.g. `"inf"`).
    """
    if name == "beta" and hasattr(estimator, "_beta"):
        return float(estimator._beta)
    attack = getattr(estimator, "_attack", None) or getattr(estimator, "attack", None)
    if type(estimator).__name__ in DETERMINISTIC_METHODS and attack is not None:
        value = getattr(attack, name)
        return str(value) if name == "norm" else value
    return getattr(estimator, name)


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
        methods = {**ART_METHODS, **DETERMINISTIC_METHODS}
        if name not in methods:
            raise TypeError(f"`estimator` must be one of ART's {sorted(methods)}; got {name}.")
        if getattr(classifier, "model", None) is not _model_of(estimator):
            raise ValueError(
                "`classifier` must share the estimator's model: pass STNClassifier.from_estimator(estimator)."
            )
        self.estimator = estimator
        self.method, names = methods[name]
        #: A deterministic model (standard training, TRADES, Madry): its checkpoints record no noise, and
        #: `STNClassifier.load` refuses them.
        self.deterministic = name in DETERMINISTIC_METHODS
        self._settings = {k: _setting(estimator, k) for k in names}
        super().__init__(classifier, seed=seed, metadata=metadata)

    def method_settings(self) -> dict[str, Any]:
        """
        :return: The estimator's method settings (e.g. MACER's `beta`, `gamma`, `lmbda`, `gaussian_samples`; TRADES'
                 `beta` and attack settings), and `deterministic: True` for a model trained without noise.
        """
        return {**self._settings, **({"deterministic": True} if self.deterministic else {})}

    def _smoothing_record(self) -> dict[str, Any]:
        """
        :return: The classifier's smoothing settings; for a deterministic model only its input shape, classes and
                 clip values, with `noise: "none"`.
        """
        record = self.classifier.smoothing_settings()
        if self.deterministic:
            record = {"noise": "none", **{k: record[k] for k in ("input_shape", "nb_classes", "clip_values")}}
        return record

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
        self._batch_size = check_int(batch_size, "batch_size", 1)
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
                if self.method == "standard":
                    est.fit(x, y, batch_size=batch_size, nb_epochs=1, verbose=False)
                elif self.deterministic:  # ART's adversarial trainers: their own progress bar, no scheduler
                    est.fit(x, y, batch_size=batch_size, nb_epochs=1)
                else:
                    est.fit(x, y, batch_size=batch_size, nb_epochs=1, scheduler=scheduler, verbose=False)
            finally:
                if warmup is not None:
                    est.warmup = warmup
            if self.deterministic and scheduler is not None:
                scheduler.step()  # after every epoch, as ART's certified-training estimators step it
            record: dict[str, float] = {"epoch": epoch + 1, "loss": float("nan")}
            if validation_data is not None:
                clean, noisy = self.evaluate(*validation_data, epoch=epoch)
                record["val_clean_acc"] = clean
                if not self.deterministic:
                    record["val_noisy_acc"] = noisy
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


#: ART's certified-training estimators of `art-stn train --method`: (class name, constructor defaults). The defaults
#: are the MNIST settings of their papers (MACER: Zhai et al. 2020; SmoothAdv and SmoothMix: Jeong et al. 2021's
#: MNIST runs) where ART's differ; `--art-args` overrides them. ART's SmoothMix takes its attack step from `alpha`;
#: ART 1.20.1's SmoothAdv fails for num_noise_vec > 1 (it repeats the targets, not the noise), hence 1.
ART_TRAINERS: dict[str, tuple[str, dict[str, float | int | None]]] = {
    "macer": ("PyTorchMACER", {"beta": 16.0, "gamma": 8.0, "lmbda": 16.0, "gaussian_samples": 16}),
    "smoothadv": ("PyTorchSmoothAdv", {"epsilon": 1.0, "num_noise_vec": 1, "num_steps": 2, "warmup": 10}),
    "smoothmix": (
        "PyTorchSmoothMix",
        {"eta": 5.0, "num_noise_vec": 2, "num_steps": 8, "warmup": 10, "mix_step": 1, "alpha": 1.0},
    ),
    # Deterministic models, no noise: standard training (Figure 4's sigma = 0) and the adversarial-training baselines
    # at their MNIST settings (L-infinity eps 0.3, PGD steps of 0.01, 40 of them; TRADES' 1/lambda = 6 of its MNIST
    # table). ART's TRADES trainer runs the PGD attack it is given (cross-entropy, random start), not TRADES' own
    # KL-maximising attack.
    "standard": ("PyTorchClassifier", {}),
    "trades": (
        "AdversarialTrainerTRADESPyTorch",
        {"eps": 0.3, "eps_step": 0.01, "max_iter": 40, "num_random_init": 1, "beta": 6.0},
    ),
    "madry": ("AdversarialTrainerMadryPGD", {"eps": 0.3, "eps_step": 0.01, "max_iter": 40, "num_random_init": 1}),
}
#: The methods of :data:`ART_TRAINERS` that train a deterministic model (no noise).
DETERMINISTIC = tuple(method for method, _ in DETERMINISTIC_METHODS.values())


#: What each `--art-args` setting must be: (integer, lowest value, lowest excluded). ART checks none of them: a zero
#: `num_steps` trains without the attack, a zero `warmup` or `num_noise_vec` divides by zero, a negative step fails
#: deep inside the attack.
ART_ARG_RULES: dict[str, tuple[bool, float, bool]] = {
    "beta": (False, 0.0, True),
    "gamma": (False, 0.0, True),
    "lmbda": (False, 0.0, False),
    "gaussian_samples": (True, 1.0, False),
    "epsilon": (False, 0.0, True),
    "num_noise_vec": (True, 1.0, False),
    "num_steps": (True, 1.0, False),
    "warmup": (True, 1.0, False),
    "eta": (False, 0.0, False),
    "mix_step": (True, 0.0, False),
    "alpha": (False, 0.0, True),
    "eps": (False, 0.0, True),
    "eps_step": (False, 0.0, True),
    "max_iter": (True, 1.0, False),
    "num_random_init": (True, 0.0, False),
}


def art_settings(text: str, method: str) -> dict[str, float | int | None]:
    """
    :param text: `--art-args`: comma-separated `key=value` pairs.
    :param method: The ART method.
    :return: The method's defaults updated with the given values.
    :raises ValueError: for a malformed pair, a key the method's defaults do not list, or a value outside
            :data:`ART_ARG_RULES` (before anything is built or trained).
    """
    defaults = dict(ART_TRAINERS[method][1])
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = pair.partition("=")
        if not sep or key not in defaults:
            raise ValueError(f"--art-args: {pair!r} is not key=value with a key of {method}: {sorted(defaults)}.")
        try:
            defaults[key] = None if value.lower() == "none" else float(value)
        except ValueError as err:
            raise ValueError(f"--art-args: {key} must be a number or none; got {value!r}.") from err
    for key, value in defaults.items():
        integer, lowest, strict = ART_ARG_RULES[key]
        what = ("an integer" if integer else "a number") + (" > " if strict else " >= ") + f"{lowest:g}"
        if value is None or not math.isfinite(value) or (value <= lowest if strict else value < lowest):
            raise ValueError(f"--art-args: {key} of --method {method} must be {what}; got {value}.")
        if integer:
            if value != int(value):
                raise ValueError(f"--art-args: {key} of --method {method} must be {what}; got {value}.")
            defaults[key] = int(value)
    if method == "smoothadv" and defaults["num_noise_vec"] != 1:
        raise ValueError(
            "--art-args: num_noise_vec of --method smoothadv must be 1: ART 1.20.1's SmoothAdv repeats the targets "
            "instead of the noisy inputs for more noise vectors, and fails with a batch-size mismatch."
        )
    return defaults


class PlainClassifier(PyTorchClassifier):
    """
    ART's `PyTorchClassifier` for a model without noise, taking inputs of any float dtype as float32, the model's:
    ART's decision-based attacks query in float64 (BoundaryAttack's random steps), which ART's class hands to a
    float32 model as they are, failing in its first layer.
    """

    def predict(self, x: np.ndarray, batch_size: int = 128, training_mode: bool = False, **kwargs: Any) -> np.ndarray:
        """
        :param x: Inputs, any float dtype.
        :param batch_size: Inputs per model call.
        :param training_mode: Run the model in training mode.
        :return: The model's outputs (logits), as ART's class returns them.
        """
        return super().predict(_float32(x), batch_size=batch_size, training_mode=training_mode, **kwargs)

    def loss_gradient(self, x: Any, y: Any, training_mode: bool = False, **kwargs: Any) -> Any:
        """
        :param x: Inputs, any float dtype (a numpy array or a tensor).
        :param y: Labels, as ART's class takes them.
        :param training_mode: Run the model in training mode.
        :return: The loss gradient with respect to `x`, as ART's class returns it.
        """
        return super().loss_gradient(_float32(x), y, training_mode=training_mode, **kwargs)

    def class_gradient(self, x: Any, label: Any = None, training_mode: bool = False, **kwargs: Any) -> Any:
        """
        :param x: Inputs, any float dtype (a numpy array or a tensor).
        :param label: The classes, as ART's class takes them.
        :param training_mode: Run the model in training mode.
        :return: The class gradients with respect to `x`, as ART's class returns them.
        """
        return super().class_gradient(_float32(x), label=label, training_mode=training_mode, **kwargs)


def _float32(x: Any) -> Any:
    """:return: `x` as float32 where it is a float array or tensor of another precision, else `x` itself."""
    if isinstance(x, torch.Tensor):
        return x.float() if x.is_floating_point() else x
    x = np.asarray(x)
    return x.astype(np.float32) if np.issubdtype(x.dtype, np.floating) else x


def plain_classifier(path: str, ckpt: dict[str, Any], device_type: str) -> Any:
    """
    The base model of a checkpoint as a plain ART `PyTorchClassifier` (no noise): how a deterministic model is
    attacked, and the source model that transfer attacks are crafted on.

    :param path: The checkpoint file.
    :param ckpt: Its content.
    :param device_type: ART's device type.
    :return: The classifier.
    """
    smoothing = ckpt["smoothing"]
    clip = smoothing.get("clip_values")
    return PlainClassifier(
        model_from_checkpoint(ckpt, path),
        torch.nn.CrossEntropyLoss(),
        tuple(smoothing["input_shape"]),
        int(smoothing["nb_classes"]),
        clip_values=None if clip is None else tuple(clip),
        device_type=device_type,
    )


def deterministic_trainer(
    method: str, base: tuple, common: dict[str, Any], settings: dict[str, Any], batch_size: int
) -> tuple[Any, Any]:
    """
    ART's training of a deterministic model: the plain classifier's own `fit` (standard), or ART's TRADES or Madry
    adversarial trainer around it with an L-infinity PGD attack of the given settings.

    :param method: `"standard"`, `"trades"` or `"madry"`.
    :param base: `(model, loss, input_shape, nb_classes)`.
    :param common: `optimizer`, `clip_values`, `device_type` (and the unused `scale`).
    :param settings: The method's `--art-args` (eps, eps_step, max_iter, num_random_init; TRADES' beta).
    :param batch_size: The batch size.
    :return: `(what trains, the plain classifier)`.
    """
    from art.attacks.evasion import ProjectedGradientDescent
    from art.defences.trainer import AdversarialTrainerMadryPGD, AdversarialTrainerTRADESPyTorch

    model, *rest = base
    if method == "trades" and isinstance(model, torch.nn.Sequential):
        model = OneOutput(model)  # ART 1.20.1's TRADES reads a Sequential's first layer as its logits
    plain = PyTorchClassifier(model, *rest, **{k: v for k, v in common.items() if k != "scale"})
    if method == "standard":
        return plain, plain
    attack = {k: settings[k] for k in ("eps", "eps_step", "max_iter", "num_random_init")}
    if method == "trades":
        pgd = ProjectedGradientDescent(plain, norm=np.inf, verbose=False, **attack)
        return AdversarialTrainerTRADESPyTorch(plain, pgd, beta=settings["beta"]), plain
    return AdversarialTrainerMadryPGD(plain, nb_epochs=None, batch_size=batch_size, **attack), plain
