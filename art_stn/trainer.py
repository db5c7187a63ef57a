"""
Training under the smoothed classifier's own noise: one training loop (:class:`NoiseTrainer`), one loss per method.

- Gaussian augmentation (Cohen et al. 2019), :class:`GaussianAugmentationTrainer`: `CE(f(x + r), y)`.
- Stability Training with Noise (STN, Li et al. 2019), :class:`STNTrainer`:
  `CE(f(x), y) + gamma * CE(softmax(f(x)), f(x + r))`.
- Consistency regularization (Jeong & Shin 2020), :class:`ConsistencyTrainer`: with `m` noisy copies and
  `p_hat = (1/m) sum_i softmax f(x + r_i)`,
  `(1/m) sum_i CE(f(x + r_i), y) + lbd (1/m) sum_i KL(p_hat || softmax f(x + r_i)) + eta H(p_hat)`.

The losses are pure functions of logits in :mod:`art_stn.losses`; a trainer draws the noise and calls its loss. ART's
own MACER, SmoothAdv and SmoothMix estimators train through their own `fit`, unchanged, with art-stn checkpoints
around it (:class:`art_stn.art_trainer.ARTEstimatorTrainer`).

| Paper links: https://arxiv.org/abs/1809.03113 (STN), https://arxiv.org/abs/2006.04062 (consistency),
  https://arxiv.org/abs/1902.02918 (Gaussian augmentation)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from art_stn.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from art_stn.losses import consistency_loss, gaussian_augmentation_loss, stability_loss
from art_stn.noise_trainer import NoiseTrainer
from art_stn.validation import check_int, check_number

if TYPE_CHECKING:
    from art_stn.classifier import STNClassifier

# CHECKPOINT_FORMAT and load_checkpoint live in art_stn.checkpoint, NoiseTrainer in art_stn.noise_trainer; re-exported
# here, where they were first defined (NoiseTrainer: where users look for the trainers).
__all__ = [
    "CHECKPOINT_FORMAT",
    "ConsistencyTrainer",
    "GaussianAugmentationTrainer",
    "NoiseTrainer",
    "STNTrainer",
    "build_scheduler",
    "load_checkpoint",
]


class GaussianAugmentationTrainer(NoiseTrainer):
    """
    Gaussian augmentation (Cohen et al. 2019): `CE(f(x + r), y)` with `r` the classifier's noise (Gaussian, or
    Laplace for a Laplace classifier). The baseline every certified-training method is compared with; the same as
    `STNTrainer(classifier, gamma=0)`.
    """

    method = "gaussian"

    def loss(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """
        :param x: Clean inputs on the device.
        :param y: Class indices on the device.
        :param generator: The noise generator.
        :return: `CE(f(x + r), y)`.
        """
        return gaussian_augmentation_loss(self.classifier._logits(self._noisy(x, generator)), y)


class STNTrainer(NoiseTrainer):
    """
    Stability training of an :class:`~art_stn.STNClassifier`'s base model under the classifier's own noise.

    Loss per batch: `CE(f(x), y) + gamma * CE(softmax(f(x)), f(x + r))`, with `r` the classifier's noise (its kind
    and scale) drawn on the device. Gradients flow through both the clean and the noisy branch: the paper writes
    the objective as one loss minimised over the weights (stability training of Zheng et al. 2016), with no
    stop-gradient on the clean softmax, so none is added here. The clean and noisy batches take two forward passes
    (batch-norm layers normalise each on its own) and one backward through both.

    `gamma=0` trains on noisy inputs only, `CE(f(x + r), y)` (Gaussian augmentation, Cohen et al.'s training and the
    paper's ablation), through the same code path.

    `detach_target=True` is the reference code's variant (Bai-Li/STN-Code): the clean softmax is a fixed target of
    the stability term (no gradient flows through it), so the term only pulls the noisy prediction towards the clean
    one. The default, `False`, is the paper's formula.

    The loop (seeded data order and noise, checkpoints, exact resume, DDP) is :class:`NoiseTrainer`'s.
    """

    method = "stn"

    def __init__(
        self,
        classifier: STNClassifier,
        gamma: float = 1.0,
        seed: int = 0,
        metadata: dict[str, Any] | None = None,
        detach_target: bool = False,
    ) -> None:
        """
        Create a trainer.

        :param classifier: The smoothed classifier whose base model is trained; it needs an optimizer.
        :param gamma: Weight of the stability term, >= 0; 0 is Gaussian augmentation.
        :param seed: Seed of the data order and the training noise.
        :param metadata: Plain values stored in every checkpoint (the command line stores the model's registry
               name and the data set, so that `STNClassifier.load(path)` can rebuild the model).
        :param detach_target: Stop the gradient through the clean softmax in the stability term (the reference code's
               variant); False (default) is the paper's formula.
        """
        gamma = check_number(gamma, "gamma")
        if not isinstance(detach_target, bool):
            raise TypeError("`detach_target` must be a bool.")
        super().__init__(classifier, seed=seed, metadata=metadata)
        self.gamma = gamma
        self.detach_target = detach_target

    def method_settings(self) -> dict[str, Any]:
        """
        :return: `gamma` and `detach_target`.
        """
        return {"gamma": self.gamma, "detach_target": self.detach_target}

    def loss(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """
        The training loss of one batch (the model must already be in the wanted mode).

        :param x: Clean inputs on the device.
        :param y: Class indices on the device.
        :param generator: The noise generator.
        :return: The scalar loss.
        """
        logits = self.classifier._logits
        noisy = self._noisy(x, generator)
        if self.gamma == 0.0:
            return gaussian_augmentation_loss(logits(noisy), y)
        return stability_loss(logits(x), logits(noisy), y, self.gamma, self.detach_target)


class ConsistencyTrainer(NoiseTrainer):
    """
    Consistency regularization (Jeong & Shin, NeurIPS 2020) under the classifier's own noise. Per batch, `m` noisy
    copies of every input go through the model in one forward pass, and the loss is :func:`consistency_loss`:
    `(1/m) sum_i CE(f(x + r_i), y) + lbd (1/m) sum_i KL(p_hat || softmax f(x + r_i)) + eta H(p_hat)`,
    `p_hat = (1/m) sum_i softmax f(x + r_i)`, with gradients through `p_hat`.

    `batch_size` of :meth:`fit` counts clean inputs, so a step runs `m * batch_size` noisy images. Jeong & Shin's code
    splits each loader batch of 256 into `m` steps of `256 / m` inputs: `batch_size=128` with `m=2` matches it.
    Their MNIST settings: `m = 2`, `eta = 0.5`, `lbd` = 10 / 5 / 5 at sigma 0.25 / 0.5 / 1.0.

    The loop (seeded data order and noise, checkpoints, exact resume, DDP) is :class:`NoiseTrainer`'s.
    """

    method = "consistency"

    def __init__(
        self,
        classifier: STNClassifier,
        lbd: float,
        m: int = 2,
        eta: float = 0.5,
        seed: int = 0,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """
        Create a trainer.

        :param classifier: The smoothed classifier whose base model is trained; it needs an optimizer.
        :param lbd: Weight `lambda` of the consistency (KL) term, >= 0 (10 / 5 / 5 on MNIST at sigma 0.25 / 0.5 / 1).
        :param m: Noisy copies per input, >= 1 (2 in the paper's MNIST and CIFAR-10 runs).
        :param eta: Weight of the entropy term of `p_hat`, >= 0.
        :param seed: Seed of the data order and the training noise.
        :param metadata: Plain values stored in every checkpoint.
        """
        lbd = check_number(lbd, "lbd")
        eta = check_number(eta, "eta")
        m = check_int(m, "m", 1)
        super().__init__(classifier, seed=seed, metadata=metadata)
        self.lbd, self.m, self.eta = lbd, m, eta

    def method_settings(self) -> dict[str, Any]:
        """
        :return: `lbd`, `m` and `eta`.
        """
        return {"lbd": self.lbd, "m": self.m, "eta": self.eta}

    def loss(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """
        The training loss of one batch: `m` noisy copies in one forward pass.

        :param x: Clean inputs on the device.
        :param y: Class indices on the device.
        :param generator: The noise generator.
        :return: The scalar loss.
        """
        logits = self.classifier._logits(self._noisy(x, generator, copies=self.m))
        return consistency_loss(logits, y, self.m, self.lbd, self.eta)


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, epochs: int, step_size: int = 30, decay: float = 0.1
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """
    A learning-rate schedule stepped once per epoch.

    :param optimizer: The optimizer.
    :param schedule: `"constant"` (None is returned), `"cosine"` (cosine annealing over `epochs`) or `"step"` (the
           rate times `decay` every `step_size` epochs: Cohen et al.'s and Jeong & Shin's 0.1 every 30 of 90).
    :param epochs: Total epochs (the cosine period).
    :param step_size: Epochs between decays of the step schedule.
    :param decay: Factor of each decay of the step schedule, in (0, 1].
    :return: The scheduler, or None for a constant rate.
    :raises ValueError: for an unknown schedule or a bad step size or decay.
    """
    if schedule == "constant":
        return None
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=check_int(epochs, "epochs", 1))
    if schedule == "step":
        if not 0 < check_number(decay, "decay") <= 1:
            raise ValueError(f"`decay` must be in (0, 1]; got {decay!r}.")
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=check_int(step_size, "step_size", 1), gamma=decay)
    raise ValueError(f"`schedule` must be 'constant', 'cosine' or 'step'; got {schedule!r}.")
