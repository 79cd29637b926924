"""Synthetic subjects with known ground truth: the demo, test and benchmark data.

``make_subject(kind, seed)`` draws an anatomy, inserts the kind's lesions (and mimics),
renders each modality and acquires it. Everything is reproducible from ``(kind, seed,
config)``; ``config.domain`` chooses the contrast and acquisition ranges (standard,
randomized or shifted, see :mod:`.domain`). Kinds and their images:

- ``"wmh"``: FLAIR + 3D T1 with white-matter hyperintensities and their ARWMC rating;
- ``"cmb"``: SWI (or T2*-GRE) with microbleeds and mimics;
- ``"ich"``: non-contrast CT in HU with haemorrhage, subtypes and per-slice labels.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_bytes
from ..io import write_volume
from ..io.dicom_write import SeriesIdentity, deterministic_uid, write_dicom_series
from ..jsonable import json_safe
from ..progress import Progress, ensure_progress
from ..volume import Volume
from . import KINDS  # defined in the package: listing the kinds needs no torch
from .acquisition import AcquisitionConfig, acquire
from .anatomy import AnatomyConfig, SubjectAnatomy, make_anatomy
from .contrast import draw_tissue_means, render
from .domain import DomainRanges, domain_ranges, draw_acquisition
from .lesions import LesionInsertion

#: Slice thickness (mm) of the simulated thick-slice FLAIR rater labels of WMH subjects.
THICK_LABEL_MM = 5.0
#: Subfolder of a subject with its images as DICOM series (``--dicom``): ``dicom/<name>/``.
DICOM_FOLDER = "dicom"


@dataclass(frozen=True)
class SubjectConfig:
    """What to generate. ``acquisition[modality]`` overrides the random acquisition: all of
    it in the standard domain; in the others, the fields it sets away from their defaults.
    ``domain``: "standard", "randomized" or "shifted" (:data:`.domain.DOMAINS`)."""

    kind: str = "wmh"
    anatomy: AnatomyConfig = AnatomyConfig()
    acquisition: dict[str, AcquisitionConfig] = field(default_factory=dict)
    severity: float | None = None       # wmh: 0-1 lesion load; ich: haemorrhage size scale
    lesion_count: int | None = None     # cmb: number of microbleeds
    ich_probability: float = 0.8        # ich: fraction of subjects with haemorrhage
    swi_variant: str | None = None      # cmb: "SWI" or "T2star" (random when None)
    domain: str = "standard"            # contrast and acquisition ranges


@dataclass
class SyntheticSubject:
    """One generated subject.

    ``images[modality]``: the acquired image; ``labels[modality][name]``: ground truth on
    that image's grid; ``targets``: weak labels and facts (JSON-able); ``anatomy``: the
    subject-grid tissues and the dense map to MNI (for registration tests).
    """

    subject_id: str
    kind: str
    seed: int
    images: dict[str, Volume]
    labels: dict[str, dict[str, Volume]]
    targets: dict
    acquisition: dict[str, dict]
    anatomy: SubjectAnatomy | None = None  # None for subjects read back from disk

    @property
    def primary_modality(self) -> str:
        """The image the kind is evaluated on: FLAIR (wmh), SWI or T2star (cmb), CT (ich)."""
        return next(iter(self.images))


def _insert(kind: str, anatomy: SubjectAnatomy, rng: np.random.Generator,
            config: SubjectConfig, modalities: dict[str, str],
            ranges: DomainRanges | None) -> LesionInsertion:
    """The kind's lesions, with the domain's lesion contrasts (the generators' own when
    ``ranges`` is None)."""
    if kind == "wmh":
        from .wmh import FLAIR_RANGE, T1_RANGE, insert_wmh
        flair, t1 = (FLAIR_RANGE, T1_RANGE) if ranges is None else (ranges.wmh_flair, ranges.wmh_t1)
        return insert_wmh(anatomy, rng, config.severity, flair, t1)
    if kind == "cmb":
        from .cmb import BLOOMING, CORE_SIGNAL, draw_blooming, insert_cmbs
        blooming, core = ((BLOOMING, CORE_SIGNAL) if ranges is None
                          else (ranges.cmb_blooming, ranges.cmb_core_signal))
        # T2*-GRE (longer TE) blooms more than SWI: the variant sets the blooming factor.
        variant = next(iter(modalities))
        return insert_cmbs(anatomy, rng, config.lesion_count,
                           blooming=draw_blooming(rng, variant, blooming), core_signal=core)
    from .ich import SUBACUTE_HU, SUBTYPE_VALUES, insert_ich
    acute, subacute = ((None, SUBACUTE_HU) if ranges is None else
                       ({key: ranges.blood_acute_hu for key in SUBTYPE_VALUES}, ranges.blood_subacute_hu))
    return insert_ich(anatomy, rng, config.severity, config.ich_probability,
                      acute_hu=acute, subacute_hu=subacute)


def _modalities(kind: str, config: SubjectConfig, rng: np.random.Generator) -> dict[str, str]:
    """Stored name -> contrast used to render it."""
    if kind == "wmh":
        return {"FLAIR": "FLAIR", "T1": "T1"}
    if kind == "cmb":
        variant = config.swi_variant or str(rng.choice(["SWI", "T2star"]))
        return {variant: "SWI"}
    return {"CT": "CT"}


def _default_acquisition(kind: str, name: str) -> AcquisitionConfig:
    if name == "T1":
        return AcquisitionConfig(slice_thickness_mm=1.0)
    if name == "CT":
        return AcquisitionConfig(in_plane_mm=0.9, slice_thickness_mm=5.0)
    if name in ("SWI", "T2star"):
        return AcquisitionConfig(slice_thickness_mm=None if name == "T2star" else 1.5)
    return AcquisitionConfig()


def _merged(drawn: AcquisitionConfig, override: AcquisitionConfig | None) -> AcquisitionConfig:
    """``drawn`` with the fields that ``override`` sets away from their defaults."""
    if override is None:
        return drawn
    default = AcquisitionConfig()
    changed = {f.name: getattr(override, f.name) for f in fields(AcquisitionConfig)
               if getattr(override, f.name) != getattr(default, f.name)}
    return replace(drawn, **changed)


def _acquisition(config: SubjectConfig, name: str, ranges: DomainRanges | None,
                 rng: np.random.Generator) -> AcquisitionConfig:
    """How the image stored as ``name`` is acquired (the override, else the domain's)."""
    if ranges is not None:
        return _merged(draw_acquisition(name, ranges, rng), config.acquisition.get(name))
    acq = config.acquisition.get(name, _default_acquisition(config.kind, name))
    if name == "T2star":
        acq = replace(acq, slice_thickness_mm=acq.slice_thickness_mm or float(rng.uniform(2, 4)))
    return acq


def _domain_facts(domain: str, contrast: str, means: dict[str, float], layers: list,
                  acq: AcquisitionConfig) -> dict:
    """What a non-standard domain drew for one image: tissue means, the absolute lesion
    layer values (MR: x white matter; CT: HU before the haemorrhage texture) and the
    acquisition (``in_plane_mm`` before the voxel cap)."""
    lesions = {layer.name: round(float(layer.values[contrast]), 4) for layer in layers
               if contrast in layer.values and not layer.relative.get(contrast, False)
               and not layer.name.startswith("confounder_")}
    return {"name": domain, "tissue_means": {t: round(v, 4) for t, v in means.items()},
            "lesion_values": lesions, "acquisition": asdict(acq)}


def make_subject(seed: int, config: SubjectConfig = SubjectConfig()) -> SyntheticSubject:
    """Generate one subject of ``config.kind`` (reproducible from ``seed``)."""
    if config.kind not in KINDS:
        raise ValueError(f"unknown kind {config.kind!r}; choose from {KINDS}")
    ranges = domain_ranges(config.domain)
    rng = np.random.default_rng([seed, KINDS.index(config.kind)])
    anatomy = make_anatomy(int(rng.integers(2 ** 31)), config.anatomy)
    modalities = _modalities(config.kind, config, rng)
    insertion = _insert(config.kind, anatomy, rng, config, modalities, ranges)
    # Normal structures and artefacts that mimic lesions (they carry no label).
    from .confounders import confounder_layers
    insertion.layers.extend(confounder_layers(config.kind, anatomy, rng))
    images, labels, facts = {}, {}, {}
    subject_labels = {name: anatomy.grid.with_array(array) for name, array in insertion.labels.items()}
    for name, contrast in modalities.items():
        means = draw_tissue_means(contrast, rng, None if ranges is None else ranges.tissues[contrast])
        rendered = anatomy.grid.with_array(render(anatomy, contrast, insertion.layers, rng, means=means))
        acq = _acquisition(config, name, ranges, rng)
        image, label_maps, facts[name] = acquire(rendered, subject_labels, name, acq, rng)
        if ranges is not None:
            facts[name]["domain"] = _domain_facts(config.domain, contrast, means, insertion.layers, acq)
        image.meta["sequence"] = name
        images[name], labels[name] = image, label_maps
    targets = dict(insertion.targets)
    if config.kind == "ich":
        from .ich import slice_labels
        targets["slices"] = slice_labels(labels["CT"]["ich"], facts["CT"]["slice_axis"])
    targets.update({"age_years": round(anatomy.age_years, 1), "atrophy": round(anatomy.atrophy, 3)})
    return SyntheticSubject(f"{config.kind}_{seed:05d}", config.kind, seed, images, labels,
                            targets, facts, anatomy)


def save_subject(subject: SyntheticSubject, folder: str | Path, dicom: bool = False) -> dict:
    """Write images, label maps and ``targets.json``; returns the manifest row (paths).

    ``dicom``: also write each image as a DICOM series in ``dicom/<name>/`` (row key
    ``<name>_dicom``, see :func:`save_dicom_series`)."""
    folder = Path(folder).resolve() / subject.subject_id  # absolute: the table works from anywhere
    folder.mkdir(parents=True, exist_ok=True)
    row = {"subject": subject.subject_id, "kind": subject.kind, "seed": subject.seed}
    for name, image in subject.images.items():
        row[name.lower()] = str(write_volume(image, folder / f"{name.lower()}.nii.gz"))
        for label, volume in subject.labels[name].items():
            key = f"{name.lower()}_{label}_truth"
            row[key] = str(write_volume(volume, folder / f"{key}.nii.gz"))
    if subject.kind == "wmh":
        # The T1 mode's weak label: a rater's mask on a 5 mm axial FLAIR (slice profile).
        from ..wmh.t1_fit import thick_label_from_mask
        thick = thick_label_from_mask(subject.labels["FLAIR"]["wmh"], THICK_LABEL_MM)
        row["flair_wmh_thick_label"] = str(write_volume(thick, folder / "flair_wmh_thick_label.nii.gz"))
    if dicom:
        row.update(save_dicom_series(subject, folder / DICOM_FOLDER))
    (folder / "targets.json").write_text(json.dumps(
        json_safe({"targets": subject.targets, "acquisition": subject.acquisition}), indent=1))
    row["targets"] = str(folder / "targets.json")
    row.update(weak_labels(subject))
    return row


def subject_identity(subject: SyntheticSubject, name: str) -> SeriesIdentity:
    """The DICOM identity of image ``name`` of ``subject``: patient, study and frame of
    reference shared by the subject's images, one series each. Every UID derives from the
    kind, the seed and what was acquired (so one seed made at two sizes differs)."""
    made = json.dumps(json_safe(subject.acquisition), sort_keys=True)
    base = ("lesion-suite synth", subject.kind, subject.seed, made)
    number = list(subject.images).index(name) + 1
    age = subject.targets.get("age_years")
    return SeriesIdentity(
        patient_id=subject.subject_id, patient_name=f"Synthetic^{subject.subject_id}",
        study_uid=deterministic_uid(*base, "study"),
        series_uid=deterministic_uid(*base, "series", name),
        frame_of_reference_uid=deterministic_uid(*base, "frame of reference"),
        series_number=number, series_description=f"{name} (synthetic)",
        study_description=f"LesionSuite synthetic {subject.kind.upper()} subject",
        study_id=str(subject.seed)[-16:], accession_number=f"LS{subject.seed}"[:16],
        patient_age="" if age is None else f"{int(min(max(age, 0), 999)):03d}Y")


def save_dicom_series(subject: SyntheticSubject, folder: str | Path) -> dict[str, str]:
    """Write each image of ``subject`` as a DICOM series in ``folder/<name>/`` (CT Image
    Storage in HU for CT, MR Image Storage otherwise; :mod:`lesion_core.io.dicom_write`);
    returns ``{"<name>_dicom": folder}`` for the manifest row."""
    row = {}
    for name, image in subject.images.items():
        target = Path(folder) / name.lower()
        if target.is_dir():  # a re-run writes the series anew, never beside an older one
            for old in target.glob("*.dcm"):
                old.unlink()
        modality = "CT" if name == "CT" else "MR"
        write_dicom_series(image, target, modality, subject_identity(subject, name),
                           sequence=None if modality == "CT" else name)
        row[f"{name.lower()}_dicom"] = str(target)
    return row


def weak_labels(subject: SyntheticSubject) -> dict:
    """The labels a clinic has without voxel masks, plus ground-truth figures (``truth_*``).

    wmh: ARWMC total and per region-side, Fazekas scores; cmb: count per MARS category;
    ich: scan-level presence and subtypes, number of positive slices. Per-slice ICH labels
    are in ``targets.json`` (``targets.slices``).
    """
    t = subject.targets
    if subject.kind == "wmh":
        row = {"arwmc_total": t["arwmc_total"], **{f"arwmc_{r}": v for r, v in t["arwmc"].items()},
               "fazekas_periventricular": t["fazekas_periventricular"],
               "fazekas_deep": t["fazekas_deep"]}
        return {**row, "truth_wmh_ml": round(float(t["wmh_volume_ml"]), 3)}
    if subject.kind == "cmb":
        return {"cmb_count": t["cmb_count"],
                **{f"cmb_{c}": n for c, n in t.get("cmb_by_location", {}).items()}}
    from .ich import SUBTYPE_KEYS
    present = set(t.get("subtypes", []))
    return {"ich_present": int(bool(t.get("ich_present"))),
            **{f"ich_{key}": int(key in present) for key in SUBTYPE_KEYS.values()},
            "ich_positive_slices": sum(s["ich"] for s in t.get("slices", [])),
            "truth_ich_ml": round(float(t.get("total_volume_ml", 0.0)), 3)}


def _make_and_save(seed: int, config: SubjectConfig, out: str | Path, dicom: bool = False) -> dict:
    """One subject generated and saved (module level: a worker process runs it).

    A subject already saved in ``out`` with the same seed and config (its record in
    ``out/.subjects/``, written last and atomically) is not made again, so a cohort whose
    generation was stopped continues where it stopped.
    """
    record = Path(out) / ".subjects" / f"{seed}.json"
    made_with = json_safe({"seed": seed, "config": asdict(config),
                           **({"dicom": True} if dicom else {})})  # older records: no key
    if record.is_file():
        saved = json.loads(record.read_text())
        if saved.get("made_with") == made_with:
            return saved["row"]
    row = save_subject(make_subject(seed, config), out, dicom=dicom)
    record.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(record, json.dumps({"made_with": made_with, "row": json_safe(row)}).encode())
    return row


def _rows(seeds: list[int], config: SubjectConfig, out: str | Path, workers: int,
          progress: Progress, dicom: bool = False) -> list[dict]:
    """Manifest rows in seed order, made in ``workers`` processes (1: in this one)."""
    total = max(len(seeds), 1)
    if workers <= 1 or len(seeds) <= 1:
        rows = []
        for index, seed in enumerate(seeds):
            progress.update(index / total, f"subject {index + 1}/{len(seeds)}")
            rows.append(_make_and_save(seed, config, out, dicom))
        return rows
    progress.update(0.0, f"{len(seeds)} subjects in {workers} processes")
    # Spawned, not forked: a fork of a process whose torch/OpenMP threads have run can hang.
    pool = ProcessPoolExecutor(max_workers=min(workers, len(seeds)),
                               mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = [pool.submit(_make_and_save, seed, config, out, dicom) for seed in seeds]
        for done, future in enumerate(futures, start=1):
            future.result()
            progress.update(done / total, f"subject {done}/{len(seeds)}")
        return [future.result() for future in futures]
    finally:  # on an error or a cancel, subjects not started are not made
        pool.shutdown(wait=True, cancel_futures=True)


def make_cohort(kind: str, seeds: list[int], out: str | Path, config: SubjectConfig | None = None,
                progress: Progress | None = None, workers: int = 1, dicom: bool = False) -> Path:
    """Generate and save ``seeds`` subjects; writes ``<out>/<kind>_labels.csv``.

    One row per subject: image paths, ground-truth label map paths (``*_truth.nii.gz``),
    the weak labels of :func:`weak_labels` and ``targets.json`` (everything known).
    ``workers`` > 1 generates subjects in that many processes; every subject depends only
    on its seed and ``config``, so the files are the same whatever ``workers``.
    ``dicom``: also each image as a DICOM series (column ``<name>_dicom``, the folder).
    """
    progress = ensure_progress(progress)
    config = replace(config or SubjectConfig(), kind=kind)
    rows = _rows(list(seeds), config, out, workers, progress, dicom)
    progress.update(1.0, "done")
    path = Path(out) / f"{kind}_labels.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(rows)
    return path
