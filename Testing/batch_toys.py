"""A toy task for the batch tests: no network, and inputs that say what to do.

A spawned batch worker imports this module to unpickle :func:`load_toy_model`, and the
import registers the task ``batchtoy`` there (only there: the test process's registry keeps
the real tasks alone, which other tests count). Its input is a text file: a number is
slept for (seconds) and its length is the key figure; ``bad`` is a user error, ``crash``
an internal error and ``die`` ends the worker process at once.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path
from types import SimpleNamespace

from lesion_core.errors import InvalidImageError, UnreadableFileError
from lesion_core.tasks import OutputFiles, Task, register_task
from lesion_core.tasks.registry import _registry


def _read_summary(path: Path) -> dict:
    return json.loads(Path(path).read_text())


class ToyTask(Task):
    name = "batchtoy"
    title = "Toy"
    bundle_kinds = ("batchtoy",)
    default_models = {"batchtoy": "none"}
    output_files = OutputFiles({"summary": "toy_summary.json"})
    output_readers = {"summary": _read_summary}
    key_figures = {"size": ("summary", "size")}

    def read_input(self, path, **options):
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise UnreadableFileError("the file cannot be read", "check the path", path) from exc

    def predict(self, inputs, model, progress=None, precision="auto", **options):
        if inputs == "bad":
            raise InvalidImageError("the toy image is bad", "give a good one")
        if inputs == "crash":
            raise RuntimeError("a bug in the toy")
        if inputs == "die":
            os._exit(3)
        time.sleep(float(inputs or 0))
        return SimpleNamespace(size=len(inputs), model=model)

    def write_outputs(self, prediction, folder, image_path=None, **options):
        path = Path(folder) / "toy_summary.json"
        path.write_text(json.dumps({"size": prediction.size, "model": prediction.model}))
        return {"summary": path}


TASK = ToyTask()
# A spawned child is named before it unpickles its target (and so imports this module).
if multiprocessing.current_process().name != "MainProcess" and TASK.name not in _registry:
    register_task(TASK)


def load_toy_model() -> str:
    return "toy-model"


def load_missing_model() -> str:
    """What a wrong ``--model`` does in a worker: one user error."""
    from lesion_core.errors import ModelBundleError

    raise ModelBundleError("there is no model here", "give a model folder", "/no/model")
