"""A reader's review decisions (the feedback store) as content of the SR.

The feedback store (:mod:`lesion_core.feedback`) keeps every decision as a record with
its reader and time; the latest record per target that is not undone stands. The tasks
write, under kinds named ``<task>.<what>``:

* CMB (``cmb.decision``): ``{"decision": "accept" | "reject" | "add", "centre_ras":
  [R, A, S]}`` per microbleed (a geometry key as target);
* WMH (``wmh.rating``): ``{"rating": 0-3}`` per ARWMC region-side, ``0-30`` for
  ``"total"``;
* ICH (``ich.slice_label``): ``{"haemorrhage": bool, "subtypes": [...]}`` per slice
  (target ``"slice:<k>"``).

:func:`read_review` gathers the standing records of a task's kinds from a case, and
:class:`Review` reads them by the shape of their payloads (this package sits below the
task packages, so it does not import their modules). In the SR
(:mod:`.measurements`): a CMB decision becomes a qualitative evaluation "Reader
decision: Accepted/Rejected by reader" in the group of the microbleed it was made on
(matched by centre, within :data:`MATCH_DISTANCE_MM`) and the reader's counts of
accepted, rejected and added microbleeds go with the CMB count; a reader's ARWMC rating
is a second "ARWMC rating" measurement of its region-side with the method "Reader
rating"; ICH slice labels become the counts of slices the reader labelled with and
without haemorrhage. The reader is the report's person observer, and each group with a
decision says who decided and when (its Session text).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..feedback import FeedbackStore, Record

#: A CMB decision is about the kept microbleed whose centre is this near (mm, RAS), as
#: the CMB review matches a re-run's candidates to earlier decisions.
MATCH_DISTANCE_MM = 3.0
CMB_DECISIONS = ("accept", "reject", "add")


def read_review(store: str | Path, case_id: str, task: str) -> list[Record]:
    """The standing records of ``task``'s kinds (``<task>.*``) in one case of a store,
    oldest first (a case without any: an empty list)."""
    state = FeedbackStore(store).case(case_id).state()
    records = [r for (kind, _), r in state.decisions.items() if kind.startswith(f"{task}.")]
    return sorted(records, key=lambda r: r.time)


@dataclass
class Review:
    """A task's standing review records, read for the SR."""

    records: list[Record] = field(default_factory=list)

    @property
    def readers(self) -> list[str]:
        """The readers who decided, most recent last (each once)."""
        return list(dict.fromkeys(r.reader for r in sorted(self.records, key=lambda r: r.time)))

    @property
    def reader(self) -> str | None:
        """The reader named as the report's person observer: the latest one."""
        return self.readers[-1] if self.records else None

    def session(self, records: Sequence[Record]) -> str | None:
        """Who decided and when, for the groups holding ``records``."""
        if not records:
            return None
        latest = max(records, key=lambda r: r.time)
        return f"reader review: {', '.join(dict.fromkeys(r.reader for r in records))}, " \
               f"last decision {latest.time}"

    # ------------------------------------------------------------------- CMB
    def cmb_decisions(self) -> list[Record]:
        return [r for r in self.records if r.payload.get("decision") in CMB_DECISIONS]

    def cmb_by_candidate(self, candidates: Sequence[dict]) -> dict[str, Record]:
        """Candidate id (text) -> the decision made on it: each decision on the nearest
        kept candidate within :data:`MATCH_DISTANCE_MM`, nearest pairs first."""
        decisions = [r for r in self.cmb_decisions() if _centre(r) is not None]
        kept = [c for c in candidates if c.get("kept")]
        if not decisions or not kept:
            return {}
        a = np.asarray([_centre(r) for r in decisions], float)
        b = np.asarray([c["centre_ras"] for c in kept], float)
        distance = np.linalg.norm(a[:, None] - b[None], axis=-1)
        out: dict[str, Record] = {}
        used: set[int] = set()
        for flat in np.argsort(distance, axis=None):
            i, j = divmod(int(flat), len(kept))
            if distance[i, j] > MATCH_DISTANCE_MM:
                break
            key = str(kept[j]["id"])
            if i not in used and key not in out:
                out[key] = decisions[i]
                used.add(i)
        return out

    def cmb_counts(self) -> dict[str, int]:
        """How many microbleeds the reader accepted, rejected and added."""
        decided = [r.payload["decision"] for r in self.cmb_decisions()]
        return {d: decided.count(d) for d in CMB_DECISIONS}

    # ------------------------------------------------------------------- WMH
    def ratings(self) -> dict[str, tuple[int, Record]]:
        """Target (region-side or ``"total"``) -> (the reader's rating, its record)."""
        out = {}
        for r in self.records:
            value = r.payload.get("rating")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[r.target] = (int(value), r)
        return out

    # ------------------------------------------------------------------- ICH
    def slice_labels(self) -> dict[int, tuple[bool, Record]]:
        """Slice index -> (haemorrhage, record) of the reader's slice labels."""
        out = {}
        for r in self.records:
            if r.target.startswith("slice:") and isinstance(r.payload.get("haemorrhage"), bool):
                try:
                    out[int(r.target.split(":", 1)[1])] = (r.payload["haemorrhage"], r)
                except ValueError:
                    continue
        return out


def review_from_store(store: str | Path, case_id: str, task: str) -> Review | None:
    """The :class:`Review` of a case (None when it holds no decision of the task)."""
    records = read_review(store, case_id, task)
    return Review(records) if records else None


def _centre(record: Record):
    centre = record.payload.get("centre_ras")
    try:
        point = np.asarray(centre, float).reshape(3)
    except (TypeError, ValueError):
        return None
    return point if np.all(np.isfinite(point)) else None
