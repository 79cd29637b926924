"""The Python scripts of a task module's Slicer page (``docs/<task>_slicer.md``) stay true.

Each page shows two scripts (headless, and from the Python console). They must compile and
call only methods that the Logic and the review have, with keyword names that the methods'
signatures have: a renamed method or argument breaks the page, and this check says so.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def check_documented_scripts(page: str, owners: dict[str, type], scripts: int = 2,
                             min_calls: int = 8) -> None:
    """Assert that ``docs/<page>`` holds ``scripts`` Python blocks whose calls exist.

    ``owners`` maps a variable name of the scripts (``logic``, ``review``) to the class whose
    methods it calls; calls on other names are not checked. At least ``min_calls`` calls
    must be checked, so a page whose scripts lost their calls fails too.
    """
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    assert len(blocks) == scripts, f"docs/{page} has {len(blocks)} Python scripts"
    calls = 0
    for block in blocks:
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in owners:
                method = getattr(owners[node.func.value.id], node.func.attr)
                parameters = inspect.signature(method).parameters
                assert all(k.arg in parameters for k in node.keywords), ast.unparse(node)
                calls += 1
    assert calls >= min_calls, f"docs/{page}: only {calls} Logic and review calls checked"
