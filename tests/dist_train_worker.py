"""Run under torchrun by tests/test_distributed.py: one DDP epoch of STN (or the method named by the second argument:
stn, consistency) on digits, then save this rank's weights."""

import sys
from pathlib import Path

import torch

from art_stn import STNClassifier, STNTrainer
from art_stn.data import load_digits
from art_stn.distributed import init_from_env
from art_stn.models import digits_cnn
from art_stn.trainer import ConsistencyTrainer

out = Path(sys.argv[1])
ctx = init_from_env("cpu")
torch.manual_seed(100 + ctx.rank)  # different initial weights per rank: DDP must broadcast rank 0's
model = digits_cnn()
clf = STNClassifier(
    model,
    torch.nn.CrossEntropyLoss(),
    (1, 8, 8),
    10,
    optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
    scale=0.5,
    seed=0,
    device_type="cpu",
)
(x, y), _ = load_digits()
method = sys.argv[2] if len(sys.argv) > 2 else "stn"
trainer = ConsistencyTrainer(clf, lbd=5.0, seed=3) if method == "consistency" else STNTrainer(clf, gamma=1.0, seed=3)
history = trainer.fit(x[:300], y[:300], nb_epochs=1, batch_size=32, verbose=False, checkpoint=out / "ckpt.pt")
torch.save({"state": clf.model.state_dict(), "steps": len(history)}, out / f"rank{ctx.rank}.pt")
