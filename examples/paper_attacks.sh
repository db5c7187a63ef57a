#!/usr/bin/env bash
# The paper's attack evaluation (Figures 3 and 4): robust accuracy of the smoothed classifier under white-box PGD
# and C&W with noise-averaged gradients, and a transfer attack from a second model, over a row of attack sizes.
#
# Usage: bash examples/paper_attacks.sh CHECKPOINT [SOURCE_CHECKPOINT] [DATASET] [DATA_DIR]
# Defaults to the digits data set, so it runs on a CPU in a few minutes with a digits checkpoint.
set -euo pipefail
CKPT=${1:?usage: paper_attacks.sh CHECKPOINT [SOURCE_CHECKPOINT] [DATASET] [DATA_DIR]}
SOURCE=${2:-$CKPT}
DATASET=${3:-digits}
DATA=${4:-}
ARGS=(--checkpoint "$CKPT" --dataset "$DATASET" --max 200 --eot-samples 16 --sample-size 100 --overwrite)
[ -n "$DATA" ] && ARGS+=(--data-dir "$DATA")
art-stn attack "${ARGS[@]}" --attack pgd-l2 --eps 0.25,0.5,1,1.5,2 --out attack-pgd-l2.tsv
art-stn attack "${ARGS[@]}" --attack cw-l2 --eps 0.25,0.5,1,1.5,2 --max-iter 10 --out attack-cw-l2.tsv
art-stn attack "${ARGS[@]}" --attack transfer --source-checkpoint "$SOURCE" --eps 0.25,0.5,1,1.5,2 \
  --out attack-transfer.tsv
art-stn plot attack-pgd-l2.tsv attack-cw-l2.tsv attack-transfer.tsv --out attacks.png
