#!/usr/bin/env bash
# The paper's CIFAR-10 experiment (Table 1: STN 65.6% certified at L2 36/255 with 80.5% clean accuracy):
# the 7-conv CIFAR-10 CNN trained with STN at sigma = 100/255, certified on every 20th test image.
#
# Usage: bash examples/paper_cifar10.sh DATA_DIR [OUT_DIR]   (DATA_DIR holds cifar-10-batches-py).
# Run times: this page publishes none for this script, which is meant for a GPU.
set -euo pipefail
DATA=${1:?usage: paper_cifar10.sh DATA_DIR [OUT_DIR]}
OUT=${2:-paper-cifar10}
SIGMA=$(python -c "print(100/255)")
mkdir -p "$OUT"
for GAMMA in 1.0 0.0; do
  art-stn train --dataset cifar10 --data-dir "$DATA" --model cifar10-cnn --sigma "$SIGMA" --gamma "$GAMMA" \
    --epochs 100 --batch-size 128 --lr 1e-3 --device cuda --out "$OUT/gamma$GAMMA.pt" --resume
  art-stn certify --checkpoint "$OUT/gamma$GAMMA.pt" --dataset cifar10 --data-dir "$DATA" --n 100000 --n0 100 \
    --alpha 0.001 --skip 20 --batch-size 4096 --device cuda --out "$OUT/gamma$GAMMA.tsv" --resume
done
art-stn plot "$OUT/gamma1.0.tsv" "$OUT/gamma0.0.tsv" --out "$OUT/cifar10.png" --radii 0.0706,0.1412,0.25,0.5
