"""A self-contained HTML page from small typed dataclasses.

A :class:`Page` is a title and a list of :class:`Section` (each with an ``id``, so tests
and links can find it); a section holds paragraphs, bullet items, figures (PNG bytes,
embedded as base64 ``data:`` URIs, so the file stands alone), a colour legend and tables.
Every text is escaped; numbers in table cells are shown rounded and kept whole in the
cell's ``data-value`` attribute (what a script or a test reads back).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from html import escape
from typing import Tuple, Union

import numpy as np


@dataclass(frozen=True)
class Link:
    """A table cell that links to ``href`` (relative to the page)."""

    text: str
    href: str


#: A table cell: text, a number (shown with the table's digits), nothing, or a link.
Cell = Union[str, int, float, None, Link]


@dataclass(frozen=True)
class Table:
    """A table: ``key`` (its ``id``), a caption, column names (none: no header row) and
    rows of cells; floats are shown with ``digits`` decimals."""

    key: str
    caption: str
    columns: Tuple[str, ...]
    rows: Tuple[Tuple[Cell, ...], ...]
    digits: int = 2
    note: str = ""


@dataclass(frozen=True)
class Figure:
    """A PNG picture (``png``: the file's bytes, ``width`` x ``height`` pixels) with its
    alternative text and caption."""

    key: str
    png: bytes
    width: int
    height: int
    alt: str
    caption: str = ""


@dataclass(frozen=True)
class Swatch:
    """One legend entry: a colour (RGB 0-255) and what it means."""

    rgb: Tuple[int, int, int]
    meaning: str
    style: str = "fill"  # "fill", "outline" or "circle"


@dataclass(frozen=True)
class Section:
    """One section of a page (``key``: its ``id``); ``warning`` shows it highlighted."""

    key: str
    heading: str
    paragraphs: Tuple[str, ...] = ()
    items: Tuple[str, ...] = ()
    figures: Tuple[Figure, ...] = ()
    legend: Tuple[Swatch, ...] = ()
    tables: Tuple[Table, ...] = ()
    warning: bool = False


@dataclass(frozen=True)
class Page:
    """A whole page: ``title`` (the ``<title>`` and the heading), a line under it, the
    sections in order and a footer line."""

    title: str
    subtitle: str
    sections: Tuple[Section, ...]
    footer: str = ""


def png_figure(key: str, rgb: np.ndarray, alt: str, caption: str = "") -> Figure:
    """A :class:`Figure` of an RGB array ``uint8 [rows, columns, 3]`` (PNG via Pillow)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, np.uint8)).save(buffer, format="PNG")
    return Figure(key, buffer.getvalue(), int(rgb.shape[1]), int(rgb.shape[0]), alt, caption)


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 margin:0 auto;max-width:1100px;padding:16px 24px;color:#1d1d1f;background:#fff;line-height:1.4}
h1{font-size:1.5em;margin:0.2em 0}h2{font-size:1.15em;border-bottom:1px solid #ddd;
 padding-bottom:2px;margin-top:1.4em}.subtitle{color:#555;margin:0 0 1em 0}
section.warning{background:#fff4e5;border-left:4px solid #e08a00;padding:4px 12px}
table{border-collapse:collapse;margin:0.5em 0 1em 0;font-size:0.9em}
caption{text-align:left;font-weight:600;padding:2px 0;white-space:nowrap}
th,td{border:1px solid #ccc;padding:2px 8px;text-align:left}
td[data-value]{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f2f2f2}figure{margin:0.5em 0 1em 0;max-width:100%}
.figures{display:flex;flex-wrap:wrap;gap:0 16px}
figcaption{color:#444;font-size:0.9em;max-width:900px}
img{max-width:100%;height:auto;image-rendering:auto}
.legend{display:flex;flex-wrap:wrap;gap:4px 18px;margin:4px 0;font-size:0.9em}
.legend span.sw{display:inline-block;width:14px;height:14px;margin-right:5px;
 vertical-align:-2px}.note{color:#555;font-size:0.85em}footer{color:#777;
 font-size:0.8em;margin-top:2em;border-top:1px solid #ddd;padding-top:4px}
"""


def render_page(page: Page) -> str:
    """The page as one HTML document (UTF-8 text)."""
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{escape(page.title)}</title>", f"<style>{_STYLE}</style>", "</head>",
             "<body>", f"<h1>{escape(page.title)}</h1>",
             f'<p class="subtitle">{escape(page.subtitle)}</p>']
    parts += [_section(section) for section in page.sections]
    if page.footer:
        parts.append(f"<footer>{escape(page.footer)}</footer>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _section(section: Section) -> str:
    kind = ' class="warning"' if section.warning else ""
    out = [f'<section id="{escape(section.key)}"{kind}>', f"<h2>{escape(section.heading)}</h2>"]
    out += [f"<p>{escape(text)}</p>" for text in section.paragraphs]
    if section.items:
        out.append("<ul>" + "".join(f"<li>{escape(item)}</li>" for item in section.items)
                   + "</ul>")
    if section.legend:
        out.append('<div class="legend">' + "".join(_swatch(s) for s in section.legend)
                   + "</div>")
    if section.figures:
        out.append('<div class="figures">' + "".join(_figure(f) for f in section.figures)
                   + "</div>")
    out += [_table(table) for table in section.tables]
    out.append("</section>")
    return "\n".join(out)


def _swatch(swatch: Swatch) -> str:
    colour = "rgb({},{},{})".format(*swatch.rgb)
    look = {"fill": f"background:{colour}",
            "outline": f"border:2px solid {colour}",
            "circle": f"border:2px solid {colour};border-radius:50%"}[swatch.style]
    return f'<span><span class="sw" style="{look}"></span>{escape(swatch.meaning)}</span>'


def _figure(figure: Figure) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    caption = f"<figcaption>{escape(figure.caption)}</figcaption>" if figure.caption else ""
    # The figure is as wide as its picture, so a caption wraps under it.
    return (f'<figure id="{escape(figure.key)}" style="width:{figure.width}px">'
            f'<img src="data:image/png;base64,{data}" '
            f'width="{figure.width}" height="{figure.height}" alt="{escape(figure.alt)}">'
            f"{caption}</figure>")


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    head = f"<thead><tr>{head}</tr></thead>" if head else ""
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    body = "".join("<tr>" + "".join(_cell(c, table.digits) for c in row) + "</tr>"
                   for row in table.rows)
    note = f'<p class="note">{escape(table.note)}</p>' if table.note else ""
    return (f'<table id="{escape(table.key)}">{caption}{head}<tbody>{body}</tbody></table>'
            f"{note}")


def _cell(value: Cell, digits: int) -> str:
    if value is None:
        return "<td>&ndash;</td>"
    if isinstance(value, Link):
        return f'<td><a href="{escape(value.href)}">{escape(value.text)}</a></td>'
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, (int, np.integer)):
        return f'<td data-value="{int(value)}">{int(value)}</td>'
    if isinstance(value, (float, np.floating)):
        return f'<td data-value="{float(value)!r}">{float(value):.{digits}f}</td>'
    return f"<td>{escape(str(value))}</td>"
