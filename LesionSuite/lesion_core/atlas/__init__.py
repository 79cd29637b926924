"""MNI-space atlases and the tissue model that prediction, registration and the synthetic
cohort all use.

- :mod:`.template`: the MNI152 2009 tissue maps (built from nilearn's files, cached on disk)
  and the cache of everything derived from them;
- :mod:`.tissues`: tissue means per modality and the partial-volume tissue mixture;
- :mod:`.arwmc`: the ARWMC region-side atlas and its vocabulary (``REGIONS``, ``LABELS``);
- :mod:`.mars`: the MARS microbleed location rules and categories (``classify_mni``).

This package sits below the tasks and the generator (:mod:`lesion_core.synth` imports it,
never the reverse). Importing it is light: numpy and scipy, no torch or nibabel.
"""
