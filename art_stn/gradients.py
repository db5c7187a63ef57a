"""
The gradients of :class:`art_stn.STNClassifier` (a mixin of it): expectation over transformation (EoT), so ART's
white-box attacks see the smoothed classifier. `loss_gradient` and `class_gradient` average over `eot_samples`
noise draws in one batched backward pass; `compute_loss` is the noise-averaged loss they differentiate;
`get_activations` stays the base model's.

Layer 4 (the ART face). The mixin uses the estimator's `noise`, `scale`, `sample_size`, `eot_samples`, `_model`,
`_loss`, `_device` and the helpers of :class:`art_stn.prediction.SmoothedPredictionMixin` (`_check_x`, `_labels`,
`_logits`, `_generator`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from art_stn.noise import fill_noise
from art_stn.smoothing import spans

__all__ = ["NoiseAveragedGradientsMixin"]


class NoiseAveragedGradientsMixin:
    """
    `loss_gradient`, `class_gradient`, `compute_loss` and `get_activations` of :class:`art_stn.STNClassifier`.
    """

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
        return spans(n_inputs, batch_size // draws)

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
        Gradient of the smoothed classifier's logits `log s_c(x)`, the log of the noise-averaged softmax
        `s_c(x) = mean_i softmax(f(x + r_i))_c`, with respect to `x`: the scores `predict(x, logits=True)` returns,
        so that an attack combining scores and gradients (ART's Carlini-Wagner) follows one function. (The
        gradient of `s_c` itself is smaller by the factor `s_c`, which nearly stops such an attack on an unlikely
        class.)

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
            scores = torch.log(smoothed.clamp_min(torch.finfo(torch.float32).tiny))  # as predict(logits=True)
            if classes is None:
                for c in range(self.nb_classes):
                    (g,) = torch.autograd.grad(scores[:, c].sum(), x_grad, retain_graph=c < self.nb_classes - 1)
                    grads[start:end, c] = g.detach().cpu()
            else:
                picked = scores.gather(1, classes[start:end, None]).sum()
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
