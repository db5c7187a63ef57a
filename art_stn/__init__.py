"""
art-stn: certified adversarial robustness with additive noise (Li, Wang, Chen, Carin, NeurIPS 2019) for the
Adversarial Robustness Toolbox (ART).

| Paper link: https://arxiv.org/abs/1809.03113
"""

from art_stn.bounds import cohen_l2_radius, laplace_l1_radius, pixeldp_l2_radius, renyi_l2_radius
from art_stn.certification import certify_counts
from art_stn.classifier import CertifyReport, STNClassifier
from art_stn.confidence import TopTwoBounds, abstain_pvalue, top_two_bounds
from art_stn.smoothing import sample_counts
from art_stn.trainer import STNTrainer

__version__ = "0.1.0"

__all__ = [
    "CertifyReport",
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
