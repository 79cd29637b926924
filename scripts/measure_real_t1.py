"""Measure the real T1 example once: brain mask and histogram peak ratios.

Registers the MNI template to ``Testing/Data/real/t1_deep-T1-WMH_example.nii.gz`` (a few
seconds, needs SimpleITK), writes the brain mask beside it and a small JSON with the GM/WM
and CSF/WM peak ratios, which ``Testing/test_synth_realism.py`` compares the synthetic T1
against:

    Testing/Data/real/t1_deep-T1-WMH_example_brainmask.nii.gz
    Testing/Data/real/t1_deep-T1-WMH_example_peaks.json

Run from the repository root:  python scripts/measure_real_t1.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lesion_core.io import read_volume, write_volume
from lesion_core.registration import brain_mask, register_to_mni
from lesion_core.synth.realism import histogram_peaks

REAL = Path(__file__).resolve().parents[1] / "Testing" / "Data" / "real"
IMAGE = REAL / "t1_deep-T1-WMH_example.nii.gz"
MASK = REAL / "t1_deep-T1-WMH_example_brainmask.nii.gz"
PEAKS = REAL / "t1_deep-T1-WMH_example_peaks.json"


def main() -> None:
    image = read_volume(IMAGE)
    registration = register_to_mni(image, "T1")
    mask_volume = brain_mask(image, registration, "T1")
    write_volume(mask_volume, MASK)
    mask = mask_volume.array > 0
    peaks = histogram_peaks(image, mask)
    record = {
        "image": IMAGE.name,
        "brain_mask": {"file": MASK.name,
                       "method": "lesion_core.registration: MNI template registered (SimpleITK, "
                                 "Mattes MI, similarity then affine), brain mask carried back "
                                 "and refined by intensity",
                       "volume_ml": round(float(mask.sum() * image.voxel_volume_ml), 1),
                       "ras_to_mni": np.round(registration.subject_ras_to_mni, 5).tolist()},
        "histogram_method": peaks["method"],
        "peaks": {k: round(v, 3) for k, v in peaks["peaks"].items()},
        "gm_wm": round(peaks["gm_wm"], 4),
        "csf_wm": round(peaks["csf_wm"], 4),
        "made_by": "scripts/measure_real_t1.py",
    }
    PEAKS.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
