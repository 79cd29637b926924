"""WMH behind the task contract: WMH-DualTasker (FLAIR; segmentation and ARWMC ratings
learned from ratings alone) and the deep-T1-WMH mode (3D T1; thick-slice labels).

``TASK`` is what :mod:`lesion_core.tasks` registers: ``lesion-suite wmh predict|train|evaluate``
and the Slicer module reach :mod:`lesion_core.wmh` through it. Its options:

* ``predict IMAGE``: ``--t1`` (the T1 mode), ``--stem`` (output file prefix), ``--atlases
  DIR`` (the subject's brain mask and atlases instead of registration,
  :func:`lesion_core.wmh.atlases.read_atlases`);
* ``train``: a DualTasker from a ratings table (``--table``), a synthetic cohort's ratings
  (``--synthetic``, with ``--known-transform`` its known MNI transform instead of
  registration) or a reader's ratings (``--feedback``: fine-tunes ``--init`` or the shipped
  model); with ``--t1`` the T1 mode from a table of T1 images and thick-slice FLAIR labels;
  ``--config JSON`` the model configuration;
* ``evaluate COHORT``: a model against a synthetic cohort's truth (``--known-transform``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import CommandError
from ..tables import check_files_exist
from ..tasks import Task, TrainSettings, option
from .outputs_file import FILES, read_ratings, read_summary

_T1 = option("--t1", action="store_true",
             help="the T1 mode (a 3D T1 image; segmentation only, no rating)")
_KNOWN_TRANSFORM = ("take brain masks and atlases from the synthetic cohort's known MNI "
                    "transform instead of registering (faster; synthetic only)")


class WMHTask(Task):
    name = "wmh"
    title = "WMH"
    help = ("white-matter hyperintensities: predict, train, evaluate (WMH-DualTasker and the "
            "T1 mode)")
    verb_help = {"predict": "segment and rate WMH on one image",
                 "train": "train a model (DualTasker: from ARWMC ratings only)",
                 "evaluate": "score a model on a synthetic cohort's truth"}
    modalities = ("FLAIR", "T1")
    head_modality = "MR"
    bundle_kinds = ("wmh", "wmh_t1")
    default_models = {"wmh": "wmh_flair_dualtasker", "wmh_t1": "wmh_t1_thickslice"}
    required_networks = ("net",)
    output_files = FILES
    output_readers = {"summary": read_summary, "ratings": read_ratings}
    key_figures = {"lesion_ml": ("summary", "lesion_ml"), "brain_ml": ("summary", "brain_ml"),
                   "arwmc_total": ("summary", "arwmc_total")}
    input_argument = ("image", "FLAIR (or 3D T1 with --t1): NIfTI, NRRD or DICOM folder")
    cohort_argument = ("cohort", "a `lesion-suite synth wmh` folder")
    evaluation_truth = "voxel labels and ARWMC ratings of the cohort (evaluation only)"
    options = {
        "predict": (_T1,
                    option("--stem", default="wmh",
                           help="output file name prefix (default: %(default)s)"),
                    option("--atlases", metavar="DIR",
                           help="folder with brain.nii.gz, arwmc.nii.gz and zones.nii.gz (the "
                                "subject's brain mask and atlases, nearest neighbour onto the "
                                "image grid): registration is skipped")),
        "train": (option("--table", source=True,
                         help="ratings CSV (subject, image, total, per-region columns); with "
                              "--t1: subject, image, thick_label"),
                  option("--synthetic", metavar="COHORT_DIR", source=True,
                         help="a `lesion-suite synth wmh` folder (its ratings only)"),
                  option("--t1", action="store_true",
                         help="train the T1 mode (thick-slice labels)"),
                  option("--config", metavar="JSON",
                         help="model configuration (the fields of DualTaskerConfig, as stored "
                              "in a model's metadata.json under extra.config); default: the "
                              "standard one"),
                  option("--known-transform", action="store_true",
                         help=f"with --synthetic: {_KNOWN_TRANSFORM}")),
        "evaluate": (_T1, option("--known-transform", action="store_true",
                                 help="use the cohort's known MNI transform instead of "
                                      "registration")),
    }

    # ------------------------------------------------------------------ models
    def kind(self, t1: bool = False, **options: Any) -> str:
        return self.bundle_kinds[1] if t1 else self.bundle_kinds[0]

    def kind_label(self, kind: str) -> str:
        return f"{self.modality(kind)} WMH"

    @staticmethod
    def modality(kind: str) -> str:
        return "T1" if kind == "wmh_t1" else "FLAIR"

    def kind_mismatch(self, have: str, want: str, verb: str) -> tuple[str, str]:
        problem = (f"this is a {self.modality(have)} model but the {self.modality(want)} mode "
                   "was asked for")
        if verb == "train":
            fix = ("the T1 mode continues a T1 model; choose one" if want == "wmh_t1" else
                   "ratings fine-tune a FLAIR (DualTasker) model; choose one")
        else:
            fix = ("add --t1 for a T1 model" if have == "wmh_t1" else
                   "leave out --t1, or choose a T1 model")
        return problem, fix

    def model_from_bundle(self, loaded):
        from .model import model_from_bundle

        return model_from_bundle(loaded)

    # ----------------------------------------------------------------- predict
    def read_input(self, path, atlases: str | None = None, stem: str | None = None,
                   series: str | None = None, **options: Any) -> dict:
        """The image (checked as MR; ``series``: the SeriesInstanceUID in a DICOM folder of
        several) and, with ``atlases``, the subject's atlases; a ``stem`` that is not a
        plain file name is refused first."""
        from ..io import read_volume
        from ..output_folder import plain_file_stem
        from ..validation import Modality, validate_image
        from .atlases import read_atlases

        if stem is not None:
            plain_file_stem(stem)

        return {"image": validate_image(read_volume(path, series_uid=series), Modality.MR),
                "atlases": read_atlases(atlases) if atlases else None}

    def head_image(self, inputs: dict):
        return inputs["image"]

    def prepare(self, inputs: dict, progress=None, t1: bool = False, **options: Any) -> dict:
        """The subject's atlases by registration, unless they were given (``--atlases``)."""
        if inputs["atlases"] is not None:
            return inputs
        from ..progress import ensure_progress
        from .atlases import subject_atlases

        ensure_progress(progress).update(0.05, "registering to MNI")
        return {**inputs, "atlases": subject_atlases(inputs["image"],
                                                     self.modality(self.kind(t1=t1)))}

    def predict(self, inputs: dict, model, progress=None, precision: str = "auto",
                **options: Any):
        from .predict import predict

        return predict(inputs["image"], model, inputs["atlases"], progress=progress,
                       precision=precision)

    def write_outputs(self, prediction, folder, image_path=None, stem: str | None = None,
                      **options: Any) -> dict[str, Path]:
        from .predict import write_prediction

        return write_prediction(prediction, folder, stem=stem or FILES.default_stem,
                                image_path=image_path)

    def prediction_lines(self, prediction, model, image_path: str) -> list[str]:
        lines = [f"{image_path}: {model.modality} model {model.model_id} {model.version}"]
        if prediction.total is not None:
            lines.append(f"ARWMC total: {prediction.total} (0-30)")
        lines.append(f"WMH volume: {prediction.lesion_ml:.2f} mL in a brain of "
                     f"{prediction.brain_ml:.0f} mL ({prediction.seconds:.1f} s)")
        return lines

    # ---------------------------------------------------------------- evaluate
    def read_cohort(self, source, t1: bool = False, **options: Any) -> list:
        from .evaluate import read_cohort

        return read_cohort(source, self.modality(self.kind(t1)))

    def evaluate(self, model, source, progress=None, precision: str = "auto",
                 known_transform: bool = False, **options: Any):
        from .evaluate import evaluate_cohort

        return evaluate_cohort(model, source, use_registration=not known_transform,
                               progress=progress, precision=precision)

    def summary_lines(self, report) -> list[str]:
        from .evaluate import summary_rows

        rows = summary_rows(report)
        width = max(len(name) for name, _, _ in rows)
        return [f"{name:<{width}}  {_format(value):<24} {note}".rstrip()
                for name, value, note in rows]

    # ------------------------------------------------------------------- train
    def check_training(self, settings: TrainSettings, feedback: str | None = None,
                       synthetic: str | None = None, known_transform: bool = False,
                       t1: bool = False, **options: Any) -> None:
        if known_transform and not synthetic:
            raise CommandError("--known-transform needs --synthetic",
                               "leave it out for real images (they are registered)")
        if t1 and feedback:
            raise CommandError("the T1 mode learns from thick-slice labels, not ratings",
                               "give --table with subject, image, thick_label columns")

    def training_data(self, settings: TrainSettings, table: str | None = None,
                      synthetic: str | None = None, t1: bool = False,
                      known_transform: bool = False, **options: Any) -> dict:
        """Rows, where they came from, and the masker (``--known-transform``)."""
        if t1:
            from . import t1_fit

            if table:
                rows = t1_fit.read_thick_label_table(table)
                note = f"thick-label table {Path(table).name}"
            else:
                rows = _cohort_rows(t1_fit.thick_table_from_synthetic_cohort, synthetic)
                note = "synthetic cohort thick-slice labels"
            check_files_exist([p for row in rows for p in (row.image, row.thick_label)],
                              table or synthetic)
        else:
            from .data import read_ratings_table, table_from_synthetic_cohort

            if table:
                rows, note = read_ratings_table(table), f"ratings table {Path(table).name}"
            else:
                rows = _cohort_rows(table_from_synthetic_cohort, synthetic)
                note = "synthetic cohort ratings"
            check_files_exist([row.image for row in rows], table or synthetic)
        masker = None
        if known_transform:
            from .evaluate import known_transform_masker

            masker = known_transform_masker(synthetic, self.modality(self.kind(t1)))
        return {"rows": rows, "note": note, "masker": masker}

    def fit(self, data: dict, settings: TrainSettings, progress=None, init=None,
            t1: bool = False, config: str | None = None, **options: Any):
        from .config import TrainConfig

        model_config = model_config_file(config)
        train_config = TrainConfig(optim=settings.optim(TrainConfig().optim))
        if t1:
            from .t1_fit import fit_t1

            return fit_t1(data["rows"], model_config, train_config, masker=data["masker"],
                          progress=progress, data_note=data["note"], init=init,
                          checkpoint_dir=settings.checkpoint, cache_dir=settings.cache)
        from .fit import fit_dualtasker

        return fit_dualtasker(data["rows"], model_config, train_config, masker=data["masker"],
                              init=init, progress=progress, data_note=data["note"],
                              checkpoint_dir=settings.checkpoint, cache_dir=settings.cache)

    def finetune(self, model, store, settings: TrainSettings, progress=None,
                 **options: Any):
        """Reader ratings are few: they adjust a trained DualTasker (keeping its
        configuration) rather than start one."""
        from .reader_ratings import rows_from_feedback

        rows = rows_from_feedback(store, "FLAIR")
        if not rows:
            raise CommandError("no case holds ARWMC ratings with its FLAIR image",
                               "rate some cases in the WMH module first", store)
        check_files_exist([row.image for row in rows], store)
        data = {"rows": rows, "note": "reader ratings (feedback)", "masker": None}
        return self.fit(data, settings, progress, init=model)

    def training_line(self, report: dict) -> str:
        """The facts of a model card's ``training`` entry that are there."""
        facts = [f"{report.get('subjects', '?')} subjects", str(report.get("supervision", ""))]
        for first_key, last_key, label in (("rating_loss_first", "rating_loss_last",
                                            "rating loss"), ("loss_first", "loss_last50", "loss")):
            first, last = report.get(first_key), report.get(last_key)
            if first is not None and last is not None:
                facts.append(f"{label} {first:.3f} -> {last:.3f}")
                break
        if report.get("steps") is not None:
            facts.append(f"{report['steps']} steps in {report.get('wall_s', 0):.0f} s "
                         f"({report.get('precision', 'fp32')})")
        if report.get("calibration_score") is not None:
            facts.append(f"calibration score {report['calibration_score']:.3f}")
        if report.get("fine_tuned_from"):
            facts.append(f"fine-tuned from {report['fine_tuned_from']}")
        return "; ".join(f for f in facts if f)


def _format(value) -> str:
    """A summary value: ``{"mean", "sd", "n"}`` as mean ± sd (n), or a number."""
    if isinstance(value, dict):
        if value.get("mean") is None:
            return "n/a"
        sd = "" if value.get("sd") is None else f" ± {value['sd']:.3g}"
        return f"{value['mean']:.3g}{sd} (n {value['n']})"
    return "n/a" if value is None else f"{value:.3g}"


def model_config_file(path: str | None):
    """The :class:`~.config.DualTaskerConfig` of ``--config`` (the standard one without)."""
    from .config import DualTaskerConfig
    from .model import config_from_dict

    if path is None:
        return DualTaskerConfig()
    try:
        data = json.loads(Path(path).read_text())
        if isinstance(data, dict) and isinstance(data.get("extra"), dict) \
                and "config" in data["extra"]:
            data = data["extra"]["config"]      # a whole metadata.json works too
        return config_from_dict(data)
    except (OSError, ValueError, TypeError) as exc:
        raise CommandError(f"not a usable model configuration ({exc})",
                           "give a JSON object of DualTaskerConfig fields", path) from exc


def _cohort_rows(read, folder: str):
    """Rows a synthetic-cohort reader builds; a folder that is not a cohort, or a table or
    targets file it cannot use (an older cohort, a moved folder), is the user's input, so
    it gets the one-line error."""
    from .evaluate import COHORT_TABLE

    table = Path(folder) / COHORT_TABLE
    if not table.is_file():
        raise CommandError(f"there is no {COHORT_TABLE}: not a synthetic WMH cohort",
                           "give a folder written by `lesion-suite synth wmh --out DIR`",
                           folder)
    try:
        return read(folder)
    except KeyError as exc:
        raise CommandError(f"the table has no column {exc}", "regenerate the cohort with "
                           "`lesion-suite synth wmh`", table) from exc
    except OSError as exc:
        raise CommandError(f"a file the table names cannot be read ({exc})",
                           "run from the folder where the cohort was written, or "
                           "regenerate it", table) from exc


TASK = WMHTask()
