"""``lesion-suite demo``: the main job on built-in data, end to end.

The demo runs every pipeline that exists. Today that is, for one synthetic subject of
each kind (FLAIR + T1 with WMH, SWI with microbleeds, CT with haemorrhage): generate it
with its ground truth, run the task's classical baseline and the shipped learned models
(WMH: DualTasker on FLAIR with ARWMC ratings, and the T1 mode; CMB: the three-stage
detector; ICH: the CAM-based weakly supervised model), score them with the papers' metrics, and write images, label maps and a
report. Then the bundled real T1 (validate, reorient, resample, T1-mode WMH with volumes
per zone), a reader's ARWMC rating and a reader's accept/reject/add decisions on the
microbleed candidates in a feedback store. ICH: the weakly supervised segmentation with
its class activation map. Last, an HTML report (:mod:`lesion_core.report`) of each learned
model's result (written as ``predict`` writes it, to ``predictions/<subject id>``) and of
the real T1's, and the cohort page over them (``cohort_report.html``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..feedback import FeedbackStore
from ..io import read_volume, write_volume
from ..jsonable import json_safe
from ..tasks import load_model
from ..validation import Modality, validate_image
from .info import describe_volume
from .progress_bar import ProgressBar

#: The real T1 shipped with the repository's test data (MIT licence, see its LICENSE file).
BUNDLED_T1 = Path(__file__).resolve().parents[3] / "Testing" / "Data" / "real" / \
    "t1_deep-T1-WMH_example.nii.gz"
#: The demo's subjects come from the validation seed range (never a benchmark subject).
DEMO_SEED = 100_000


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run the pipelines that exist on built-in data")
    parser.add_argument("--out", default="demo_output", help="output folder (default: %(default)s)")
    parser.add_argument("--input", default=str(BUNDLED_T1), help="real image for the I/O part (default: the bundled real T1)")
    parser.add_argument("--spacing", type=float, default=2.0,
                        help="voxel size (mm) of the synthetic subjects (default %(default)s)")
    parser.set_defaults(run=run)


def _wmh_step(subject, folder: Path) -> tuple[dict, dict]:
    """Baseline, then the shipped DualTasker (FLAIR, ratings) and T1-mode models; the
    DualTasker's result is also written to ``folder`` as ``wmh predict`` writes it."""
    from ..baselines import segment_wmh_threshold
    from ..metrics import segmentation_scores
    from ..output_folder import publish
    from ..wmh.predict import predict, write_prediction
    truth = subject.labels["FLAIR"]["wmh"]
    baseline = segment_wmh_threshold(subject.images["FLAIR"])
    flair = predict(subject.images["FLAIR"], load_model("wmh"))
    t1 = predict(subject.images["T1"], load_model("wmh", kind="wmh_t1"))
    t1_dice = segmentation_scores(t1.labels, subject.labels["T1"]["wmh"]).dice
    publish(folder, lambda staging: write_prediction(
        flair, staging, image_path=str(_image_file(folder, "FLAIR"))))
    facts = {"arwmc_total_truth": subject.targets["arwmc_total"],
             "arwmc_total_dualtasker": flair.total,
             "wmh_ml_truth": round(subject.targets["wmh_volume_ml"], 2),
             "wmh_ml_dualtasker": round(flair.lesion_ml, 2),
             "dice_baseline": segmentation_scores(baseline, truth).dice,
             "dice_dualtasker": segmentation_scores(flair.labels, truth).dice,
             "dice_t1_mode": t1_dice,
             "rating_segmentation_agreement": flair.agreement,
             "arwmc_levels_dualtasker": flair.levels,
             "arwmc_levels_truth": subject.targets["arwmc"]}
    return {"wmh_baseline": baseline, "wmh_dualtasker": flair.labels,
            "wmh_dualtasker_activation": flair.activation, "wmh_t1_mode": t1.labels}, facts


def _cmb_step(subject, folder: Path) -> tuple[dict, dict]:
    """LoG baseline, then the shipped three-stage detector (its result also written to
    ``folder`` as ``cmb predict`` writes it); each candidate with the decision a reader
    who knows the truth would make (accept within 5 mm of a true microbleed, else reject;
    add what no candidate found)."""
    from ..baselines import detect_cmb_log
    from ..cmb.evaluate import case_counts, true_centres
    from ..cmb.predict import prediction_json, predict_cmb, write_prediction
    from ..output_folder import publish
    from ..metrics import detect_by_overlap
    name = subject.primary_modality
    truth = subject.labels[name]["cmb"]
    predicted, candidates = detect_cmb_log(subject.images[name])
    counts = detect_by_overlap(predicted.array, truth.array, relabel=False)
    model = load_model("cmb")
    result = predict_cmb(subject.images[name], model, name, allow_other_sequence=True)
    publish(folder, lambda staging: write_prediction(result, staging,
                                                     str(_image_file(folder, name))))
    stages = {stage: c.as_dict() for stage, c in case_counts(result, truth).items()}
    centres = true_centres(truth)
    document = prediction_json(result)
    for c in document["candidates"]:
        near = len(centres) and float(np.min(np.linalg.norm(centres - c["centre_ras"], axis=1))) <= 5
        c["reader_decision"] = ("accept" if near else "reject") if (
            c["kept"] or c["dropped_by"] == "stage2") else None
    return {"cmb_baseline": predicted, "cmb_detector": result.labels}, {
        "cmb_count_truth": subject.targets["cmb_count"], "baseline_candidates": len(candidates),
        "baseline_tp": counts.tp, "baseline_fp": counts.fp, "baseline_sensitivity": counts.sensitivity,
        "detector_kept": len(result.kept), "detector_candidates": len(result.candidates),
        "detector_tp": stages["all stages"]["tp"], "detector_fp": stages["all stages"]["fp"],
        "detector_by_stage": stages, "detector_output": document,
        "true_centres_ras": centres.round(1).tolist()}


def _cmb_decisions(report: dict, out: Path) -> dict:
    """Write the demo reader's CMB decisions to the feedback store, as the Slicer module
    does; `lesion-suite cmb train --feedback` reads them."""
    from ..cmb.reader_decisions import record_decision
    from ..feedback_cases import ensure_case_image
    cmb = report["cmb"]
    case = FeedbackStore(out / "feedback").case("demo_cmb")
    ensure_case_image(case, out / "synthetic" / cmb["subject"] / "swi.nii.gz", "SWI")
    made = {"accept": 0, "reject": 0, "add": 0}
    model = cmb["detector_output"]["model"]
    for c in cmb["detector_output"]["candidates"]:
        if c["reader_decision"]:
            record_decision(case, c["reader_decision"], c["centre_ras"], c, reader="demo",
                            model_id=model["name"], model_version=model["version"])
            made[c["reader_decision"]] += 1
    accepted = [c["centre_ras"] for c in cmb["detector_output"]["candidates"]
                if c["reader_decision"] == "accept"]
    for centre in cmb["true_centres_ras"]:
        if not accepted or min(np.linalg.norm(np.subtract(accepted, centre), axis=1)) > 5:
            record_decision(case, "add", centre, diameter_mm=3.0, reader="demo")
            made["add"] += 1
    return made


def _ich_step(subject, folder: Path) -> tuple[dict, dict]:
    """HU threshold baseline, then the shipped weakly supervised model (classifier with
    interslice context, CAM, pseudo-mask refinement, segmenter), its result also written
    to ``folder`` as ``ich predict`` writes it."""
    from ..baselines import segment_ich_threshold
    from ..ich.predict import predict_ich, summary_json, write_prediction
    from ..metrics import dice
    from ..output_folder import publish
    predicted = segment_ich_threshold(subject.images["CT"])
    truth = subject.labels["CT"]["ich"].array
    blood = (truth >= 1) & (truth <= 5)
    result = predict_ich(subject.images["CT"], load_model("ich"))
    summary = summary_json(result)
    publish(folder, lambda staging: write_prediction(result, staging,
                                                     str(_image_file(folder, "CT"))))
    return {"ich_baseline": predicted, "ich_weakseg": result.labels, "ich_cam": result.cam}, {
        "subtypes_truth": subject.targets.get("subtypes", []),
        "subtypes_predicted": summary.get("subtypes", []),
        "ich_ml_truth": round(float(subject.targets.get("total_volume_ml", 0.0)), 2),
        "ich_ml_baseline": round(float(predicted.meta.get("volume_ml", 0.0)), 2),
        "ich_ml_weakseg": round(float(summary.get("volume_ml", 0.0)), 2),
        "dice_baseline": dice(predicted.array, blood),
        "dice_weakseg": dice(np.asarray(result.labels.array) > 0, blood),
        "scan_probability": round(float(summary.get("scan_probability", 0.0)), 3)}


_STEPS = {"wmh": _wmh_step, "cmb": _cmb_step, "ich": _ich_step}
#: Where each synthetic subject's learned-model result is written: ``<out>/predictions/
#: <subject id>``, as ``predict --out`` would write it.
PREDICTIONS = "predictions"
#: The page over every result, in the demo's output folder.
COHORT_REPORT = "cohort_report.html"


def _image_file(folder: Path, modality: str) -> Path:
    """The image of ``modality`` of the subject whose prediction ``folder`` this is
    (``save_subject`` wrote it to ``<out>/synthetic/<subject id>/<modality>.nii.gz``)."""
    return folder.parent.parent / "synthetic" / folder.name / f"{modality.lower()}.nii.gz"


def _reports(report: dict, out: Path, real_t1: str) -> dict:
    """A report.html in each prediction folder (the reader's decisions from the demo's
    feedback store) and the cohort page over them; name -> path."""
    from ..report.case import write_case_report
    from ..report.cohort import write_cohort_report

    modality = {"wmh": "FLAIR", "cmb": "SWI", "ich": "CT"}
    written = {}
    for kind in _STEPS:
        folder = out / PREDICTIONS / report[kind]["subject"]
        image = _image_file(folder, modality[kind])
        written[kind], _ = write_case_report(folder, kind, image=image, feedback=out / "feedback")
    written["real_t1"], _ = write_case_report(out / "real_t1_wmh", "wmh", image=real_t1)
    written["cohort"] = write_cohort_report([out], out / COHORT_REPORT)[0]
    return {name: str(path) for name, path in written.items()}


def _real_t1_wmh(volume, out: Path) -> dict:
    """The T1 mode on the real T1 (no labels: volumes per zone are what there is to show)."""
    from ..output_folder import publish
    from ..wmh.predict import predict, write_prediction
    prediction = predict(volume, load_model("wmh", kind="wmh_t1"))
    publish(out, lambda folder: write_prediction(prediction, folder,
                                                 image_path=str(Path(volume.source).resolve())))
    summary = prediction.summary()
    return {"wmh_ml_t1_mode": round(summary["lesion_ml"], 2),
            "brain_ml": round(summary["brain_ml"], 1),
            "wmh_ml_per_zone": {k: round(v, 2) for k, v in summary["zone_ml"].items()},
            "outputs": str(out)}


def run(args: argparse.Namespace) -> int:
    from ..synth import SubjectConfig, make_subject, save_subject
    from ..synth.anatomy import AnatomyConfig

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {}
    with ProgressBar(args, "demo") as progress:
        for index, (kind, step) in enumerate(_STEPS.items()):
            progress.update(index / 4, f"{kind}: generating a synthetic subject")
            # The CMB model is trained on SWI of 1.5 mm anatomy: its demo subject matches.
            spacing = min(args.spacing, 1.5) if kind == "cmb" else args.spacing
            config = SubjectConfig(kind=kind, anatomy=AnatomyConfig(spacing_mm=spacing),
                                   severity=0.6 if kind != "cmb" else None, lesion_count=8,
                                   ich_probability=1.0, swi_variant="SWI")
            subject = make_subject(DEMO_SEED, config)
            save_subject(subject, out / "synthetic")
            progress.update((index + 0.5) / 4, f"{kind}: running the baseline")
            predictions, scores = step(subject, out / PREDICTIONS / subject.subject_id)
            for name, volume in predictions.items():
                write_volume(volume, out / "synthetic" / subject.subject_id / f"{name}.nii.gz")
            report[kind] = {"subject": subject.subject_id, **json_safe(scores)}
        progress.update(0.75, "real T1: validate, reorient, resample, T1-mode WMH")
        volume = validate_image(read_volume(args.input), Modality.MR)
        resampled = volume.to_ras().resample_to_spacing(1.0)
        write_volume(resampled, out / "t1_ras_1mm.nii.gz")
        report["real_t1"] = {"input": describe_volume(volume), "resampled": describe_volume(resampled),
                             **_real_t1_wmh(volume, out / "real_t1_wmh")}
        # A reader corrects one regional rating: written at once to the feedback store,
        # where `lesion-suite wmh train --feedback` finds it.
        from ..feedback_cases import ensure_case_image
        from ..wmh.reader_ratings import record_rating
        case = FeedbackStore(out / "feedback").case("demo_wmh")
        ensure_case_image(case, out / "synthetic" / report["wmh"]["subject"] / "flair.nii.gz",
                          "FLAIR")
        record_rating(case, "frontal_left", report["wmh"]["arwmc_levels_truth"]["frontal_left"],
                      reader="demo", model_id="wmh_flair_dualtasker", model_version="demo")
        report["cmb"]["reader_decisions"] = _cmb_decisions(report, out)
        progress.update(0.9, "writing the HTML reports")
        report["html_reports"] = _reports(report, out, args.input)
        (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
        progress.update(1.0, "done")
    for kind in _STEPS:
        shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in report[kind].items()
                          if k != "subject" and not isinstance(v, (dict, list)))
        print(f"{kind} ({report[kind]['subject']}): {shown}")
    wmh = report["wmh"]
    print("wmh ARWMC per region (truth / DualTasker): " + ", ".join(
        f"{r} {wmh['arwmc_levels_truth'][r]}/{wmh['arwmc_levels_dualtasker'][r]}"
        for r in wmh["arwmc_levels_truth"]))
    print("cmb candidates (id, stage 1 p, stage 2 p, kept / dropped by, location, reader):")
    for c in report["cmb"]["detector_output"]["candidates"]:
        status = "kept" if c["kept"] else f"dropped by {c['dropped_by']} ({c['reason']})"
        print(f"  #{c['id']:>3} p1 {c['stage1_probability']:.2f} p2 {c['stage2_probability']:.2f}"
              f" {status:<34} {c['location']}/{c['region']:<22} {c['reader_decision'] or '-'}")
    print(f"cmb reader decisions in the store: {report['cmb']['reader_decisions']}")
    real = report["real_t1"]
    print(f"real T1: {volume.orientation} {volume.shape}, brain {real['brain_ml']:.0f} mL, "
          f"T1-mode WMH {real['wmh_ml_t1_mode']:.1f} mL -> {real['outputs']}")
    print(f"report: {out / 'report.json'}; feedback store: {out / 'feedback'}")
    pages = report["html_reports"]
    print("HTML reports: " + ", ".join(f"{name} {path}" for name, path in pages.items()
                                       if name != "cohort"))
    print(f"cohort page: {pages['cohort']}")
    return 0
