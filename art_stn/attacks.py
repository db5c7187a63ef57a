"""
AutoAttack against the smoothed classifier, in the expectation-over-transformation (EoT) form its authors recommend
for randomized defences: APGD-CE and APGD-DLR with gradients and losses averaged over the noise (Croce and Hein,
ICML 2020, "rand" version).

ART's `AutoAttack` with its default attack list cannot do this for a smoothed classifier: its APGD attacks wrap the
base model in a plain `PyTorchClassifier` (no noise, no EoT) and refuse estimators whose `predict` returns
probabilities. :func:`eot_autoattack` builds the attack list on :class:`EoTLogits`, a view of the smoothed classifier
whose logits, losses and gradients are averaged over `eot_samples` noise draws; ART's `AutoAttack` then runs it and
judges success with the smoothed classifier's own `predict`. Needs the `multiprocess` package
(`pip install art-stn[attacks]`), which ART's `AutoAttack` imports.

| Paper link: https://arxiv.org/abs/2003.01690 (Croce and Hein 2020)
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import torch

from art_stn.classifier import STNClassifier, check_int

__all__ = ["DifferenceLogitsRatioLoss", "EoTLogits", "eot_autoattack"]

_REDUCTIONS = ("none", "mean", "sum")


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """
    :param values: Per-example values.
    :param reduction: `"none"`, `"mean"` or `"sum"`.
    :return: The reduced values.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"`reduction` must be one of {_REDUCTIONS}; got {reduction!r}.")
    return values if reduction == "none" else getattr(values, reduction)()


class DifferenceLogitsRatioLoss(torch.nn.Module):
    """
    Croce and Hein's difference-of-logits-ratio loss, `-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)` with `z_pi1 >=
    z_pi2 >= ...` the sorted logits: invariant to shifting and scaling the logits. Needs at least 3 classes.

    | Paper link: https://arxiv.org/abs/2003.01690
    """

    def __init__(self, reduction: str = "mean") -> None:
        """
        :param reduction: `"mean"`, `"sum"` or `"none"`.
        """
        super().__init__()
        _reduce(torch.zeros(1), reduction)
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        :param logits: Logits, shape `(B, K)` with `K >= 3`.
        :param target: Class indices `(B,)` or one-hot rows `(B, K)`.
        :return: The loss, reduced as `reduction` says.
        """
        if logits.shape[1] < 3:
            raise ValueError(f"the DLR loss needs at least 3 classes; got {logits.shape[1]}.")
        if target.ndim == 2:
            target = target.argmax(dim=1)
        target = target.long()[:, None]
        top = logits.sort(dim=1, descending=True).values
        z_y = logits.gather(1, target).squeeze(1)
        z_other = logits.scatter(1, target, float("-inf")).max(dim=1).values
        return _reduce(-(z_y - z_other) / (top[:, 0] - top[:, 2] + 1e-12), self.reduction)


class EoTLogits(STNClassifier):
    """
    The base classifier seen through the noise, for attacks that need logits and losses (APGD, AutoAttack):
    `predict` returns the logits averaged over `eot_samples` noisy copies, `compute_loss` the loss averaged over
    them and `loss_gradient` (from :class:`art_stn.STNClassifier`) the averaged gradient. Build it with
    :meth:`from_estimator` from a smoothed classifier (it shares the model); `certify` and the smoothed `predict` of
    that classifier are unchanged.
    """

    def _averaged(self, x: np.ndarray | torch.Tensor, y: Any | None, batch_size: int | None, reduction: str):
        """
        :param x: Inputs.
        :param y: Labels for the loss, or None for the logits.
        :param batch_size: Noisy copies per model call (default: automatic).
        :param reduction: Reduction of the loss over inputs.
        :return: Averaged logits `(N, nb_classes)`, or the loss per input (or reduced), as numpy.
        """
        x_t = self._check_x(x)
        labels = None if y is None else self._labels(y, x_t.shape[0])
        draws = self._eot()
        self._model.eval()
        out = []
        previous = getattr(self._loss, "reduction", None)
        try:
            if previous is not None:
                self._loss.reduction = "none"
            with torch.no_grad():
                for start, end in self._gradient_chunks(x_t.shape[0], draws, self._batch_size(batch_size)):
                    logits = self._logits(self._noisy_copies(x_t[start:end].to(self._device), draws))
                    if labels is None:
                        out.append(logits.view(end - start, draws, -1).mean(dim=1).cpu())
                    else:
                        loss = self._loss(logits, labels[start:end].repeat_interleave(draws))
                        out.append(loss.view(end - start, draws).mean(dim=1).cpu())
        finally:
            if previous is not None:
                self._loss.reduction = previous
        values = torch.cat(out)
        return values.numpy() if labels is None else _reduce(values, reduction).numpy()

    def predict(  # type: ignore[override]
        self, x: np.ndarray | torch.Tensor, batch_size: int | None = None, **kwargs: Any
    ) -> np.ndarray:
        """
        The logits averaged over `eot_samples` noisy copies of each input.

        :param x: Inputs of shape `(N, *input_shape)`.
        :param batch_size: Noisy copies per model call (default: automatic).
        :param kwargs: ART's extra keyword arguments, accepted and ignored.
        :return: Array of shape `(N, nb_classes)`, float32.
        """
        return self._averaged(x, None, batch_size, "none").astype(np.float32)

    def compute_loss(  # type: ignore[override]
        self,
        x: np.ndarray | torch.Tensor,
        y: np.ndarray | torch.Tensor,
        reduction: str = "none",
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """
        The loss averaged over `eot_samples` noisy copies of each input.

        :param x: Inputs of shape `(N, *input_shape)`.
        :param y: Labels, indices or one-hot.
        :param reduction: `"none"` (one value per input), `"mean"` or `"sum"`.
        :param batch_size: Noisy copies per model call (default: automatic).
        :param kwargs: Ignored extra keyword arguments.
        :return: The loss, as numpy.
        """
        return self._averaged(x, y, batch_size, reduction)


def eot_autoattack(
    classifier: STNClassifier,
    norm: int | float | str = 2,
    eps: float = 0.5,
    eps_step: float | None = None,
    max_iter: int = 100,
    nb_random_init: int = 1,
    eot_samples: int | None = None,
    batch_size: int = 32,
    verbose: bool = False,
) -> Any:
    """
    ART's `AutoAttack` with APGD-CE and APGD-DLR in their EoT form against a smoothed classifier: each APGD step uses
    the cross-entropy (or DLR) loss and its gradient averaged over `eot_samples` noisy copies (:class:`EoTLogits`),
    and an example counts as broken when the smoothed prediction of `classifier` (with abstention) is wrong. With two
    classes only APGD-CE runs (the DLR loss needs three).

    :param classifier: The smoothed classifier under attack.
    :param norm: The norm of the perturbation: 1, 2 or `np.inf`.
    :param eps: The perturbation size.
    :param eps_step: The initial APGD step (default `2 * eps`, as Croce and Hein).
    :param max_iter: APGD iterations per attack.
    :param nb_random_init: APGD restarts.
    :param eot_samples: Noise draws per loss and gradient (default: the classifier's `eot_samples`, else its
           `sample_size`).
    :param batch_size: Inputs per APGD batch.
    :param verbose: Progress bars.
    :return: An `art.attacks.evasion.AutoAttack`; call `generate(x, y=y)`.
    :raises TypeError: if `classifier` is not an :class:`art_stn.STNClassifier`.
    :raises ImportError: if `multiprocess` (the `attacks` extra) is not installed.
    """
    from art.attacks.evasion import AutoAttack, AutoProjectedGradientDescent

    if importlib.util.find_spec("multiprocess") is None:
        raise ImportError("ART's AutoAttack needs the `multiprocess` package: pip install 'art-stn[attacks]'.")
    if not isinstance(classifier, STNClassifier):
        raise TypeError(f"`classifier` must be an STNClassifier; got {type(classifier).__name__}.")
    if not (isinstance(eps, (int, float)) and np.isfinite(eps) and eps > 0):
        raise ValueError(f"`eps` must be a finite number > 0; got {eps!r}.")
    max_iter = check_int(max_iter, "max_iter", 1)
    nb_random_init = check_int(nb_random_init, "nb_random_init", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    settings = {} if eot_samples is None else {"eot_samples": check_int(eot_samples, "eot_samples", 1)}
    eps_step = 2.0 * eps if eps_step is None else float(eps_step)
    attacks = [
        AutoProjectedGradientDescent(
            EoTLogits.from_estimator(classifier, loss=loss, **settings),
            norm=norm,
            eps=float(eps),
            eps_step=eps_step,
            max_iter=max_iter,
            targeted=False,
            nb_random_init=nb_random_init,
            batch_size=batch_size,
            loss_type=None,
            verbose=verbose,
        )
        for loss in (torch.nn.CrossEntropyLoss(), DifferenceLogitsRatioLoss())[: 2 if classifier.nb_classes > 2 else 1]
    ]
    return AutoAttack(classifier, norm=norm, eps=float(eps), eps_step=eps_step, attacks=attacks, batch_size=batch_size)
