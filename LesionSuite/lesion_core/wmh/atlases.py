"""A subject's brain mask, ARWMC region-side atlas and zone atlas on its image grid.

- :func:`subject_atlases`: affine registration to MNI (SimpleITK, mutual information),
  the brain mask (registered template mask refined by intensity), and both atlases
  carried from MNI onto the image by nearest neighbour;
- :func:`atlases_on_image`: atlases the caller already has (a known transform, a
  folder), put on the image grid by nearest neighbour where they are not on it;
- :func:`read_atlases` / :func:`write_atlases`: such a folder (:data:`ATLAS_FILES`), which
  is how ``lesion-suite wmh predict --atlases DIR`` skips the registration.

Both ways end with :func:`fill_brain_labels`: the brain mask and the template's atlases
do not end on the same voxel, so a brain voxel at the edge can have atlas label 0. Every
such voxel takes the label of the nearest labelled voxel (Euclidean distance in mm,
searched within the brain's bounding box), and labels outside the brain are set to 0: each
brain voxel has exactly one region-side and one zone, so the volumes per region and per
zone add up to the lesion volume. An atlas with no label at all in that box stays empty.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from .. import io as lesion_io
from ..errors import UnreadableFileError
from ..atlas.arwmc import arwmc_atlas_mni
from ..volume import Volume
from .zones import zone_atlas_mni

#: File names of an atlas folder (NIfTI label maps: brain 0/1, region-sides, zones).
ATLAS_FILES = {"brain": "brain.nii.gz", "arwmc": "arwmc.nii.gz", "zones": "zones.nii.gz"}
#: Largest affine difference (mm) between two grids taken as the same (float32 headers).
SAME_GRID_MM = 1e-4


@dataclass
class SubjectAtlases:
    """Brain mask, ARWMC region-side atlas and zone atlas on one image's grid (``uint8``
    Volumes; region labels are ``REGIONS`` index + 1, zones ``ZONES`` index + 1)."""

    brain: Volume
    arwmc: Volume
    zones: Volume
    info: dict = field(default_factory=dict)


def fill_brain_labels(labels: np.ndarray, brain: np.ndarray,
                      spacing_mm=(1.0, 1.0, 1.0)) -> np.ndarray:
    """``labels`` with every unlabelled (0) brain voxel given the label of the nearest
    labelled voxel (distance in mm with ``spacing_mm``) and 0 outside ``brain``.

    Only the brain's bounding box is searched, which keeps the distance transform small.
    """
    return fill_brain_label_maps([labels], brain, spacing_mm)[0]


def fill_brain_label_maps(maps: Sequence[np.ndarray], brain: np.ndarray,
                          spacing_mm=(1.0, 1.0, 1.0)) -> list[np.ndarray]:
    """:func:`fill_brain_labels` of each of ``maps``. Maps labelled at the same voxels
    (the region-side and zone atlases carried by one transform are) share one distance
    transform, the costly step."""
    brain = np.asarray(brain) > 0
    boxes = ndimage.find_objects(brain.astype(np.uint8))
    if not boxes:
        return [np.zeros_like(np.asarray(m)) for m in maps]
    box, inside = boxes[0], brain[boxes[0]]
    filled, last = [], None  # last: (unlabelled, nearest-labelled indices) of a map before
    for labels in maps:
        labels = np.asarray(labels)
        region = labels[box]
        unlabelled = region == 0
        if np.any(inside & unlabelled) and not unlabelled.all():
            if last is None or not np.array_equal(last[0], unlabelled):
                # Indices of the nearest zero of ``unlabelled``, i.e. the nearest labelled voxel.
                last = (unlabelled, ndimage.distance_transform_edt(
                    unlabelled, sampling=spacing_mm, return_distances=False,
                    return_indices=True))
            region = region[tuple(last[1])]
        out = np.zeros_like(labels)
        out[box] = np.where(inside, region, 0)
        filled.append(out)
    return filled


def _completed(brain: Volume, arwmc: Volume, zones: Volume, info: dict) -> SubjectAtlases:
    mask = np.asarray(brain.array) > 0
    spacing = tuple(float(s) for s in brain.spacing)
    arwmc_filled, zones_filled = fill_brain_label_maps(
        [np.asarray(arwmc.array, np.uint8), np.asarray(zones.array, np.uint8)], mask, spacing)
    return SubjectAtlases(brain.with_array(mask.astype(np.uint8)),
                          arwmc.with_array(arwmc_filled), zones.with_array(zones_filled),
                          dict(info))


def subject_atlases(image: Volume, modality: str) -> SubjectAtlases:
    """Register ``image`` to MNI and carry the brain mask and both atlases onto its grid
    (completed as the module notes say)."""
    from .. import registration  # SimpleITK: only when registering

    result = registration.register_to_mni(image, modality)
    arwmc, arwmc_affine, _ = arwmc_atlas_mni()
    zones, zone_affine, _ = zone_atlas_mni()
    # The atlases are carried on a second thread while the brain mask is made: scipy's
    # resampling releases the GIL, so the two overlap on two cores.
    with ThreadPoolExecutor(max_workers=1) as pool:
        carried = [pool.submit(result.carry_mni_map, atlas, affine, 0, grid=image)
                   for atlas, affine in ((arwmc, arwmc_affine), (zones, zone_affine))]
        brain = registration.brain_mask(image, result, modality)
        arwmc_map, zone_map = (future.result() for future in carried)
    return _completed(brain, arwmc_map, zone_map,
                      {"registration_metric": result.metric, **result.info})


def atlases_on_image(atlases: SubjectAtlases, image: Volume) -> SubjectAtlases:
    """``atlases`` (any grid) on ``image``'s grid, nearest neighbour where they are not
    on it already (0 outside their field of view), then completed (module notes)."""
    def on_grid(volume: Volume) -> Volume:
        array = np.asarray(volume.array)
        if volume.shape[:3] != image.shape[:3] or not np.allclose(
                volume.affine, image.affine, rtol=0, atol=SAME_GRID_MM):
            array = volume.resample_to_grid(image.affine, image.shape[:3], order=0,
                                            fill=0).array
        if array.dtype != np.uint8:  # label maps read from files may be float
            array = np.rint(array).astype(np.uint8)
        return image.with_array(array)

    return _completed(on_grid(atlases.brain), on_grid(atlases.arwmc), on_grid(atlases.zones),
                      atlases.info)


def write_atlases(atlases: SubjectAtlases, folder: str | Path) -> Path:
    """Write the three maps into ``folder`` under :data:`ATLAS_FILES`; returns the folder."""
    folder = Path(folder)
    for key, name in ATLAS_FILES.items():
        lesion_io.write_volume(getattr(atlases, key), folder / name)
    return folder


def read_atlases(folder: str | Path) -> SubjectAtlases:
    """The maps :func:`write_atlases` wrote (on any grid; see :func:`atlases_on_image`).

    Raises:
        UnreadableFileError: a file is missing (named with what the folder must hold) or
            cannot be read.
    """
    folder = Path(folder)
    for name in ATLAS_FILES.values():
        if not (folder / name).is_file():
            raise UnreadableFileError(
                f"there is no {name}", "give a folder holding " + ", ".join(
                    ATLAS_FILES.values()) + " (brain mask, ARWMC region-sides, zones)", folder)
    return SubjectAtlases(**{key: lesion_io.read_volume(folder / name)
                             for key, name in ATLAS_FILES.items()},
                          info={"atlases": f"read from {folder}"})
