"""The metadata of a model bundle (``metadata.json``), read and checked without torch.

What the file holds is described in :mod:`lesion_core.bundle`, which loads the weights.
Reading the metadata needs no torch: a command checks a model folder at once while torch
is imported on another thread, and the Slicer hub lists models before torch is installed.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from .errors import ModelBundleError
from .labels import Code, LesionLabel
from .network_args import check_network_args

METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1
_NET_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class NetworkSpec:
    """How to rebuild one network: a registry name and its keyword arguments."""

    class_name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class BundleMetadata:
    """Everything ``metadata.json`` holds. ``folder`` is set when read from disk.

    ``labels`` are the catalogue entries of :mod:`lesion_core.labels` (value, name, colour,
    SNOMED CT category/type codes) for the values of the label map the model writes.
    """

    name: str
    task: str
    version: str
    input_modality: str
    spacing_mm: tuple[float, float, float]
    networks: dict[str, NetworkSpec]
    intensity_normalisation: dict[str, Any] = field(default_factory=dict)
    labels: list[LesionLabel] = field(default_factory=list)
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    lesion_suite_version: str = ""
    monai_version: str = ""
    pytorch_version: str = ""
    created: str = ""
    format_version: int = FORMAT_VERSION
    folder: Path | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``metadata.json``."""
        out = dataclasses.asdict(self)
        out.pop("folder")
        out["spacing_mm"] = [float(s) for s in self.spacing_mm]
        out["labels"] = [_label_to_dict(lab) for lab in self.labels]
        out["networks"] = {n: {"class": s.class_name, "args": s.args}
                           for n, s in self.networks.items()}
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str | Path | None = None,
                  known_tasks: Iterable[str] | None = None) -> "BundleMetadata":
        """Validate and build; :class:`ModelBundleError` names the first bad field.

        ``known_tasks``: the valid ``task`` values (the registry's bundle kinds); None
        accepts any task name.
        """
        def bad(what: str) -> ModelBundleError:
            return ModelBundleError(f"metadata is invalid: {what}",
                                    "Re-copy the model folder, or save the model again with "
                                    "LesionSuite", source=source)

        if not isinstance(data, dict):
            raise bad("not a JSON object")
        for key in ("name", "task", "version", "input_modality", "spacing_mm", "networks"):
            if key not in data:
                raise bad(f"'{key}' is missing")
        if not isinstance(data.get("format_version", 1), int):
            raise bad("'format_version' must be an integer")
        if data.get("format_version", 1) > FORMAT_VERSION:
            raise ModelBundleError("the model was saved by a newer LesionSuite",
                                   "Update LesionSuite to use this model", source=source)
        known = None if known_tasks is None else tuple(known_tasks)
        if known is not None and data["task"] not in known:
            raise bad(f"task {data['task']!r} is not one of {', '.join(known)}")
        spacing = data["spacing_mm"]
        if not (isinstance(spacing, list) and len(spacing) == 3 and all(
                isinstance(s, (int, float)) and s > 0 for s in spacing)):
            raise bad("'spacing_mm' must be three positive numbers")
        nets = data["networks"]
        if not isinstance(nets, dict) or not nets:
            raise bad("'networks' must name at least one network")
        specs = {}
        for net, spec in nets.items():
            if not (_NET_NAME_RE.match(net) and isinstance(spec, dict)
                    and isinstance(spec.get("class"), str)
                    and isinstance(spec.get("args", {}), dict)):
                raise bad(f"network {net!r} needs a 'class' name and an 'args' object")
            specs[net] = NetworkSpec(spec["class"], dict(spec.get("args", {})))
            # Before anything is built from them (any reader, any later use).
            check_network_args(net, spec["class"], specs[net].args,
                               str(source) if source is not None else None)
        try:
            labels = [_label_from_dict(d) for d in data.get("labels", [])]
        except (TypeError, KeyError, ValueError) as exc:
            raise bad(f"a label entry is malformed ({exc})") from exc
        known = {f.name for f in dataclasses.fields(cls)} - {"folder", "networks", "labels",
                                                             "spacing_mm"}
        rest = {k: v for k, v in data.items() if k in known}
        for key in ("name", "version", "input_modality"):
            rest[key] = str(rest[key])
        return cls(spacing_mm=tuple(float(s) for s in spacing), networks=specs,
                   labels=labels, **rest)


def _code_to_dict(code: Code | None) -> dict | None:
    return None if code is None else {"scheme": code.scheme, "value": code.value,
                                      "meaning": code.meaning}


def _code(d: dict | None) -> Code | None:
    return None if d is None else Code(str(d["scheme"]), str(d["value"]), str(d["meaning"]))


def _label_to_dict(label: LesionLabel) -> dict[str, Any]:
    """JSON form of a :class:`~lesion_core.labels.LesionLabel` (colour in 0..1)."""
    return {"value": int(label.value), "name": label.name,
            "color": [float(c) for c in label.color],
            "category": _code_to_dict(label.category), "type": _code_to_dict(label.type),
            "region": _code_to_dict(label.region), "description": label.description}


def _label_from_dict(d: dict) -> LesionLabel:
    return LesionLabel(value=int(d["value"]), name=str(d["name"]),
                       color=tuple(float(c) for c in d["color"]),
                       category=_code(d["category"]), type=_code(d["type"]),
                       region=_code(d.get("region")), description=str(d.get("description", "")))


def read_metadata(folder: str | Path,
                  known_tasks: Iterable[str] | None = None) -> BundleMetadata:
    """Read and validate ``metadata.json`` of a model folder (weights are not checked);
    ``known_tasks`` as in :meth:`BundleMetadata.from_dict`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelBundleError("the model folder does not exist",
                               "Check the path; a model folder holds metadata.json and "
                               "model.safetensors", source=folder)
    path = folder / METADATA_FILE
    if not path.is_file():
        raise ModelBundleError("there is no metadata.json in the model folder",
                               "Copy the whole model folder (metadata.json and "
                               "model.safetensors), or choose another folder", source=folder)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise ModelBundleError(f"metadata.json cannot be read ({exc})",
                               "Re-copy the model folder", source=path) from exc
    meta = BundleMetadata.from_dict(data, source=path, known_tasks=known_tasks)
    meta.folder = folder
    return meta
