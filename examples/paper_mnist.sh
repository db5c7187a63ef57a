#!/usr/bin/env bash
# The paper's MNIST experiments (Li et al. 2019, Table 1 and Figure 1): STN and Gaussian augmentation (gamma = 0)
# at sigma in {0.25, 0.5, 0.7, 1.0}, certified on the MNIST test set with n = 100,000, n0 = 100, alpha = 0.001.
#
# Usage: bash examples/paper_mnist.sh DATA_DIR [OUT_DIR]   (DATA_DIR holds MNIST/raw; add --download to the train
# lines on a machine with internet access). Needs the `vision` extra and a GPU for reasonable run times.
# Run times on one GPU: not measured yet (the sessions so far had none); certification costs
# 10,000 x 100,100 forward passes of the MNIST CNN per model.
set -euo pipefail
DATA=${1:?usage: paper_mnist.sh DATA_DIR [OUT_DIR]}
OUT=${2:-paper-mnist}
mkdir -p "$OUT"
for SIGMA in 0.25 0.5 0.7 1.0; do
  for GAMMA in 1.0 0.0; do
    TAG="sigma${SIGMA}-gamma${GAMMA}"
    art-stn train --dataset mnist --data-dir "$DATA" --model mnist-cnn --noise gaussian --sigma "$SIGMA" \
      --gamma "$GAMMA" --epochs 30 --batch-size 128 --lr 1e-3 --device cuda --out "$OUT/$TAG.pt" --resume
    art-stn certify --checkpoint "$OUT/$TAG.pt" --dataset mnist --data-dir "$DATA" --n 100000 --n0 100 \
      --alpha 0.001 --bound renyi --batch-size 4096 --device cuda --out "$OUT/$TAG.tsv" --resume
  done
  art-stn plot "$OUT/sigma${SIGMA}-gamma1.0.tsv" "$OUT/sigma${SIGMA}-gamma0.0.tsv" --out "$OUT/sigma${SIGMA}.png" \
    --radii 0.5,1.0,1.4,1.58,2.0
done
