"""Does a hard-example fine-tune lift stage 1's recall? Fine-tune a CMB model's U-Net on
the bleeds it misses and the places it fools, keep its teacher and student, recalibrate
and save the result as a full CMB bundle.

    python bench/cmb_hard_examples.py --model DIR --table T [--table T2] --validation V
        [--validation V2] --cache DIR --out DIR [--steps 1200] [--lr 1e-3]
        [--stage2-steps TEACHER,STUDENT] [--floor 0.2] [--plain]

``--plain`` asks the other question, whether the U-Net was simply under-trained: the
fine-tune then draws its patches as the main run does (no hard-example pools), a warm
restart of the main run's cosine.

This is the hard-example phase of ``lesion-suite cmb train --hard-steps N`` applied to an
existing model. With ``--stage2-steps`` the model's teacher and student are fine-tuned
for that many steps on the stage 2 examples of the new U-Net's candidates (what a
training does after the hard-example phase); without, they stay the model's. The
fine-tunes checkpoints under ``--out/checkpoints`` (rerun
the command to resume); ``--out/model`` is the new bundle, ready for the benchmark, and
``--out/hard_examples.json`` records the training bleeds' peak probabilities under the
starting U-Net, the run and the calibration (stage 1 recall on the validation bleeds at the lowest
threshold, and each stage's figures at the chosen thresholds).
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from lesion_core.cmb.calibrate import calibrate
from lesion_core.cmb.fit import (CMBTrainConfig, _cached_examples,
                                 prepare_volumes, read_cohorts, train_stage2)
from lesion_core.cmb.model import CMBModel, load_cmb_model
from lesion_core.cmb.stage1 import hard_example_pools_of, train_stage1
from lesion_core.tasks import ModelCard

from cmb_student_size import cmb_experiment_parser


def peak_summary(peaks: list[np.ndarray]) -> dict:
    """Share of training bleeds whose U-Net peak is below 0.1 / 0.5, and their count."""
    allpeaks = np.concatenate(peaks) if peaks else np.zeros(0)
    return {"bleeds": int(len(allpeaks)),
            "peak_below_0.1": round(float((allpeaks < 0.1).mean()), 4),
            "peak_below_0.5": round(float((allpeaks < 0.5).mean()), 4)}


def main() -> None:
    parser = cmb_experiment_parser(__doc__.splitlines()[0], "CMB bundle to start from")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--stage2-steps", default="0,0", metavar="TEACHER,STUDENT")
    parser.add_argument("--floor", type=float, default=CMBTrainConfig().stage1_hard.hard_floor,
                        help="share of each hard-example pool's weight spread uniformly")
    parser.add_argument("--plain", action="store_true",
                        help="sample as the main run does instead of from hard-example pools")
    args = parser.parse_args()
    teacher_steps, student_steps = (int(n) for n in args.stage2_steps.split(","))

    model = load_cmb_model(args.model, device="cpu")
    config = CMBTrainConfig()
    # One name for the run's checkpoint folder, its `runs` entry and its training record.
    label = "stage1_plain" if args.plain else "stage1_hard"
    phase = replace(config.stage1_train if args.plain else config.stage1_hard,
                    hard_floor=args.floor,
                    optim=replace(config.stage1_hard.optim, steps=args.steps, lr=args.lr))
    train, validation = read_cohorts(args.table), read_cohorts(args.validation)
    volumes = prepare_volumes(train, config.stage1.candidates, args.cache)
    stage1_config = model.config.stage1
    # Built with --plain too: the training bleeds' peaks under the starting U-Net are the
    # run's record of what it set out to fix.
    pools = hard_example_pools_of(model.stage1, volumes, stage1_config, args.floor)
    before = peak_summary(pools.bleed_peaks)
    print("training bleeds before:", json.dumps(before), flush=True)
    stage1, run = train_stage1(volumes, stage1_config, phase, init=model.stage1,
                               checkpoint=args.out / "checkpoints" / label,
                               pools=None if args.plain else pools)
    teacher, student, runs = model.teacher, model.student, {label: run.summary()}
    if teacher_steps and student_steps:
        patches, labels = _cached_examples(stage1, train, volumes, config, args.cache, None)
        print(f"{len(labels)} stage 2 examples ({int(labels.sum())} bleeds)", flush=True)
        steps = lambda part, n: replace(part, optim=replace(part.optim, steps=n))  # noqa: E731
        stage2 = replace(config, teacher=steps(config.teacher, teacher_steps),
                         student=steps(config.student, student_steps),
                         student_channels=model.config.student_channels)
        teacher, student, stage2_runs = train_stage2(patches, labels, stage2,
                                                     args.out / "checkpoints", init=model)
        runs.update(stage2_runs, stage2_examples=int(len(labels)))
    del volumes
    calibrated, calibration = calibrate(stage1, student, validation, model.config, config)
    report = {"started_from": str(args.model), "runs": runs,
              "training_bleeds_before": before,
              "calibration": calibration}
    # The same model one step on: its card and training record stay, with this run added
    # (plain rounds accumulate: each starts from the last).
    own = ModelCard.of(model.metadata)
    training = {**own.training, "calibration": calibration}
    training[label] = [*own.training.get(label, []), report] if args.plain else report
    card = own.fine_tuned(training)
    CMBModel(None, stage1, student, teacher, calibrated, card).save(
        args.out / "model", overwrite=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hard_examples.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(calibration), flush=True)


if __name__ == "__main__":
    main()
