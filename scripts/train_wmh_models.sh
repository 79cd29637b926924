#!/usr/bin/env bash
# Train the two shipped WMH models (and the benchmark's voxel-label reference) on the
# synthetic cohort, from scratch, with the public command line only:
#
#   bash scripts/train_wmh_models.sh [WORK_DIR]
#
# 1. a training cohort: seeds 0-159 (training range), 2 mm anatomy, usual acquisitions;
# 2. FLAIR DualTasker from the ARWMC ratings only;
# 3. T1 mode from the 5 mm thick-slice FLAIR rater labels;
# 4. the benchmark's upper reference (the same network fitted to voxel truth; not shipped).
# Models land in LesionSuite/Models/ and bench/models/. CPU, 2 cores: about 1 hour.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-${TMPDIR:-/tmp}/lesion-suite-wmh-training}"
N_SUBJECTS="${N_SUBJECTS:-160}"
FLAIR_STEPS="${FLAIR_STEPS:-800}"
T1_STEPS="${T1_STEPS:-300}"
REFERENCE_STEPS="${REFERENCE_STEPS:-500}"

if [ ! -f "$WORK/cohort/wmh_labels.csv" ]; then
  lesion-suite synth wmh --n "$N_SUBJECTS" --seed 0 --size medium --out "$WORK/cohort"
fi
# Brain masks and ARWMC atlases of the training subjects come from the cohort's known
# synthetic transform (--known-transform): registering 160 images costs ~30 min on 2 cores.
# No lesion label is read either way; prediction and the benchmark register every image.
lesion-suite wmh train --synthetic "$WORK/cohort" --known-transform --steps "$FLAIR_STEPS" \
  --seed 0 --out LesionSuite/Models/wmh_flair_dualtasker --overwrite
lesion-suite wmh train --t1 --synthetic "$WORK/cohort" --known-transform --steps "$T1_STEPS" \
  --seed 0 --out LesionSuite/Models/wmh_t1_thickslice --overwrite
python bench/train_wmh_reference.py --cohort "$WORK/cohort" --steps "$REFERENCE_STEPS" \
  --out bench/models/wmh_voxel_reference
