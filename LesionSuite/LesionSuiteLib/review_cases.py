"""The feedback-store case of a volume node, for the task modules' review panels.

A reviewed volume node maps to one case of a :class:`lesion_core.feedback.FeedbackStore`
by the digest of its voxels and geometry (:func:`lesion_core.feedback_cases.
case_id_for_volume`), so the same scan loaded twice is one case and a renamed volume keeps
its case. The case's image, named in ``case.json`` before the first decision, is the
node's file when it has one, else the voxels themselves (:func:`case_image`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from lesion_core.errors import FeedbackStoreError
from lesion_core.feedback import CaseFeedback, FeedbackStore
from lesion_core.feedback_cases import case_id_for_volume, ensure_case_image, find_case_id
from lesion_core.volume import Volume

from .volumes import node_to_volume

T = TypeVar("T")


def case_image(node, volume: Volume) -> Volume | Path:
    """What to store as the case's image: the node's file when it has one and the voxels
    were not changed since it was read (no copy needed), else the voxels themselves
    (saved into the case folder with the first decision)."""
    storage = node.GetStorageNode()
    path = Path(storage.GetFileName()) if storage is not None and storage.GetFileName() \
        else None
    if path is not None and path.is_file() and not node.GetModifiedSinceRead():
        return path.resolve()
    return Volume(volume.array, volume.affine)  # no source: it is not a file


@dataclass
class VolumeCase:
    """A volume node's case. ``image``: the node's voxels in its local voxel-to-RAS (mm)
    geometry (``world=False``); ``stored_image``: what :func:`case_image` says to store."""

    case: CaseFeedback
    image: Volume
    stored_image: Volume | Path


def open_volume_case(feedback_root: str | Path, volume_node) -> VolumeCase:
    """The case of ``volume_node`` in the store at ``feedback_root`` (nothing is written:
    the case folder appears with the first decision)."""
    image = node_to_volume(volume_node, world=False)
    store = FeedbackStore(feedback_root)
    case_id = find_case_id(store, case_id_for_volume(volume_node.GetName(), image))
    return VolumeCase(store.case(case_id), image, case_image(volume_node, image))


def store_case_image(case: CaseFeedback, image: Volume | Path, modality: str) -> Path:
    """Name the case's image in the store before its first decision (training needs it);
    a failure to write becomes the store's clear ``FeedbackStoreError``."""
    try:
        return ensure_case_image(case, image, modality)
    except OSError as exc:
        raise FeedbackStoreError(f"cannot store the case's image ({exc})",
                                 "Check that the feedback folder is writable and the "
                                 "disk not full", source=case.folder) from exc


def read_noting_damage(read: Callable[[], T]) -> tuple[T, list[str]]:
    """``(read(), messages)``: the store's warnings about lines it skipped (a record cut
    off by a crash, a damaged line) are returned for the panel to show, not printed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = read()
    return value, [str(w.message) for w in caught]
