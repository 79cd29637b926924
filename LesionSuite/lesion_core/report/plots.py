"""The cohort page's plots, drawn with matplotlib (Agg, no window, no pyplot state) and
returned as :class:`~.html.Figure` PNGs of :data:`SIZE_PX`."""

from __future__ import annotations

import io
from typing import Mapping, Sequence, Tuple

import numpy as np

from .html import Figure

#: Width and height of every plot (pixels): the figure size at :data:`_DPI`.
SIZE_PX = (500, 320)  # two side by side on a page
_DPI = 100
_BLUE = "#3b6ea8"


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    figure = MplFigure(figsize=(SIZE_PX[0] / _DPI, SIZE_PX[1] / _DPI), dpi=_DPI)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot(1, 1, 1)


def _png(figure, key: str, alt: str, caption: str) -> Figure:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return Figure(key, buffer.getvalue(), SIZE_PX[0], SIZE_PX[1], alt, caption)


def histogram(key: str, values: Sequence[float], xlabel: str, title: str,
              caption: str = "", whole: bool = False) -> Figure:
    """A histogram of ``values`` (``whole``: counts, one bar per whole number)."""
    figure, axes = _figure()
    values = np.asarray(values, float)
    top = float(values.max()) if values.size else 1.0
    # Bins from 0: a lesion load is read against none, even for one or two cases.
    if whole:
        step = max(1.0, float(np.ceil(top / 20)))  # at most ~20 bars
        bins = np.arange(-0.5, top + step + 0.5, step)
    else:
        bins = np.linspace(0.0, max(top, 1e-3) * 1.05, min(20, max(5, values.size)) + 1)
    axes.hist(values, bins=bins, color=_BLUE, edgecolor="white")
    axes.set(xlabel=xlabel, ylabel="cases", title=title)
    axes.yaxis.get_major_locator().set_params(integer=True)
    return _png(figure, key, f"{title}: histogram of {xlabel}", caption)


def scatter(key: str, x: Sequence[float], y: Sequence[float], names: Sequence[str],
            xlabel: str, ylabel: str, title: str, caption: str = "",
            y_range: Tuple[float, float] | None = None) -> Figure:
    """``y`` against ``x`` (from 0), one point per case; with 12 cases or fewer each is
    named. ``y_range``: the y axis' limits (a rating scale), else matplotlib's."""
    figure, axes = _figure()
    axes.set_xlim(0, max([float(v) for v in x] + [1.0]) * 1.15)
    if y_range is not None:
        axes.set_ylim(*y_range)
    axes.scatter(x, y, color=_BLUE, s=28, zorder=3)
    if len(names) <= 12:
        for xi, yi, name in zip(x, y, names):
            axes.annotate(name, (xi, yi), textcoords="offset points", xytext=(4, 3), fontsize=7)
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axes.grid(alpha=0.3)
    return _png(figure, key, f"{title}: {ylabel} against {xlabel}", caption)


def stacked_bars(key: str, names: Sequence[str],
                 series: Mapping[str, Tuple[Sequence[float], Tuple[int, int, int]]],
                 ylabel: str, title: str, caption: str = "") -> Figure:
    """One bar per case (``names``), stacked from ``series``: label -> (a value per case,
    RGB 0-255). Labels whose values are all 0 are left out of the legend."""
    figure, axes = _figure()
    bottom = np.zeros(len(names))
    positions = np.arange(len(names))
    for label, (values, rgb) in series.items():
        values = np.asarray(values, float)
        shown = bool(np.any(values > 0))
        axes.bar(positions, values, bottom=bottom, color=np.asarray(rgb) / 255.0,
                 label=label if shown else None, width=0.7)
        bottom += values
    axes.set_xticks(positions)
    axes.set_xticklabels(names, rotation=30 if len(names) > 4 else 0, ha="right"
                         if len(names) > 4 else "center", fontsize=7)
    axes.set(ylabel=ylabel, title=title)
    if any(np.any(np.asarray(v, float) > 0) for v, _ in series.values()):
        # Beside the axes, so that it never hides a bar.
        axes.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(figure, key, f"{title}: {ylabel} per case", caption)
