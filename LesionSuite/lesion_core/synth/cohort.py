"""Synthetic subjects with known ground truth: the demo, test and benchmark data.

``make_subject(kind, seed)`` draws an anatomy, inserts the kind's lesions (and mimics),
renders each modality and acquires it. Everything is reproducible from ``(kind, seed,
config)``. Kinds and their images:

- ``"wmh"``: FLAIR + 3D T1 with white-matter hyperintensities and their ARWMC rating;
- ``"cmb"``: SWI (or T2*-GRE) with microbleeds and mimics;
- ``"ich"``: non-contrast CT in HU with haemorrhage, subtypes and per-slice labels.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..io import write_volume
from ..jsonable import json_safe
from ..progress import Progress, ensure_progress
from ..volume import Volume
from . import KINDS  # defined in the package: listing the kinds needs no torch
from .acquisition import AcquisitionConfig, acquire
from .anatomy import AnatomyConfig, SubjectAnatomy, make_anatomy
from .contrast import render
from .lesions import LesionInsertion

#: Slice thickness (mm) of the simulated thick-slice FLAIR rater labels of WMH subjects.
THICK_LABEL_MM = 5.0


@dataclass(frozen=True)
class SubjectConfig:
    """What to generate. ``acquisition[modality]`` overrides the random acquisition."""

    kind: str = "wmh"
    anatomy: AnatomyConfig = AnatomyConfig()
    acquisition: dict[str, AcquisitionConfig] = field(default_factory=dict)
    severity: float | None = None       # wmh: 0-1 lesion load; ich: haemorrhage size scale
    lesion_count: int | None = None     # cmb: number of microbleeds
    ich_probability: float = 0.8        # ich: fraction of subjects with haemorrhage
    swi_variant: str | None = None      # cmb: "SWI" or "T2star" (random when None)


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
            config: SubjectConfig, modalities: dict[str, str]) -> LesionInsertion:
    if kind == "wmh":
        from .wmh import insert_wmh
        return insert_wmh(anatomy, rng, config.severity)
    if kind == "cmb":
        from .cmb import draw_blooming, insert_cmbs
        # T2*-GRE (longer TE) blooms more than SWI: the variant sets the blooming factor.
        variant = next(iter(modalities))
        return insert_cmbs(anatomy, rng, config.lesion_count, blooming=draw_blooming(rng, variant))
    from .ich import insert_ich
    return insert_ich(anatomy, rng, config.severity, config.ich_probability)


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


def make_subject(seed: int, config: SubjectConfig = SubjectConfig()) -> SyntheticSubject:
    """Generate one subject of ``config.kind`` (reproducible from ``seed``)."""
    if config.kind not in KINDS:
        raise ValueError(f"unknown kind {config.kind!r}; choose from {KINDS}")
    rng = np.random.default_rng([seed, KINDS.index(config.kind)])
    anatomy = make_anatomy(int(rng.integers(2 ** 31)), config.anatomy)
    modalities = _modalities(config.kind, config, rng)
    insertion = _insert(config.kind, anatomy, rng, config, modalities)
    # Normal structures and artefacts that mimic lesions (they carry no label).
    from .confounders import confounder_layers
    insertion.layers.extend(confounder_layers(config.kind, anatomy, rng))
    images, labels, facts = {}, {}, {}
    subject_labels = {name: anatomy.grid.with_array(array) for name, array in insertion.labels.items()}
    for name, contrast in modalities.items():
        rendered = anatomy.grid.with_array(render(anatomy, contrast, insertion.layers, rng))
        acq = config.acquisition.get(name, _default_acquisition(config.kind, name))
        if contrast == "SWI" and name == "T2star":
            acq = replace(acq, slice_thickness_mm=acq.slice_thickness_mm or float(rng.uniform(2, 4)))
        image, label_maps, facts[name] = acquire(rendered, subject_labels, name, acq, rng)
        image.meta["sequence"] = name
        images[name], labels[name] = image, label_maps
    targets = dict(insertion.targets)
    if config.kind == "ich":
        from .ich import slice_labels
        targets["slices"] = slice_labels(labels["CT"]["ich"], facts["CT"]["slice_axis"])
    targets.update({"age_years": round(anatomy.age_years, 1), "atrophy": round(anatomy.atrophy, 3)})
    return SyntheticSubject(f"{config.kind}_{seed:05d}", config.kind, seed, images, labels,
                            targets, facts, anatomy)


def save_subject(subject: SyntheticSubject, folder: str | Path) -> dict:
    """Write images, label maps and ``targets.json``; returns the manifest row (paths)."""
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
    (folder / "targets.json").write_text(json.dumps(
        json_safe({"targets": subject.targets, "acquisition": subject.acquisition}), indent=1))
    row["targets"] = str(folder / "targets.json")
    row.update(weak_labels(subject))
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


def make_cohort(kind: str, seeds: list[int], out: str | Path, config: SubjectConfig | None = None,
                progress: Progress | None = None) -> Path:
    """Generate and save ``seeds`` subjects; writes ``<out>/<kind>_labels.csv``.

    One row per subject: image paths, ground-truth label map paths (``*_truth.nii.gz``),
    the weak labels of :func:`weak_labels` and ``targets.json`` (everything known).
    """
    progress = ensure_progress(progress)
    config = replace(config or SubjectConfig(), kind=kind)
    rows = []
    for index, seed in enumerate(seeds):
        progress.update(index / max(len(seeds), 1), f"subject {index + 1}/{len(seeds)}")
        rows.append(save_subject(make_subject(seed, config), out))
    progress.update(1.0, "done")
    path = Path(out) / f"{kind}_labels.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(rows)
    return path
