"""The fixed, held-out synthetic benchmark set and its on-disk cache.

Seed convention (the project's, see ``lesion_core.synth.splits``): training seeds
0-99 999, validation seeds 100 000-199 999, benchmark seeds 900 000 and up. The benchmark
set of a kind is ``make_subject(seed, SubjectConfig(kind, AnatomyConfig(spacing_mm)))``
for the first ``n`` benchmark seeds, so it never overlaps what a model trained on.

Generated cases are cached as ``.npz`` files under ``bench/.cache/<kind>_<spacing>mm_<code>/``
where ``<code>`` is a hash of the synthetic-cohort source files: editing a generator
invalidates the cache instead of silently benchmarking stale data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lesion_core.synth import SubjectConfig, make_subject
from lesion_core.synth.anatomy import AnatomyConfig
from lesion_core.volume import Volume

try:  # the project's split definition, when present
    from lesion_core.synth.splits import BENCHMARK_SEEDS as _SPLIT_SEEDS
    BENCHMARK_SEED_START = int(_SPLIT_SEEDS.start)
except ImportError:  # pragma: no cover
    BENCHMARK_SEED_START = 900_000

#: Default cache folder (git-ignored).
CACHE_DIR = Path(__file__).resolve().parent / ".cache"


def benchmark_seeds(n: int) -> range:
    """The first ``n`` benchmark seeds: ``range(900_000, 900_000 + n)``."""
    return range(BENCHMARK_SEED_START, BENCHMARK_SEED_START + int(n))


@dataclass
class Case:
    """One benchmark subject, shaped like ``lesion_core.synth.SyntheticSubject``.

    ``images[modality]``: Volume (array ``[i, j, k]`` + voxel-to-RAS affine in mm);
    ``labels[modality][name]``: ground truth on that image's grid; ``targets``: weak labels
    and facts; ``acquisition[modality]``: how it was acquired (e.g. ``slice_axis``).
    """

    subject_id: str
    kind: str
    seed: int
    images: dict[str, Volume]
    labels: dict[str, dict[str, Volume]]
    targets: dict
    acquisition: dict = field(default_factory=dict)

    @property
    def modality(self) -> str:
        """The image the kind is evaluated on: FLAIR (wmh), SWI or T2star (cmb), CT (ich)."""
        for name in ("FLAIR", "SWI", "T2star", "CT"):
            if name in self.images:
                return name
        return next(iter(self.images))


def code_fingerprint() -> str:
    """Short hash of the synthetic-cohort sources (``lesion_core/synth/*.py``)."""
    import lesion_core.synth as synth
    digest = hashlib.sha1()
    for path in sorted(Path(synth.__file__).parent.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def cache_folder(kind: str, spacing_mm: float, root: Path = CACHE_DIR) -> Path:
    return Path(root) / f"{kind}_{spacing_mm:g}mm_{code_fingerprint()}"


def _json(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value))


def save_case(case: Case, path: Path) -> None:
    """Write a case as one ``.npz`` (arrays uncompressed-exact, facts as JSON)."""
    arrays = {}
    meta = {"subject_id": case.subject_id, "kind": case.kind, "seed": case.seed,
            "targets": case.targets, "acquisition": case.acquisition, "images": {}}
    for name, image in case.images.items():
        arrays[f"image__{name}"] = image.array
        arrays[f"affine__{name}"] = image.affine
        meta["images"][name] = {"meta": image.meta, "labels": list(case.labels.get(name, {}))}
        for label, volume in case.labels.get(name, {}).items():
            arrays[f"label__{name}__{label}"] = volume.array
    arrays["meta_json"] = np.array(json.dumps(meta, default=_json))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load_case(path: Path) -> Case:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta_json"]))
        images, labels = {}, {}
        for name, info in meta["images"].items():
            affine = data[f"affine__{name}"]
            images[name] = Volume(data[f"image__{name}"], affine, meta=info["meta"])
            labels[name] = {label: Volume(data[f"label__{name}__{label}"], affine)
                            for label in info["labels"]}
    return Case(meta["subject_id"], meta["kind"], int(meta["seed"]), images, labels,
                meta["targets"], meta["acquisition"])


def generate_case(kind: str, seed: int, spacing_mm: float) -> Case:
    subject = make_subject(seed, SubjectConfig(kind=kind, anatomy=AnatomyConfig(spacing_mm=spacing_mm)))
    return Case(subject.subject_id, kind, seed, subject.images, subject.labels, subject.targets,
                subject.acquisition)


def case_path(kind: str, seed: int, spacing_mm: float, root: Path = CACHE_DIR) -> Path:
    return cache_folder(kind, spacing_mm, root) / f"{kind}_{seed}.npz"


def ensure_case(kind: str, seed: int, spacing_mm: float, root: Path = CACHE_DIR) -> Path:
    """Generate and cache one case unless it is cached already; returns its path."""
    path = case_path(kind, seed, spacing_mm, root)
    if not path.exists():
        save_case(generate_case(kind, seed, spacing_mm), path)
    return path


def _ensure(args: tuple) -> str:
    return str(ensure_case(*args))


def ensure_cases(kind: str, n: int, spacing_mm: float, root: Path = CACHE_DIR,
                 workers: int = 1, log=print) -> list[Path]:
    """Paths of the ``n`` cached benchmark cases of ``kind``, generating missing ones."""
    jobs = [(kind, seed, spacing_mm, Path(root)) for seed in benchmark_seeds(n)]
    missing = [job for job in jobs if not case_path(*job).exists()]
    if missing:
        log(f"generating {len(missing)} {kind} case(s) at {spacing_mm:g} mm "
            f"into {cache_folder(kind, spacing_mm, root)}")
        if workers > 1 and len(missing) > 1:
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(max_workers=workers) as pool:
                list(pool.map(_ensure, missing))
        else:
            for job in missing:
                _ensure(job)
    return [case_path(*job) for job in jobs]
