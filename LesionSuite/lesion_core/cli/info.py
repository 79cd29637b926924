"""``lesion-suite info FILE|DICOMDIR``: geometry, orientation, intensities, modality guess."""

from __future__ import annotations

import argparse
import json

import numpy as np

from ..io import image_format, read_volume
from ..validation import guess_modality
from ..volume import Volume


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("info", help="describe an image (NIfTI, NRRD or DICOM series)")
    parser.add_argument("path", help="image file or DICOM series folder")
    parser.add_argument("--series", default=None, help="SeriesInstanceUID, for a folder of several")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run)


def _orientation(volume: Volume) -> tuple[str | None, bool | None]:
    """(axis code, oblique?) of the affine; (None, None) when a damaged header makes the
    voxel-to-world matrix non-finite or degenerate, where no axis code exists."""
    import nibabel.orientations as nio  # not at import: Slicer loads modules without nibabel

    matrix = volume.affine[:3, :3]
    if not np.all(np.isfinite(volume.affine)) or not np.all(volume.spacing > 0):
        return None, None
    try:
        codes = nio.aff2axcodes(volume.affine)
    except np.linalg.LinAlgError:  # SVD of an extreme matrix may not converge
        return None, None
    if None in codes or abs(np.linalg.det(matrix)) == 0:
        return None, None
    return "".join(codes), volume.is_oblique


def describe_volume(volume: Volume) -> dict:
    """Facts about an image as plain JSON-able values (mm, RAS)."""
    array = volume.array
    finite = array[np.isfinite(array)] if np.issubdtype(array.dtype, np.floating) else array
    # info describes any readable file, even one validate refuses for values near the
    # float limits: their percentiles and modality guess may overflow, and must not warn.
    with np.errstate(over="ignore", invalid="ignore"):
        percentiles = np.percentile(finite, [1, 50, 99]) if finite.size else [np.nan] * 3
        modality = guess_modality(volume) if finite.size else "unknown"
        orientation, oblique = _orientation(volume)
    return {
        "file": volume.source,
        "format": volume.meta.get("source_format"),
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "spacing_mm": [round(float(s), 6) for s in volume.spacing],
        "orientation": orientation,
        "oblique": oblique,
        "affine_voxel_to_ras": np.round(volume.affine, 6).tolist(),
        "ras_bounds_mm": np.round(volume.world_bounds(), 3).tolist(),
        "intensity": {
            "min": float(finite.min()) if finite.size else None,
            "p1": float(percentiles[0]), "median": float(percentiles[1]),
            "p99": float(percentiles[2]),
            "max": float(finite.max()) if finite.size else None,
            "non_finite_voxels": int(array.size - finite.size),
        },
        "modality_guess": modality,
        "metadata": {k: v for k, v in volume.meta.items() if k != "source_format"},
    }


def run(args: argparse.Namespace) -> int:
    image_format(args.path)  # a clear error for a missing or unsupported path first
    facts = describe_volume(read_volume(args.path, series_uid=args.series))
    if args.json:
        print(json.dumps(facts, indent=2, default=str))
        return 0
    intensity = facts["intensity"]
    orientation = facts["orientation"] or ("unknown (the voxel-to-world matrix is not finite "
                                           "or is degenerate)")
    lines = [
        f"file:         {facts['file']} ({facts['format']})",
        f"shape:        {' x '.join(map(str, facts['shape']))} ({facts['dtype']})",
        f"spacing:      {' x '.join(f'{s:g}' for s in facts['spacing_mm'])} mm",
        f"orientation:  {orientation}{' (oblique)' if facts['oblique'] else ''}",
        "RAS bounds:   " + ", ".join(f"{lo:.1f}..{hi:.1f}" for lo, hi in facts["ras_bounds_mm"])
        + " mm",
        "intensity:    " + ", ".join(  # None: no finite voxel at all
            f"{key} {'none' if intensity[k] is None else format(intensity[k], 'g')}"
            for key, k in (("min", "min"), ("p1", "p1"), ("median", "median"),
                           ("p99", "p99"), ("max", "max"))),
        f"modality:     {facts['modality_guess']} (guessed from intensities"
        f"{' and the DICOM tag' if 'modality' in facts['metadata'] else ''})",
    ]
    if intensity["non_finite_voxels"]:
        lines.append(f"warning:      {intensity['non_finite_voxels']:,} NaN/inf voxels")
    print("\n".join(lines))
    return 0
