"""
Certify a trained checkpoint and print certified accuracy under the Renyi, Cohen and PixelDP bounds.

Run: `python examples/certify_pretrained.py [--checkpoint stn.pt] [--n 1000] [--max 200]`
Without `--checkpoint` it first trains a small digits model (about 15 s on a laptop CPU) and certifies that.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np

from art_stn import STNClassifier
from art_stn.data import load_digits
from art_stn.demo import train_digits
from art_stn.evaluate import certified_accuracy, format_table
from art_stn.trainer import STNTrainer

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--checkpoint", default=None, help="checkpoint of art-stn train / STNTrainer (digits)")
parser.add_argument("--n", type=int, default=1000)
parser.add_argument("--max", type=int, default=200)
args = parser.parse_args()

checkpoint = args.checkpoint
if checkpoint is None:
    clf, _ = train_digits(gamma=1.0, sigma=0.5, epochs=15, verbose=False)
    checkpoint = Path(tempfile.mkdtemp()) / "digits.pt"
    STNTrainer(clf, gamma=1.0, metadata={"model": "digits-cnn", "dataset": "digits"}).save_checkpoint(checkpoint, 14)

clf = STNClassifier.load(checkpoint, device_type="cpu", seed=0)  # the model is rebuilt from the checkpoint
_, (x_test, y_test) = load_digits()
x, y = x_test[: args.max], y_test[: args.max]
report = clf.certify_report(x, n=args.n)
radii = [0.0, 0.25, 0.5, 0.75]
rows = {name: certified_accuracy(report.prediction, r, y, radii) for name, r in report.radii.items()}
print(format_table(rows, radii, title=f"certified accuracy, sigma={clf.scale:g}, n={args.n}"))
print(f"abstained on {np.mean(report.prediction < 0):.1%} of {len(y)} test digits")
