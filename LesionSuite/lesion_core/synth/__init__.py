"""The synthetic small-vessel-disease and haemorrhage cohort (demo, test and benchmark data).

Subjects are built from the MNI152 2009 template (:mod:`lesion_core.atlas.template`),
warped by a known random transform, with lesions inserted and contrast synthesised per
modality; see :mod:`lesion_core.synth.cohort`. Synthetic data are not evidence of clinical
accuracy. This package only generates: the atlases, tissue means and location rules it
shares with prediction live in :mod:`lesion_core.atlas`, which never imports it.

Importing this package is light: the cohort builders (which use torch) are loaded on first
use, so e.g. ``KINDS`` is available before torch is installed.
"""

from __future__ import annotations

from importlib import import_module

#: The kinds of subject :func:`make_subject` builds (see :mod:`.cohort`).
KINDS = ("wmh", "cmb", "ich")
#: Contrast and acquisition domains of a subject (see :mod:`.domain`).
DOMAINS = ("standard", "randomized", "shifted")
_FROM_COHORT = ("SubjectConfig", "SyntheticSubject", "make_cohort", "make_subject",
                "save_subject")

__all__ = ["DOMAINS", "KINDS", *_FROM_COHORT]


def __getattr__(name: str):
    # Module-level attribute hook: ``from lesion_core.synth import make_subject`` imports
    # the cohort module only then.
    if name in _FROM_COHORT:
        return getattr(import_module(".cohort", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
