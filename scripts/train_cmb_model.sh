#!/usr/bin/env bash
# Train the shipped CMB model (all three stages) on the synthetic cohort, from scratch,
# with the public command line only:
#
#   bash scripts/train_cmb_model.sh [WORK_DIR]
#
# 1. cohorts, 1.5 mm anatomy (the benchmark's), usual acquisitions: 60 SWI subjects
#    (seeds 0-59) and 30 T2*-GRE subjects (seeds 60-89) for training; 12 SWI (seeds
#    100000-100011) and 6 T2*-GRE (100012-100017) for the thresholds;
# 2. phase 1: all stages on the SWI subjects (stage 1: 1500 steps);
# 3. phase 2: stage 1 goes on from phase 1 for 1500 more steps (a warm restart of its
#    learning-rate schedule) on SWI and T2*-GRE, then stage 2 (teacher, distilled student)
#    and the thresholds are made anew. The model records both sequences.
# The model lands in LesionSuite/Models/cmb_shiva_distilled. CPU, 2 cores: about 75 min.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-${TMPDIR:-/tmp}/lesion-suite-cmb-training}"
STAGE1_STEPS="${STAGE1_STEPS:-1500}"

synth() {  # synth FOLDER SEED N SEQUENCE
  if [ ! -f "$1/cmb_labels.csv" ]; then
    lesion-suite synth cmb --n "$3" --seed "$2" --spacing 1.5 --sequence "$4" --out "$1"
  fi
}
synth "$WORK/train" 0 60 SWI
synth "$WORK/validation" 100000 12 SWI
synth "$WORK/train_t2star" 60 30 T2star
synth "$WORK/validation_t2star" 100012 6 T2star

if [ ! -f "$WORK/phase1/metadata.json" ]; then
  lesion-suite cmb train --table "$WORK/train/cmb_labels.csv" \
    --validation "$WORK/validation/cmb_labels.csv" --sequence SWI --steps "$STAGE1_STEPS" \
    --cache "$WORK/prepared" --out "$WORK/phase1" --overwrite
fi
lesion-suite cmb train --init "$WORK/phase1" \
  --table "$WORK/train/cmb_labels.csv" --table "$WORK/train_t2star/cmb_labels.csv" \
  --validation "$WORK/validation/cmb_labels.csv" \
  --validation "$WORK/validation_t2star/cmb_labels.csv" --steps "$STAGE1_STEPS" \
  --cache "$WORK/prepared" --out LesionSuite/Models/cmb_shiva_distilled --overwrite
