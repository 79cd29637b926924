"""A reader's saved work of each task module, made by a fixed script of review actions.

``Testing/Data/saved_work/<task>/`` holds the feedback store these actions wrote with the
Slicer task modules of before the shared task layer (``python Testing/saved_work.py
DIR`` wrote it; the case images were saved into the case folders because the input nodes
had no file). ``test_saved_reader_work.py`` checks that today's reviews read that store
as the reader left it, and that the same actions write the same records.

Each task's input is noise-free and small (so the committed case images are a few kB)
and deterministic, so the case id (name plus image digest) of a node made again equals
the stored one.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

import cmb_outputs as co
import ich_outputs as io_
from geometry import oblique_lps_affine
from lesion_core.volume import Volume
from LesionSuiteLib import mrml_bridge as mb

DATA = Path(__file__).resolve().parent / "Data" / "saved_work"
READER = "dr-before"
TASKS = ("wmh", "cmb", "ich")


# ------------------------------------------------------------------ inputs


def wmh_image() -> Volume:
    """A 24 x 28 x 16 FLAIR-like block (oblique, LPS, 2 x 2 x 3 mm): grey with a bright
    patch."""
    array = np.full((24, 28, 16), 300.0, np.float32)
    array[8:14, 10:16, 6:9] = 700.0
    return Volume(array, oblique_lps_affine(spacing=(2.0, 2.0, 3.0)))


def wmh_outputs(image: Volume):
    """Hand-made WMH outputs on ``image``'s grid (FLAIR mode: ratings and levels)."""
    from lesion_core.atlas.arwmc import REGIONS
    from WMHDualTaskerLib.outputs import WMHOutputs

    labels = (image.array > 500).astype(np.uint8)
    regions = np.zeros(image.shape, np.uint8)
    for value in range(1, len(REGIONS) + 1):  # one slab per region-side
        regions[:, :, value - 1] = value
    ratings = {name: round(0.25 * (n % 4), 2) for n, name in enumerate(REGIONS)}
    summary = {"model": "wmh_flair_dualtasker", "model_version": "1.0", "modality": "FLAIR",
               "ratings": ratings, "levels": {k: int(round(v)) for k, v in ratings.items()},
               "arwmc_total": 4, "lesion_ml": 1.296,
               "region_ml": {name: 0.0 for name in REGIONS}}
    return WMHOutputs(image.with_array(labels), image.with_array(labels.astype(np.float32)),
                      image.with_array(regions), summary)


def cmb_image() -> Volume:
    """The CMB test volume (``cmb_outputs``) without its noise."""
    array = np.full(co.SHAPE, 400.0, np.float32)
    for spec in co.SPECS:
        array[co._ball(spec)] = 60.0
    return Volume(array, oblique_lps_affine(spacing=(1.0, 1.0, 1.5)))


def ich_image() -> Volume:
    """The ICH test CT (``ich_outputs``) without its noise."""
    noisy = io_.ct_volume(0)
    i, j, _ = np.indices(io_.SHAPE)
    radius = np.hypot((i - 19.5) / 18.0, (j - 17.5) / 16.0)
    array = np.where(radius < 1.0, 1000, -1000)
    array = np.where(radius < 0.85, 35, array)
    array[io_.label_map() > 0] = 70
    return noisy.with_array(array.astype(np.int16))


# ------------------------------------------------------------------ results


@dataclass
class Case:
    """One task's result nodes and how to open its review."""

    task: str
    logic: Any
    result: Any
    open_review: Callable[[Path], Any]


def logic_of(task: str):
    """A new Logic of the task module."""
    from CMBDetectorLib.logic import CMBDetectorLogic
    from ICHWeakSegLib.logic import ICHWeakSegLogic
    from WMHDualTaskerLib.logic import WMHDualTaskerLogic

    return {"wmh": WMHDualTaskerLogic, "cmb": CMBDetectorLogic, "ich": ICHWeakSegLogic}[task]()


#: Per task: its input image and the input volume node's name.
INPUTS = {"wmh": (wmh_image, "FLAIR"), "cmb": (cmb_image, "SWI"), "ich": (ich_image, "CT")}


def make_case(task: str, scene, work: Path) -> Case:
    """The result nodes of ``task`` on its input, added to ``scene``: WMH's from outputs
    made here, CMB's and ICH's from the files a run writes, in ``work/<task>``."""
    logic = logic_of(task)
    make_image, name = INPUTS[task]
    image = make_image()
    node = mb.volume_to_node(scene, image, name)
    if task == "wmh":
        result = logic.add_result_nodes(node, wmh_outputs(image))
    else:
        {"cmb": co.write_outputs, "ich": io_.write_outputs}[task](work / task, image)
        # No stored reader mask for ICH: the result shows the model's segmentation.
        options = {"feedback_root": work / "no-store"} if task == "ich" else {}
        result = logic.load_results(node, work / task, **options)
    return Case(task, logic, result,
                lambda root: logic.open_review(result, root, reader=READER))


# ------------------------------------------------------------------ actions


def play(task: str, review) -> None:
    """The reader's actions on one case (corrections and an undo included)."""
    if task == "wmh":
        review.set_rating("frontal_left", 2)
        review.set_rating("total", 11)
        review.set_rating("temporal_right", 1)
        review.set_rating("temporal_right", 3)
        review.undo()                                   # temporal_right back to 1
        review.set_rating_text("parieto_occipital_left", "2")
        review.clear("parieto_occipital_left")
    elif task == "cmb":
        review.accept()                                 # candidate 1, then on to 2
        review.reject()                                 # candidate 2
        review.accept(2)                                # rescued from stage 2
        review.add(np.array(review.items[0].centre_ras) + [0.0, 0.0, 9.0], diameter_mm=4.0)
        review.accept(4)
        review.undo()                                   # candidate 5's accept
    elif task == "ich":
        review.mark_haemorrhage(["subdural"], row=4)
        review.mark_no_haemorrhage(row=0)
        review.mark_haemorrhage(row=7)
        review.mark_haemorrhage(["intraparenchymal", "subarachnoid"], row=7)
        review.mark_no_haemorrhage(row=5)
        review.undo()                                   # slice 5 unlabelled again
        review.save_reader_mask()                       # version 1: the model's mask
    else:
        raise ValueError(task)


def write_saved_work(folder: Path) -> None:
    """Play every task's actions into ``folder/<task>`` (a store each)."""
    from LesionSuiteLib.scene import create_scene, release_scene

    scene = create_scene()
    try:
        for task in TASKS:
            case = make_case(task, scene, folder / "work")
            play(task, case.open_review(folder / task))
    finally:
        release_scene(scene)


if __name__ == "__main__":
    import shutil

    for folder in ("WMHDualTasker", "CMBDetector", "ICHWeakSeg"):  # as conftest.py does
        sys.path.append(str(Path(__file__).resolve().parent.parent / folder))
    out = Path(sys.argv[1])
    write_saved_work(out)
    shutil.rmtree(out / "work")
