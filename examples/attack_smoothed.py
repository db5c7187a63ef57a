"""
Attack a smoothed classifier with ART's PGD (L2), Carlini-Wagner L2 and Boundary attacks, with gradients averaged
over the noise (expectation over transformation), and compare with its certificates.

Run: `python examples/attack_smoothed.py` (about a minute on a laptop CPU).
"""

import numpy as np
from art.attacks.evasion import BoundaryAttack, CarliniL2Method, ProjectedGradientDescent

from art_stn.data import load_digits
from art_stn.demo import train_digits

clf, _ = train_digits(gamma=1.0, sigma=0.5, epochs=15, verbose=False)
clf.set_params(eot_samples=16, sample_size=64)
_, (x_test, y_test) = load_digits()
x, y = x_test[:40], y_test[:40]


def accuracy(x_eval: np.ndarray) -> float:
    """Smoothed accuracy; an abstention (zero row) counts as wrong."""
    p = clf.predict(x_eval)
    return float(np.mean((p.argmax(1) == y[: len(x_eval)]) & (p.sum(1) > 0)))


print(f"clean smoothed accuracy: {accuracy(x):.2f}")
for eps in (0.5, 1.0):
    x_adv = ProjectedGradientDescent(clf, norm=2, eps=eps, eps_step=eps / 4, max_iter=5, verbose=False).generate(x, y=y)
    print(f"PGD-L2 eps={eps}: {accuracy(x_adv):.2f}")
x_cw = CarliniL2Method(clf, max_iter=3, verbose=False).generate(x[:5])
cw_size = np.linalg.norm((x_cw - x[:5]).reshape(5, -1), axis=1).mean()
print(f"C&W-L2 (5 digits): {accuracy(x_cw):.2f}, mean L2 perturbation {cw_size:.2f}")
x_b = BoundaryAttack(clf, targeted=False, max_iter=3, verbose=False).generate(x[:3])
print(f"Boundary (3 digits, unbounded size): {accuracy(x_b):.2f}")
pred, radius = clf.certify(x, n=500)
print(f"certified at L2 0.25 (Renyi): {np.mean((pred == y) & (radius >= 0.25)):.2f}")
