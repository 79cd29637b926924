#!/usr/bin/env bash
# Train the shipped CMB model (all three stages) on the synthetic cohort, from scratch,
# with the public command line only:
#
#   bash scripts/train_cmb_model.sh [WORK_DIR]
#
# 1. a training cohort (seeds 0-59) and a validation cohort (seeds 100000-100011) of SWI
#    subjects, 1.5 mm anatomy (the benchmark's), usual acquisitions;
# 2. stage 1 U-Net on patches, stage 2 teacher then distilled student on the stage 1
#    candidates, thresholds calibrated on the validation cohort; one bundle.
# The model lands in LesionSuite/Models/cmb_shiva_distilled. CPU, 2 cores: about 40 min.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-${TMPDIR:-/tmp}/lesion-suite-cmb-training}"
N_SUBJECTS="${N_SUBJECTS:-60}"
STAGE1_STEPS="${STAGE1_STEPS:-1500}"

if [ ! -f "$WORK/train/cmb_labels.csv" ]; then
  lesion-suite synth cmb --n "$N_SUBJECTS" --seed 0 --spacing 1.5 --sequence SWI --out "$WORK/train"
fi
if [ ! -f "$WORK/validation/cmb_labels.csv" ]; then
  lesion-suite synth cmb --n 12 --seed 100000 --spacing 1.5 --sequence SWI --out "$WORK/validation"
fi
lesion-suite cmb train --table "$WORK/train/cmb_labels.csv" \
  --validation "$WORK/validation/cmb_labels.csv" --steps "$STAGE1_STEPS" \
  --cache "$WORK/prepared" --out LesionSuite/Models/cmb_shiva_distilled --overwrite
