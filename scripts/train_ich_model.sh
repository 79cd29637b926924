#!/usr/bin/env bash
# Train the shipped ICHWeakSeg model on the synthetic cohort, from scratch, with the public
# command line only:
#
#   bash scripts/train_ich_model.sh [WORK_DIR]
#
# Image-level labels train everything; no voxel label is read (the evaluation at the end
# is the only reader of the truth). Two stages, as the shipped model 2.0 was made:
#
# A. the slice classifier (with its CAM) on a standard-domain cohort (seeds 0-79, 5 mm
#    axial CT): `ich train --classifier-steps 1000 --segmenter-steps 600`. Classifiers
#    trained from scratch on the randomized cohort separate slices worse (validation
#    slice AUC 0.888 against 0.946 for this one; 2026-12-05, 240 scans, 2000 steps) and
#    gave Dice 0.452 / 0.312 on the standard / shifted benchmark against 0.53 / 0.46, so
#    the classifier is kept from this stage (docs/ich_models.md);
# B. the segmenter anew on the randomized cohort (seeds 0-119: per subject tissue and
#    blood densities, slice thickness and orientation, noise, HU calibration drawn from
#    wide ranges), from stage A's classifier kept as it is (`--init A --classifier-steps
#    0`): its CAMs refined in HU, emptied where the labels say "no haemorrhage", are the
#    pseudo-masks; 3000 steps; thresholds from the validation cohort's labels; the
#    model shows LayerCAM of the classifier's encoder stage 2 (`--cam-layer-stage 2`, 8 mm
#    cells; the pseudo-masks still come from the last stage's Grad-CAM: docs/ich.md);
# C. the scan-level threshold for sensitivity 0.95 on 192 validation scans, 33 of them
#    without blood (bench/ich_scan_calibration.py; image-level labels only);
# D. `ich evaluate` on the validation cohort records every stage in the model card.
#
# Checkpoints go to $WORK/checkpoints/<stage>; a stopped run continues where it was, to
# the same weights, when the same command is run again. Measured on a 2-core AMD EPYC
# with AVX512-BF16 (`--precision auto` = bf16): stage B 8.5 min (3000 steps 5.5 min,
# pseudo-masks 2 min), stage A about 10 min, the cohorts 8 min, C and D 6 min.
#
# The model lands in $WORK/models/ich_weakseg_cam; compare it on both benchmark sets
# (bench/run_benchmark.py --method ich_weakseg --set standard|shifted) before copying it
# over LesionSuite/Models/ich_weakseg_cam.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # the second core draws the next batch
WORK="${1:-${TMPDIR:-/tmp}/lesion-suite-ich-training}"
CACHE="$WORK/cache"
MODEL="$WORK/models/ich_weakseg_cam"

cohort() {  # folder, then the `synth ich` options
  local out="$1"; shift
  [ -f "$out/ich_labels.csv" ] || lesion-suite synth ich --spacing 1.5 --workers 2 --out "$out" "$@"
}
cohort "$WORK/standard" --n 80 --seed 0
cohort "$WORK/train" --n 120 --seed 0 --domain randomized
cohort "$WORK/validation" --n 32 --seed 100000 --domain randomized
cohort "$WORK/validation_scan" --n 160 --seed 100032 --domain randomized

lesion-suite ich train --synthetic "$WORK/standard" --validation "$WORK/validation" \
  --classifier-steps 1000 --segmenter-steps 600 --seed 0 --precision auto \
  --checkpoint "$WORK/checkpoints/stage_a" --cache "$CACHE" --out "$WORK/models/stage_a" \
  --overwrite
lesion-suite ich train --synthetic "$WORK/train" --validation "$WORK/validation" \
  --init "$WORK/models/stage_a" --classifier-steps 0 --segmenter-steps 3000 --seed 0 \
  --cam-layer-stage 2 --precision auto --checkpoint "$WORK/checkpoints/stage_b" --cache "$CACHE" \
  --out "$WORK/models/stage_b" --overwrite
python bench/ich_scan_calibration.py --cohort "$WORK/validation" \
  --cohort "$WORK/validation_scan" --model "$WORK/models/stage_b" --save "$MODEL"
lesion-suite ich evaluate "$WORK/validation" --model "$MODEL" --device cpu --precision auto \
  --record --json "$WORK/validation_evaluation.json"
