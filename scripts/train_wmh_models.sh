#!/usr/bin/env bash
# Train the two shipped WMH models (and the benchmark's voxel-label reference) on the
# synthetic cohort, from scratch, with the public command line only:
#
#   bash scripts/train_wmh_models.sh [WORK_DIR]
#
# 1. a training cohort: seeds 0-159 (training range), 2 mm anatomy, usual acquisitions;
# 2. FLAIR DualTasker from the ARWMC ratings only (registration to MNI for every image);
# 3. T1 mode from the 5 mm thick-slice FLAIR rater labels (known synthetic transform);
# 4. the benchmark's upper reference (the same network fitted to voxel truth; not shipped).
# Models land in LesionSuite/Models/ and bench/models/. CPU, 2 cores: about 1 hour.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-${TMPDIR:-/tmp}/lesion-suite-wmh-training}"
N_SUBJECTS="${N_SUBJECTS:-160}"
FLAIR_STEPS="${FLAIR_STEPS:-1000}"
T1_STEPS="${T1_STEPS:-600}"
REFERENCE_STEPS="${REFERENCE_STEPS:-800}"

if [ ! -f "$WORK/cohort/wmh_labels.csv" ]; then
  lesion-suite synth wmh --n "$N_SUBJECTS" --seed 0 --size medium --out "$WORK/cohort"
fi
lesion-suite wmh train --synthetic "$WORK/cohort" --steps "$FLAIR_STEPS" --seed 0 \
  --out LesionSuite/Models/wmh_flair_dualtasker --overwrite
# The T1 mode's brain mask and atlas come from the cohort's known transform (its
# supervision is the thick labels; the atlas only places the working grid).
lesion-suite wmh train --t1 --synthetic "$WORK/cohort" --known-transform --steps "$T1_STEPS" \
  --seed 0 --out LesionSuite/Models/wmh_t1_thickslice --overwrite
python bench/train_wmh_reference.py --cohort "$WORK/cohort" --steps "$REFERENCE_STEPS" \
  --out bench/models/wmh_voxel_reference
