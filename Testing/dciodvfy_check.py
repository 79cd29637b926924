"""``dciodvfy`` (dicom3tools) for the DICOM export tests: it must be there.

CI installs it (``scripts/setup_env.sh``), so a missing validator fails the tests with the
way to install it, rather than skipping them silently; set
``LESION_SUITE_ALLOW_MISSING_DCIODVFY=1`` to skip the validation where it cannot be
installed (the other checks still run).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lesion_core.dicom_export.validate import INSTALL_HINT, dciodvfy_path, run_dciodvfy

ALLOW_MISSING = "LESION_SUITE_ALLOW_MISSING_DCIODVFY"


def assert_valid(path: Path) -> list[str]:
    """Run dciodvfy on ``path``: fail on any error line; returns the warnings. Without
    dciodvfy: fail (with how to install it), or skip when :data:`ALLOW_MISSING` is 1."""
    if dciodvfy_path() is None:
        if os.environ.get(ALLOW_MISSING) == "1":
            pytest.skip(f"dciodvfy is not installed ({ALLOW_MISSING}=1)")
        pytest.fail(f"dciodvfy is not installed: {INSTALL_HINT}; or set {ALLOW_MISSING}=1 "
                    "to skip the DICOM validation")
    findings = run_dciodvfy(path)
    assert findings.passed, f"dciodvfy errors in {path.name}:\n" + "\n".join(findings.errors)
    return findings.warnings
