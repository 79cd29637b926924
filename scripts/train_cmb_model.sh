#!/usr/bin/env bash
# Train the shipped CMB model (all three stages) on the synthetic cohort, from scratch,
# with the public command line only:
#
#   bash scripts/train_cmb_model.sh [WORK_DIR]
#
# 1. cohorts, 1.5 mm anatomy (the benchmark's), randomized domain (tissue contrasts and
#    acquisitions drawn per subject from wide ranges): 60 SWI subjects (seeds 0-59) and
#    30 T2*-GRE subjects (seeds 60-89) for training; 12 SWI (seeds 100000-100011) and
#    6 T2*-GRE (100012-100017) for the thresholds;
# 2. one `cmb train` on both sequences, through the training engine, with acquisition
#    augmentation on every patch (docs/cmb.md): stage 1 U-Net, stage 2 examples from its
#    candidates, teacher, distilled student, thresholds. The model records both sequences.
#
# The shipped model is this script's result: in total stage 1 3600 steps (4 patches of
# 48^3), teacher 600 steps and student 1000 steps (32 patches of 24^3), one run from
# scratch. (The model it replaced had 3000 stage 1 steps in two phases, teacher 500,
# student 800, no augmentation.)
#
# Resumable: each network checkpoints into $WORK/checkpoints/cmb/<network> every 5 min;
# after a kill, run the same command again and it goes on from there (finished networks
# are not trained again). Prepared arrays (training volumes, stage 2 examples) are cached
# in $WORK/prepared.
#
# Time, measured on 2 CPU cores (AMD EPYC, AVX2: no bf16 units, so --precision auto runs
# fp32; bf16 is emulated there and 6-13x slower) while other jobs shared the CPU:
# stage 1 0.72 s/step, teacher 0.95 s/step, student 0.53 s/step -> about 43 + 9.5 + 9 =
# 61 min of steps; on top, the first run prepares the volumes (~13 s each, 2 processes,
# ~10 min), runs stage 1 on every training image for the stage 2 examples (~13 s each,
# ~20 min) and calibrates on the validation images (~17 s each, ~5 min). On a CPU with
# AMX / AVX512-BF16 or a GPU, auto picks bf16 and the steps take about half as long.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-${TMPDIR:-/tmp}/lesion-suite-cmb-training}"
STAGE1_STEPS="${STAGE1_STEPS:-3600}"
TEACHER_STEPS="${TEACHER_STEPS:-600}"
STUDENT_STEPS="${STUDENT_STEPS:-1000}"

synth() {  # synth FOLDER SEED N SEQUENCE
  if [ ! -f "$1/cmb_labels.csv" ]; then
    lesion-suite synth cmb --n "$3" --seed "$2" --spacing 1.5 --sequence "$4" \
      --domain randomized --workers 2 --out "$1"
  fi
}
synth "$WORK/train" 0 60 SWI
synth "$WORK/validation" 100000 12 SWI
synth "$WORK/train_t2star" 60 30 T2star
synth "$WORK/validation_t2star" 100012 6 T2star

lesion-suite cmb train \
  --table "$WORK/train/cmb_labels.csv" --table "$WORK/train_t2star/cmb_labels.csv" \
  --validation "$WORK/validation/cmb_labels.csv" \
  --validation "$WORK/validation_t2star/cmb_labels.csv" \
  --steps "$STAGE1_STEPS" --teacher-steps "$TEACHER_STEPS" --student-steps "$STUDENT_STEPS" \
  --precision auto --checkpoint "$WORK/checkpoints/cmb" --cache "$WORK/prepared" \
  --out LesionSuite/Models/cmb_shiva_distilled --overwrite
