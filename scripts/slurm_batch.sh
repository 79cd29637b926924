#!/usr/bin/env bash
# A cohort split over a SLURM job array: array task I runs shard I of N of
# `lesion-suite batch` (docs/batch.md). No task talks to another: each lists the same cohort,
# sorts the case ids and takes every N-th case from its own index.
#
#   sbatch --array=0-9 scripts/slurm_batch.sh 10 wmh /data/flair /scratch/wmh_out
#   sbatch --array=0-9 scripts/slurm_batch.sh 10 ich /data/ct_cases.csv /scratch/ich_out --force
#   # when the array is done (or to look at what is there so far, with --allow-missing):
#   lesion-suite batch-merge /scratch/wmh_out
#
# Arguments: SHARDS (N, the array's size), TASK (wmh, cmb or ich), INPUTS (a folder of
# images / DICOM series folders, or a CSV with case_id,path[,series]), OUT (one folder on a
# file system every node sees), then any option of `lesion-suite batch TASK` (--model,
# --t1, --sequence, --force, --device cuda ...). The array must count from 0 (--array=0-(N-1));
# N is given, not read from SLURM, so resubmitting one shard (`sbatch --array=3 ... 10 ...`)
# still runs shard 3 of 10.
#
# Resuming: a shard stopped by the time limit, a node failure or scancel keeps every case it
# finished; resubmitting the same command runs only the rest (and the case that was in
# flight). Failed cases are listed in the summary with their error and skipped by reruns;
# add --retry-failed once they are fixed.
#
# Environment: WORKERS (cases in parallel per shard, default 1: each worker gets the task's
# CPUs divided by WORKERS as torch threads), LESION_SUITE (the command, default
# `lesion-suite`; e.g. /opt/lesion-suite/.venv/bin/lesion-suite). Adjust the #SBATCH lines
# to your cluster: memory is about 1-2 GB per worker with the shipped models on CPU
# (docs/benchmarks.md), more with a GPU (--gres=gpu:1 and --device cuda).
#
#SBATCH --job-name=lesion-suite-batch
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --time=08:00:00
#SBATCH --output=lesion-suite-batch-%A_%a.log

set -euo pipefail

if [[ $# -lt 4 ]]; then
    echo "usage: sbatch --array=0-(N-1) $0 N TASK INPUTS OUT [batch options]" >&2
    exit 2
fi
SHARDS=$1
TASK=$2
INPUTS=$3
OUT=$4
shift 4
: "${SLURM_ARRAY_TASK_ID:?submit with sbatch --array=0-$((SHARDS - 1))}"
WORKERS=${WORKERS:-1}
LESION_SUITE=${LESION_SUITE:-lesion-suite}

echo "shard ${SLURM_ARRAY_TASK_ID}/${SHARDS} of $INPUTS on $(hostname), $WORKERS worker(s)"
exec "$LESION_SUITE" batch "$TASK" --inputs "$INPUTS" --out "$OUT" \
    --shard "${SLURM_ARRAY_TASK_ID}/${SHARDS}" --workers "$WORKERS" "$@"
