"""Validate DICOM files with ``dciodvfy`` (David Clunie's dicom3tools).

``dciodvfy FILE`` checks a file against its IOD (modules, attribute types, values) and
prints ``Error - ...`` and ``Warning - ...`` lines. Install: ``apt-get install
dicom3tools`` (Debian, Ubuntu) or build from https://www.dclunie.com/dicom3tools.html.
:func:`run_dciodvfy` returns its findings; a file passes when there is no error.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

INSTALL_HINT = ("install dicom3tools (Debian/Ubuntu: `sudo apt-get install -y dicom3tools`, "
                "or `bash scripts/setup_env.sh` as root)")


@dataclass
class Findings:
    """What ``dciodvfy`` said about one file: its error and warning lines, and the whole
    output."""

    path: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    output: str = ""

    @property
    def passed(self) -> bool:
        return not self.errors


def dciodvfy_path() -> str | None:
    """Where ``dciodvfy`` is, or None when it is not installed."""
    return shutil.which("dciodvfy")


def run_dciodvfy(path: str | Path, executable: str | None = None) -> Findings:
    """Run ``dciodvfy`` on ``path``; FileNotFoundError (saying how to install it) when
    it is missing."""
    executable = executable or dciodvfy_path()
    if executable is None:
        raise FileNotFoundError(f"dciodvfy is not installed: {INSTALL_HINT}")
    done = subprocess.run([executable, str(path)], capture_output=True, text=True,
                          timeout=300, check=False)
    output = (done.stdout or "") + (done.stderr or "")
    lines = [line.strip() for line in output.splitlines()]
    return Findings(Path(path), [line for line in lines if line.startswith("Error")],
                    [line for line in lines if line.startswith("Warning")], output)
