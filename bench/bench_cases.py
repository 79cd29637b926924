"""The fixed, held-out synthetic benchmark sets and their on-disk cache.

Seed convention (the project's, see ``lesion_core.synth.splits``): training seeds
0-99 999, validation seeds 100 000-199 999, benchmark seeds 900 000-949 999, shifted
benchmark seeds 950 000 and up. The two sets of :data:`SETS`:

- ``"standard"``: ``make_subject(seed, SubjectConfig(kind, AnatomyConfig(spacing_mm)))``
  for the first ``n`` benchmark seeds;
- ``"shifted"``: the same with ``domain="shifted"`` (acquisitions and contrasts outside
  the randomized training ranges, ``lesion_core.synth.domain``) for the first ``n`` shifted
  benchmark seeds.

Neither overlaps what a model trained on. Generated cases are cached as ``.npz`` files
under ``bench/.cache/<kind>_<spacing>mm_<code>/`` (standard) or
``<kind>_<spacing>mm_shifted_<code>/`` (shifted), where ``<code>`` is a hash of the
synthetic-cohort source files (the generator and the atlases): editing either invalidates
the cache instead of silently benchmarking stale data.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from lesion_core.jsonable import json_safe
from lesion_core.synth import SubjectConfig, SyntheticSubject, make_subject
from lesion_core.synth.anatomy import AnatomyConfig
from lesion_core.synth.splits import SPLITS
from lesion_core.volume import Volume

#: Benchmark set -> (seed split of ``lesion_core.synth.splits``, synthetic domain).
SETS = {"standard": ("benchmark", "standard"), "shifted": ("shifted_benchmark", "shifted")}
BENCHMARK_SEED_START = SPLITS["benchmark"].start

#: Default cache folder (git-ignored).
CACHE_DIR = Path(__file__).resolve().parent / ".cache"


def benchmark_seeds(n: int, bench_set: str = "standard") -> range:
    """The first ``n`` seeds of a set: ``range(900_000, 900_000 + n)`` for the standard
    set, ``range(950_000, 950_000 + n)`` for the shifted one."""
    seeds = SPLITS[SETS[bench_set][0]]
    if n > len(seeds):
        raise ValueError(f"the {bench_set} benchmark set has only {len(seeds)} seeds")
    return seeds[:int(n)]


#: A benchmark case is a ``SyntheticSubject`` read back from the cache (no anatomy);
#: ``case.primary_modality`` names the image it is evaluated on.
Case = SyntheticSubject


def code_fingerprint() -> str:
    """Short hash of the synthetic-cohort sources: the generator (``lesion_core/synth/*.py``)
    and the atlases it builds subjects from (``lesion_core/atlas/*.py``)."""
    import lesion_core.atlas as atlas
    import lesion_core.synth as synth
    digest = hashlib.sha1()
    for package in (atlas, synth):
        folder = Path(package.__file__).parent
        for path in sorted(folder.glob("*.py")):
            digest.update(f"{folder.name}/{path.name}".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def cache_folder(kind: str, spacing_mm: float, root: Path = CACHE_DIR,
                 bench_set: str = "standard", code: str | None = None) -> Path:
    """Where a set's cases (and results) of ``kind`` live; ``code`` defaults to the
    current :func:`code_fingerprint`."""
    tag = "" if bench_set == "standard" else f"{bench_set}_"
    return Path(root) / f"{kind}_{spacing_mm:g}mm_{tag}{code or code_fingerprint()}"


def result_path(kind: str, method: str, n: int, spacing_mm: float, root: Path = CACHE_DIR,
                bench_set: str = "standard", code: str | None = None) -> Path:
    """The JSON of a method's last run on ``n`` cases of a set, beside those cases."""
    return cache_folder(kind, spacing_mm, root, bench_set, code) / f"results_{method}_n{n}.json"


def latest_results(kind: str, method: str, n: int, spacing_mm: float,
                   root: Path = CACHE_DIR) -> dict[str, dict]:
    """Set -> the method's result on it, for the sets it has been run on: the run on the
    current synthetic-cohort code, else the newest run on an older one (its ``code`` says
    which)."""
    found = {}
    for bench_set in SETS:
        current = result_path(kind, method, n, spacing_mm, root, bench_set)
        pattern = result_path(kind, method, n, spacing_mm, root, bench_set, code="?" * 10)
        older = sorted(Path(root).glob(f"{pattern.parent.name}/{pattern.name}"),
                       key=lambda p: p.stat().st_mtime)
        path = current if current.exists() else (older[-1] if older else None)
        if path is not None:
            found[bench_set] = json.loads(path.read_text())
    return found


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
    arrays["meta_json"] = np.array(json.dumps(json_safe(meta)))
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


def generate_case(kind: str, seed: int, spacing_mm: float, bench_set: str = "standard") -> Case:
    config = SubjectConfig(kind=kind, anatomy=AnatomyConfig(spacing_mm=spacing_mm),
                           domain=SETS[bench_set][1])
    subject = make_subject(seed, config)
    subject.anatomy = None  # not cached, and large
    return subject


def case_path(kind: str, seed: int, spacing_mm: float, root: Path = CACHE_DIR,
              bench_set: str = "standard") -> Path:
    return cache_folder(kind, spacing_mm, root, bench_set) / f"{kind}_{seed}.npz"


def ensure_case(kind: str, seed: int, spacing_mm: float, root: Path = CACHE_DIR,
                bench_set: str = "standard") -> Path:
    """Generate and cache one case unless it is cached already; returns its path."""
    path = case_path(kind, seed, spacing_mm, root, bench_set)
    if not path.exists():
        save_case(generate_case(kind, seed, spacing_mm, bench_set), path)
    return path


def _ensure(args: tuple) -> str:
    return str(ensure_case(*args))


def ensure_cases(kind: str, n: int, spacing_mm: float, root: Path = CACHE_DIR,
                 workers: int = 1, log=print, bench_set: str = "standard") -> list[Path]:
    """Paths of the ``n`` cached cases of ``kind`` in ``bench_set``, generating missing ones."""
    jobs = [(kind, seed, spacing_mm, Path(root), bench_set) for seed in benchmark_seeds(n, bench_set)]
    missing = [job for job in jobs if not case_path(*job).exists()]
    if missing:
        log(f"generating {len(missing)} {kind} case(s) of the {bench_set} set at {spacing_mm:g} mm "
            f"into {cache_folder(kind, spacing_mm, root, bench_set)}")
        if workers > 1 and len(missing) > 1:
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(max_workers=workers) as pool:
                list(pool.map(_ensure, missing))
        else:
            for job in missing:
                _ensure(job)
    return [case_path(*job) for job in jobs]
