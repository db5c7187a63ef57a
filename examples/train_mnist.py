"""
Train the paper's MNIST CNN with stability training and certify a slice of the test set.

Run: `python examples/train_mnist.py [--data-dir DATA] [--sigma 0.7] [--epochs 30] [--device cuda]`
Without --data-dir it reads the real MNIST from art-stn's cache (`art-stn data mnist` fills it once); DATA holds
MNIST in torchvision's layout (MNIST/raw/*-ubyte). Training follows the reference code: Adam 1e-3, batch 64.
"""

import argparse

import numpy as np
import torch

from art_stn import STNClassifier, STNTrainer
from art_stn.data import load_mnist
from art_stn.models import mnist_cnn

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data-dir", default=None)
parser.add_argument("--download", action="store_true")
parser.add_argument("--sigma", type=float, default=0.7)
parser.add_argument("--gamma", type=float, default=1.0)
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--n", type=int, default=10_000)
parser.add_argument("--max", type=int, default=500)
parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
parser.add_argument("--out", default="mnist-stn.pt")
args = parser.parse_args()

x_train, y_train = load_mnist(args.data_dir, train=True, download=args.download)
x_test, y_test = load_mnist(args.data_dir, train=False, download=args.download)
torch.manual_seed(0)
net = mnist_cnn()
clf = STNClassifier(
    net,
    torch.nn.CrossEntropyLoss(),
    (1, 28, 28),
    10,
    optimizer=torch.optim.Adam(net.parameters(), lr=1e-3),
    clip_values=(0.0, 1.0),
    scale=args.sigma,
    seed=0,
    device_type="gpu" if args.device == "cuda" else "cpu",
)
STNTrainer(clf, gamma=args.gamma, metadata={"model": "mnist-cnn", "dataset": "mnist"}).fit(
    x_train,
    y_train,
    nb_epochs=args.epochs,
    batch_size=64,
    validation_data=(x_test[:1000], y_test[:1000]),
    checkpoint=args.out,
)
pred, radius = clf.certify(x_test[: args.max], n=args.n)
y = y_test[: args.max]
for r in (0.0, 0.5, 1.0, 1.4, 1.58):
    print(f"certified accuracy at L2 {r}: {np.mean((pred == y) & (radius >= r)):.3f}")
