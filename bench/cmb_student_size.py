"""How wide must the CMB student be to keep its teacher's accuracy? Distil students of
several widths from one model's teacher, calibrate and save each as a full CMB bundle.

    python bench/cmb_student_size.py --model DIR --table T [--table T2] --validation V
        [--validation V2] --cache DIR --out DIR [--widths 8,16 16,32 16,32,64]
        [--steps 5000] [--lr LR] [--schedule cosine] [--fine-tune] [--shift 2]

The stage 1 U-Net and the teacher are the model's own; the stage 2 examples are the
training's (from ``--cache`` when a training with these tables prepared them there), so
each student differs from the shipped one only in its width and steps. Each student
checkpoints under ``--out`` (rerun the command to resume) and is saved as
``--out/student_<widths>``, ready for the benchmark; ``--out/student_size.json`` records
its parameters, distillation time per step, calibration and time per candidate.
``--fine-tune`` starts from the model's own student instead of a fresh one (its width
only), e.g. to let a student distilled at a constant rate settle along a cosine
(``--lr 1e-3 --schedule cosine``: how version 1.1 of the shipped model was made); the
result keeps the model's card, one version on, with the fine-tune in
``training.student_fine_tune`` (earlier ones in ``training.earlier_student_fine_tunes``).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from lesion_core.cmb.calibrate import calibrate
from lesion_core.cmb.discriminator import distil_student, parameter_count, predict_with_flips
from lesion_core.cmb.fit import (DESCRIPTION, CMBTrainConfig, _cached_examples,
                                 prepare_volumes, read_cohorts)
from lesion_core.cmb.model import CMBModel, load_cmb_model
from lesion_core.tasks import ModelCard


def ms_per_candidate(net: torch.nn.Module, repeats: int = 5, n: int = 64) -> float:
    """Median time (ms) of the pipeline's flip-averaged prediction per 24^3 candidate."""
    patches = torch.rand(n, 1, 24, 24, 24, generator=torch.Generator().manual_seed(0))
    predict_with_flips(net, patches[:2])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict_with_flips(net, patches)
        times.append((time.perf_counter() - start) * 1000 / n)
    return statistics.median(times)


def cmb_experiment_parser(description: str, model_help: str) -> argparse.ArgumentParser:
    """The options every CMB experiment on a trained model takes: the model, the training
    and validation cohort tables (repeatable), the training's prepared arrays, an output
    folder."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", required=True, help=model_help)
    parser.add_argument("--table", action="append", required=True)
    parser.add_argument("--validation", action="append", required=True)
    parser.add_argument("--cache", required=True, help="the training's prepared arrays")
    parser.add_argument("--out", required=True, type=Path)
    return parser


def main() -> None:
    parser = cmb_experiment_parser(__doc__.splitlines()[0], "CMB bundle with a teacher")
    parser.add_argument("--widths", nargs="+", default=["8,16", "16,32", "16,32,64"])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the training's)")
    parser.add_argument("--schedule", help="learning-rate schedule (default: the training's)")
    parser.add_argument("--shift", type=int, default=0,
                        help="move each training patch by up to this many voxels per axis")
    parser.add_argument("--fine-tune", action="store_true",
                        help="start from the model's own student (of its width)")
    args = parser.parse_args()

    model = load_cmb_model(args.model, device="cpu")
    if model.teacher is None:
        parser.error(f"{args.model} holds no teacher to distil from")
    config = CMBTrainConfig()
    train, validation = read_cohorts(args.table), read_cohorts(args.validation)
    volumes = prepare_volumes(train, config.stage1.candidates, args.cache)
    patches, labels = _cached_examples(model.stage1, train, volumes, config, args.cache, None)
    del volumes
    print(f"{len(labels)} stage 2 examples ({int(labels.sum())} bleeds)", flush=True)
    given = config.student.optim
    optim = replace(given, steps=args.steps, lr=args.lr or given.lr,
                    schedule=args.schedule or given.schedule)
    student_config = replace(config.student, optim=optim, shift_voxels=args.shift)
    record_file = args.out / "student_size.json"
    records = json.loads(record_file.read_text()) if record_file.exists() else {}
    for text in args.widths:
        widths = tuple(int(w) for w in text.split(","))
        name = ("student_" + "-".join(map(str, widths)) + ("_fine_tuned" if args.fine_tune else "")
                + (f"_shift{args.shift}" if args.shift else ""))
        if args.fine_tune and widths != tuple(model.config.student_channels):
            parser.error(f"--fine-tune keeps the model's student width "
                         f"{model.config.student_channels}, not {widths}")
        init = copy.deepcopy(model.student) if args.fine_tune else None
        student, run = distil_student(patches, labels, model.teacher, student_config,
                                      init=init, checkpoint=args.out / "checkpoints" / name,
                                      channels=widths)
        base = replace(model.config, student_channels=widths)
        calibrated, calibration = calibrate(model.stage1, student, validation, base, config)
        report = {"student_channels": list(widths), "distilled_from": str(args.model),
                  "fine_tuned_from_its_student": bool(args.fine_tune),
                  "stage2_examples": int(len(labels)), "student": run.summary(),
                  "student_optim": asdict(optim), "calibration": calibration}
        card = ModelCard("cmb_shiva_distilled", description=DESCRIPTION, training=report)
        if args.fine_tune:  # the same model one step on: its card and training record stay
            own = ModelCard.of(model.metadata)
            before = own.training.get("student_fine_tune")
            earlier = own.training.get("earlier_student_fine_tunes", []) + ([before] if before else [])
            card = own.fine_tuned({**own.training, "student_fine_tune": report,
                                   "earlier_student_fine_tunes": earlier,
                                   "calibration": calibration})
        CMBModel(None, model.stage1, student, model.teacher, calibrated, card).save(
            args.out / name, overwrite=True)
        records[name] = {"parameters": parameter_count(student),
                         "s_per_step": round(run.wall_s / max(run.steps, 1), 3),
                         "ms_per_candidate": round(ms_per_candidate(student), 2),
                         **report}
        args.out.mkdir(parents=True, exist_ok=True)
        record_file.write_text(json.dumps(records, indent=1))
        print(name, json.dumps(records[name]["calibration"]["after_stage2"]), flush=True)
    print(json.dumps({"teacher_ms_per_candidate": round(ms_per_candidate(model.teacher), 2)}))


if __name__ == "__main__":
    main()
