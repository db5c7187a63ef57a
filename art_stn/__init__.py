"""
art-stn: certified adversarial robustness with additive noise (Li, Wang, Chen, Carin, NeurIPS 2019) for the
Adversarial Robustness Toolbox (ART).

| Paper link: https://arxiv.org/abs/1809.03113

The public names below (`from art_stn import STNClassifier, STNTrainer`, ...) are imported on first use (PEP 562):
`import art_stn` alone loads neither torch nor ART, so `art-stn --help` answers at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what static tools see; at run time :func:`__getattr__` imports these on first use
    from art_stn.bounds import cohen_l2_radius, laplace_l1_radius, pixeldp_l2_radius, renyi_l2_radius
    from art_stn.certification import certify_counts
    from art_stn.classifier import CertifyReport, STNClassifier
    from art_stn.confidence import TopTwoBounds, abstain_pvalue, top_two_bounds
    from art_stn.smoothing import sample_counts
    from art_stn.trainer import ConsistencyTrainer, GaussianAugmentationTrainer, NoiseTrainer, STNTrainer

__version__ = "0.1.0"

#: Each public name and the module that defines it.
_PUBLIC = {
    "cohen_l2_radius": "art_stn.bounds",
    "laplace_l1_radius": "art_stn.bounds",
    "pixeldp_l2_radius": "art_stn.bounds",
    "renyi_l2_radius": "art_stn.bounds",
    "certify_counts": "art_stn.certification",
    "CertifyReport": "art_stn.classifier",
    "STNClassifier": "art_stn.classifier",
    "TopTwoBounds": "art_stn.confidence",
    "abstain_pvalue": "art_stn.confidence",
    "top_two_bounds": "art_stn.confidence",
    "sample_counts": "art_stn.smoothing",
    "STNTrainer": "art_stn.trainer",
    "GaussianAugmentationTrainer": "art_stn.trainer",
    "ConsistencyTrainer": "art_stn.trainer",
    "NoiseTrainer": "art_stn.trainer",
}

__all__ = [
    "CertifyReport",
    "ConsistencyTrainer",
    "GaussianAugmentationTrainer",
    "NoiseTrainer",
    "STNClassifier",
    "STNTrainer",
    "TopTwoBounds",
    "__version__",
    "abstain_pvalue",
    "certify_counts",
    "cohen_l2_radius",
    "laplace_l1_radius",
    "pixeldp_l2_radius",
    "renyi_l2_radius",
    "sample_counts",
    "top_two_bounds",
]


def __getattr__(name: str) -> Any:
    """
    Import a public name on first use (PEP 562) and keep it in the package's namespace.

    :param name: The attribute asked for.
    :return: The object it names.
    :raises AttributeError: if `name` is not a public name of art-stn.
    """
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'art_stn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """
    :return: The package's attributes, the lazily imported public names included.
    """
    return sorted({*globals(), *_PUBLIC})
