"""The one report type of a task's ``evaluate``: a model scored on a cohort's truth.

Every task returns an :class:`EvaluationReport`: which model, on which cohort and how it
was run (``facts``: e.g. WMH's atlases, ICH's precision), one row of figures per case and
the cohort summary. The command line prints :meth:`EvaluationReport.headline` and the
task's summary lines, writes :meth:`EvaluationReport.as_dict` as JSON, and ``--record``
stores :meth:`EvaluationReport.record` in the model's card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class EvaluationReport:
    """A model's figures on a cohort (all JSON-safe).

    Attributes:
        task: the task's name (``"wmh"``, ``"cmb"``, ``"ich"``).
        model, model_version: the model's name and version.
        modality: what the model was run on (FLAIR, T1, SWI, T2star, CT).
        cohort: the cohort folder or table.
        facts: how the evaluation ran (atlases, precision, the mask combination...).
        cases: one dict of figures per case, in cohort order.
        summary: the figures pooled over the cohort (each task's own keys).
    """

    task: str
    model: str
    model_version: str
    modality: str
    cohort: str
    facts: dict[str, Any] = field(default_factory=dict)
    cases: list[dict] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON document of the report (``--json``)."""
        from ..jsonable import json_safe

        return json_safe({"task": self.task, "model": self.model,
                          "model_version": self.model_version, "modality": self.modality,
                          "cohort": self.cohort, **self.facts, "summary": self.summary,
                          "cases": self.cases})

    def headline(self) -> str:
        """One line: which model on how many subjects of which cohort, and how."""
        how = "; ".join(f"{key}: {value}" for key, value in self.facts.items())
        count = f"{len(self.cases)} subject{'' if len(self.cases) == 1 else 's'}"
        return (f"{self.modality} model {self.model} {self.model_version} on {count} of "
                f"{self.cohort}" + (f" ({how})" if how else ""))

    def record(self, truth: str) -> dict[str, Any]:
        """What a model card's ``evaluation`` entry keeps of this report (the cohort's
        folder name only: a card must not carry the machine's paths; ``truth``: what the
        figures were scored against)."""
        from ..jsonable import json_safe

        return json_safe({"cohort": Path(self.cohort).name, "subjects": len(self.cases),
                          "truth": truth, **self.facts, **self.summary})
