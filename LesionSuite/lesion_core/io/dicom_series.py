"""Finding the DICOM series in a folder, and choosing the one to read.

A folder is searched at most :data:`MAX_SCAN_DEPTH` levels down and for at most
:data:`MAX_SCAN_FILES` files; a folder whose first :data:`MAX_FILES_WITHOUT_DICOM` files hold
no DICOM file is refused, so that pointing at e.g. a home folder answers at once. Several
series in a folder need a series UID (``--series`` on the command line).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


from ..errors import UnreadableFileError
from .dicom_header import (CONVERSION_ERRORS, REEXPORT_FIX, described, is_dicom_file, is_index,
                           optional_number, quiet_pydicom, read_header)
from .reasons import one_line, reason

#: Folder search bounds: PACS and DICOMDIR exports nest patient/study/series/images (about
#: 4 levels); a study of several thin-slice and perfusion series holds some 10,000 files.
MAX_SCAN_DEPTH = 8
MAX_SCAN_FILES = 50_000
#: A series folder holds DICOM files from the start; this many other files first means the
#: path is not a DICOM folder at all (a home or system folder), so the search stops.
MAX_FILES_WITHOUT_DICOM = 1_000


@dataclass
class SeriesInfo:
    """One series found in a folder; ``n_slices`` counts frames (2D images) in all files."""
    uid: str
    description: str
    modality: str
    number: int | None
    n_slices: int
    files: list[Path] = field(default_factory=list)

    def describe(self) -> str:
        """One line (the texts come from the files, where anything may be written)."""
        num = f"#{self.number} " if self.number is not None else ""
        return (f"{num}{one_line(self.modality, 16) or '?'} "
                f"'{one_line(self.description, 64) or '(no description)'}' "
                f"UID {one_line(self.uid, 64)} ({self.n_slices} "
                f"slice{'s' if self.n_slices != 1 else ''})")


def files_to_scan(folder: Path) -> tuple[list[Path], bool]:
    """The DICOM-looking files under ``folder`` (sorted) and whether deeper folders were
    left out; refuses folders too large, or with no DICOM file early on (see the bounds)."""
    found: list[Path] = []
    seen, folders, pruned = 0, 0, False
    for root, dirs, files in os.walk(folder):
        depth = len(Path(root).relative_to(folder).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # sorted: a stable order
        if depth >= MAX_SCAN_DEPTH and dirs:
            pruned, dirs[:] = True, []
        folders += 1
        for name in sorted(files):
            path = Path(root) / name
            if name.startswith(".") or is_index(path) or not path.is_file():
                continue
            seen += 1
            if max(seen, folders) > MAX_SCAN_FILES:
                raise UnreadableFileError(
                    f"the folder holds more than {MAX_SCAN_FILES:,} files or folders, too many "
                    "to search for a DICOM series",
                    "select the folder of the series (or of the study) itself", source=folder)
            if is_dicom_file(path):
                found.append(path)
            elif not found and seen >= MAX_FILES_WITHOUT_DICOM:
                raise UnreadableFileError(
                    f"none of the first {seen:,} files in the folder is a DICOM file; it is "
                    "not a DICOM series folder", "select the folder that holds the series' "
                    "image files, or give a NIfTI or NRRD file", source=folder)
    return sorted(found), pruned


def scan_folder(folder: Path) -> tuple[dict[str, list], list[str]]:
    """Headers of the image files under ``folder`` (recursive, bounded) by series UID; read
    errors (the last one says so when deeper folders were not searched)."""
    groups, errors = {}, []  # series UID -> [(path, header)]; messages of unreadable files
    paths, pruned = files_to_scan(folder)
    for path in paths:
        # Elements are converted when the series is read: a file damaged there stays in
        # its series and is named then, instead of silently leaving a slice out.
        try:
            ds = read_header(path, convert=False)
            sop_class = str(getattr(ds.get("SOPClassUID"), "name", ""))
            series = str(ds.get("SeriesInstanceUID", "unknown"))
        except UnreadableFileError as exc:
            errors.append(str(exc))
            continue
        except CONVERSION_ERRORS as exc:  # the series cannot even be told
            errors.append(f"{path}: {reason(exc)}")
            continue
        if "Rows" not in ds or "Columns" not in ds:  # DICOMDIR, report, RT plan, or cut short
            if "Image Storage" in sop_class:
                errors.append(f"{path.name} is truncated (it has no image data)")
            continue
        groups.setdefault(series, []).append((path, ds))
    if pruned and not groups:
        errors.append(f"folders more than {MAX_SCAN_DEPTH} levels down were not searched")
    return groups, errors


def series_infos(groups: dict[str, list]) -> list[SeriesInfo]:
    infos = []
    for uid, members in groups.items():
        ds0 = members[0][1]
        # A listing only describes: a damaged text, count or number is shown as empty, 1
        # frame or no number here, and reading the series reports the damaged file itself.
        infos.append(SeriesInfo(
            uid, str(described(ds0, "SeriesDescription") or ""),
            str(described(ds0, "Modality") or ""),
            optional_number(described(ds0, "SeriesNumber"), integer=True),
            sum(max(1, optional_number(described(d, "NumberOfFrames"), integer=True) or 1)
                for _, d in members), [p for p, _ in members]))
    return sorted(infos, key=lambda s: (s.number if s.number is not None else 1 << 30, s.uid))


def list_series(folder: str | Path) -> list[SeriesInfo]:
    """All image series under ``folder`` (searched recursively, bounded), by series number."""
    with quiet_pydicom():
        return series_infos(scan_folder(Path(folder))[0])


def choose_series(path: Path, series_uid: str | None) -> list:
    """The (path, header) pairs of the series to read."""
    if path.is_file():
        if is_index(path):
            return choose_series(path.parent, series_uid)
        if not is_dicom_file(path):
            raise UnreadableFileError("the file is not a DICOM file", "give a DICOM file or "
                                      "series folder, or a NIfTI/NRRD image", source=path)
        ds = read_header(path)
        if is_index(path, ds):
            return choose_series(path.parent, series_uid)
        if "Rows" not in ds or "Columns" not in ds:
            sop = one_line(getattr(ds.get("SOPClassUID"), "name", ds.get("SOPClassUID")), 64)
            cut = "Image Storage" in sop  # an image file that ends before its image data
            raise UnreadableFileError(
                f"the file is truncated or corrupt: a {sop} file without image data" if cut
                else f"the DICOM file holds no image ({one_line(ds.get('Modality', '?'), 16)}, "
                f"{sop})",
                REEXPORT_FIX if cut else "select a CT or MR image file or series folder", path)
        return [(path, ds)]
    if not path.is_dir():
        raise UnreadableFileError("the path does not exist",
                                  "check the spelling of the file or folder", source=path)
    groups, errors = scan_folder(path)
    if not groups:
        why = f" ({len(errors)} DICOM files unreadable, e.g. {errors[0]})" if errors else ""
        raise UnreadableFileError(f"no readable DICOM images were found in the folder{why}",
                                  "select the folder that holds the series' image files", path)
    infos = series_infos(groups)
    listing = "; ".join(i.describe() for i in infos[:20])
    listing += f"; and {len(infos) - 20} more" if len(infos) > 20 else ""
    if series_uid is not None and series_uid not in groups:
        raise UnreadableFileError(f"series {one_line(series_uid)} is not in the folder (found: "
                                  f"{listing})", "pass one of the listed series UIDs", path)
    if series_uid is None and len(groups) > 1:
        raise UnreadableFileError(
            f"the folder holds {len(groups)} series: {listing}",
            "choose one by passing its series UID (series_uid=..., command line --series UID)",
            source=path)
    return groups[series_uid] if series_uid is not None else next(iter(groups.values()))
