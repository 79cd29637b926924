"""A function of a package named now and imported when it is first called.

The task modules must load in a fresh Slicer, before the LesionSuite hub has installed
what their ``lesion_core`` task packages and reviews import (torch, the image writers), so
their Logic names such functions with :class:`Later` instead of importing them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Later:
    """``Later("pkg.mod", "name", *extra)(*args)`` is ``pkg.mod.name(*args, *extra)``,
    the module imported at the call. ``name`` may be dotted (``"Class.method"``); the
    ``extra`` arguments go after the caller's."""

    module: str
    name: str
    extra: tuple = ()

    def __init__(self, module: str, name: str, *extra: Any):
        object.__setattr__(self, "module", module)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "extra", extra)

    def resolve(self) -> Any:
        """The named object (its module imported now)."""
        target: Any = importlib.import_module(self.module)
        for part in self.name.split("."):
            target = getattr(target, part)
        return target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, *self.extra, **kwargs)
