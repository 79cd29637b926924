"""The synthetic small-vessel-disease and haemorrhage cohort (demo, test and benchmark data).

Subjects are built from the MNI152 2009 template shipped inside the nilearn wheel, warped
by a known random transform, with lesions inserted and contrast synthesised per modality;
see :mod:`lesion_core.synth.cohort`. Synthetic data are not evidence of clinical accuracy.
"""

from .cohort import KINDS, SubjectConfig, SyntheticSubject, make_cohort, make_subject, save_subject

__all__ = ["KINDS", "SubjectConfig", "SyntheticSubject", "make_cohort", "make_subject", "save_subject"]
