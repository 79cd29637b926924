"""One-line reasons from the exceptions of the file libraries (nibabel, pynrrd, pydicom).

A reader quotes the library's reason inside its own error, which the command line prints
as one line; some libraries put newlines or whole byte strings in their messages.
"""

from __future__ import annotations

#: Longest quoted reason; the rest of a library message (e.g. a dump of bytes) is cut.
MAX_REASON_CHARS = 160


def one_line(value: object, limit: int = MAX_REASON_CHARS) -> str:
    """Text from a file or a library on one printable line (control characters become
    spaces, whitespace runs collapse), cut to ``limit`` characters."""
    text = "".join(c if c.isprintable() else " " for c in str(value))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3].rstrip() + "..."


def reason(exc: BaseException, with_type: bool = False) -> str:
    """An exception's message by :func:`one_line` (its type name when it has none)."""
    text = one_line(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if with_type else text
