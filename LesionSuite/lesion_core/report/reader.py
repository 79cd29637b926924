"""The reader's decisions about an image in a feedback store (:mod:`lesion_core.feedback`).

A store keeps one case per reviewed image. The case of a report's image is, in this order:
the case named by the caller; the case whose ``case.json`` names the same image file; the
case whose id ends in the image's digest (:func:`lesion_core.feedback_cases.case_id_for_volume`,
the id the Slicer modules give an image). What each task reads from the case is in
:mod:`.wmh`, :mod:`.cmb` and :mod:`.ich`.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CommandError, FeedbackStoreError
from ..feedback import CaseFeedback, FeedbackStore
from ..volume import Volume


def find_reader_case(store_root: str | Path, image: Volume, image_path: str | Path | None,
                     case_id: str | None = None) -> CaseFeedback | None:
    """The store's case about ``image`` (see the module notes), or None when the store
    has none; a store that is not a folder, or a named case it lacks, is one clear
    error."""
    from ..feedback_cases import case_id_for_volume, find_case_id

    store = FeedbackStore(store_root)
    if not store.root.is_dir():
        raise CommandError("is not a feedback store folder",
                           "give the folder the Slicer modules or the demo wrote decisions "
                           "to, or leave out --feedback", store.root)
    cases = store.cases()
    if case_id is not None:
        if case_id not in cases:
            raise CommandError(f"has no case {case_id!r}",
                               f"choose one of {', '.join(cases) or '(none)'}", store.root)
        return store.case(case_id)
    if image_path is not None:
        wanted = Path(image_path).resolve()
        for name in cases:
            try:
                named = store.case(name).info().get("image")
            except FeedbackStoreError:  # a damaged case.json: the digest may still find it
                continue
            if isinstance(named, str) and named and Path(named).resolve() == wanted:
                return store.case(name)
    by_digest = find_case_id(store, case_id_for_volume("image", image))
    return store.case(by_digest) if by_digest in cases else None


def when(time: str | None) -> str:
    """A record's ISO time shortened to minutes (``2025-01-31 14:05 UTC``)."""
    if not time:
        return "–"
    text = str(time).replace("T", " ")
    return (text[:16] + " UTC") if text.endswith("Z") else text[:16]
