"""A WMH prediction running in a child process, followed from the GUI without blocking it.

The child is ``python -m lesion_core --progress-lines --error-json FILE wmh predict ...``
(built by :meth:`WMHDualTaskerLogic.prediction_command`); following it, cancelling it and
re-raising its error are shared by the task modules in
:class:`LesionSuiteLib.predictions.BackgroundPrediction` (why a child process, not a
thread: there). This subclass reads the WMH output files back.
"""

from __future__ import annotations

from LesionSuiteLib import predictions
from LesionSuiteLib.predictions import ERROR_FILE, OUT_DIR

from .outputs import WMHOutputs


class BackgroundPrediction(predictions.BackgroundPrediction):
    """One running ``lesion-suite wmh predict``; :meth:`outputs` gives
    :class:`~.outputs.WMHOutputs` on the input grid."""

    task = "WMH"

    def read_outputs(self) -> WMHOutputs:
        return WMHOutputs.read(self.out_dir, self.grid)


__all__ = ["BackgroundPrediction", "ERROR_FILE", "OUT_DIR"]
