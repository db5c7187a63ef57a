"""
Quickstart: train a smoothed digits classifier with stability training, certify it, attack it with ART's PGD.

Run: `python examples/quickstart.py` (about a minute on a laptop CPU).
"""

import numpy as np
import torch
from art.attacks.evasion import ProjectedGradientDescent

from art_stn import STNClassifier, STNTrainer
from art_stn.data import load_digits
from art_stn.models import digits_cnn

(x_train, y_train), (x_test, y_test) = load_digits()
torch.manual_seed(0)
net = digits_cnn()
clf = STNClassifier(
    net,
    torch.nn.CrossEntropyLoss(),
    input_shape=(1, 8, 8),
    nb_classes=10,
    optimizer=torch.optim.Adam(net.parameters(), lr=2e-3),
    clip_values=(0.0, 1.0),
    noise="gaussian",
    scale=0.5,
    sample_size=100,
    alpha=0.001,
    device_type="cpu",
    seed=0,
)
STNTrainer(clf, gamma=2.0).fit(x_train, y_train, nb_epochs=20, batch_size=64, verbose=False)

x, y = x_test[:100], y_test[:100]
pred, radius = clf.certify(x, n=1000)
print(f"certified accuracy at L2 radius 0.25: {np.mean((pred == y) & (radius >= 0.25)):.2f}")

clf.set_params(eot_samples=16)
x_adv = ProjectedGradientDescent(clf, norm=2, eps=0.5, eps_step=0.1, max_iter=10, verbose=False).generate(x, y=y)
print(
    f"smoothed accuracy clean {np.mean(clf.predict(x).argmax(1) == y):.2f}, "
    f"under PGD L2 eps=0.5 {np.mean(clf.predict(x_adv).argmax(1) == y):.2f}"
)
