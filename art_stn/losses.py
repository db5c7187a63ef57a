"""
The training losses of certified training, as pure functions of logits (torch only): Gaussian augmentation (Cohen et
al. 2019), stability training (STN, Li et al. 2019) and consistency regularization (Jeong & Shin 2020). The trainers
of :mod:`art_stn.trainer` draw the noise, run the model and call them.

| Paper links: https://arxiv.org/abs/1902.02918, https://arxiv.org/abs/1809.03113, https://arxiv.org/abs/2006.04062

Layer 1: torch only.
"""

from __future__ import annotations

import torch

__all__ = ["consistency_loss", "gaussian_augmentation_loss", "stability_loss"]


def gaussian_augmentation_loss(noisy_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """
    Gaussian augmentation's loss (Cohen et al. 2019): `CE(f(x + r), y)`, averaged over the batch.

    :param noisy_logits: Logits `f(x + r)` of shape `(B, K)`.
    :param y: Class indices of shape `(B,)`.
    :return: The scalar loss.
    """
    return torch.nn.functional.cross_entropy(noisy_logits, y)


def stability_loss(
    clean_logits: torch.Tensor,
    noisy_logits: torch.Tensor,
    y: torch.Tensor,
    gamma: float,
    detach_target: bool = False,
) -> torch.Tensor:
    """
    STN's loss (Li et al. 2019): `CE(f(x), y) + gamma * CE(softmax f(x), f(x + r))`, averaged over the batch.

    :param clean_logits: Logits `f(x)` of shape `(B, K)`.
    :param noisy_logits: Logits `f(x + r)` of shape `(B, K)`.
    :param y: Class indices of shape `(B,)`.
    :param gamma: Weight of the stability term.
    :param detach_target: No gradient through the clean softmax (the reference code's variant).
    :return: The scalar loss.
    """
    target = torch.softmax(clean_logits, dim=1)
    if detach_target:
        target = target.detach()
    stability = -(target * torch.log_softmax(noisy_logits, dim=1)).sum(dim=1).mean()
    return torch.nn.functional.cross_entropy(clean_logits, y) + gamma * stability


def consistency_loss(noisy_logits: torch.Tensor, y: torch.Tensor, m: int, lbd: float, eta: float = 0.5) -> torch.Tensor:
    """
    Consistency regularization's loss (Jeong & Shin 2020, their `loss='default'`), averaged over the batch:
    `(1/m) sum_i CE(f(x + r_i), y) + lbd (1/m) sum_i KL(p_hat || softmax f(x + r_i)) + eta H(p_hat)` with
    `p_hat = (1/m) sum_i softmax f(x + r_i)`. Gradients flow through `p_hat` (it is not detached), as in their code.

    :param noisy_logits: Logits of the `m` noisy copies stacked copy by copy: shape `(m * B, K)`, rows
           `i * B ... (i + 1) * B - 1` are `f(x + r_i)`.
    :param y: Class indices of shape `(B,)`.
    :param m: Number of noisy copies per input.
    :param lbd: Weight of the consistency (KL) term.
    :param eta: Weight of the entropy term.
    :return: The scalar loss.
    """
    batch = len(y)
    if noisy_logits.shape[0] != m * batch:
        raise ValueError(f"`noisy_logits` must have m * B = {m * batch} rows; got {noisy_logits.shape[0]}.")
    xent = torch.nn.functional.cross_entropy(noisy_logits, y.repeat(m))
    log_probs = torch.log_softmax(noisy_logits, dim=1).view(m, batch, -1)
    p_hat = log_probs.exp().mean(dim=0)
    log_p_hat = torch.log(p_hat.clamp(min=1e-20))
    kl = (p_hat * (log_p_hat - log_probs)).sum(dim=2).mean(dim=0)  # (1/m) sum_i KL(p_hat || p_i), per input
    entropy = -(p_hat * log_p_hat).sum(dim=1)
    return xent + (lbd * kl + eta * entropy).mean()
