"""Static charts (matplotlib, Agg backend) written as PNG files beside the report.

Every function returns the path it wrote, or raises :class:`PlotUnavailable` when matplotlib is
not installed (the page then says so instead of showing the chart). Labels come from user data,
so mathtext is switched off: a '$' in a class name is drawn as a '$', never parsed.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Mapping, Sequence

STYLE = {"text.parse_math": False, "figure.dpi": 80, "savefig.dpi": 80, "font.size": 9, "axes.grid": True,
         "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False}


class PlotUnavailable(RuntimeError):
    """matplotlib is missing (``pip install leaps[report]``)."""


@contextlib.contextmanager
def _figure(path: Path, nrows: int = 1, ncols: int = 1, size=(6.4, 3.2)):
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable("matplotlib is not installed (pip install 'leaps[report]')") from exc
    with matplotlib.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
        try:
            yield fig, axes
            fig.tight_layout()
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, format="png")
        finally:
            plt.close(fig)


def _finite(values: Sequence) -> list[float]:
    return [float(v) if isinstance(v, (int, float)) and math.isfinite(v) else math.nan for v in values]


def loss_curves(history: Mapping[str, Sequence[float]], path: Path) -> Path:
    """One panel per logged series (the total loss, each term, the lr) against the step."""
    names = [k for k, v in history.items() if isinstance(v, list) and v]
    cols = min(3, max(1, len(names)))
    rows = math.ceil(len(names) / cols) if names else 1
    with _figure(path, rows, cols, size=(3.2 * cols, 2.3 * rows)) as (_, axes):
        for ax in axes.flat[len(names):]:
            ax.axis("off")
        for ax, name in zip(axes.flat, names):
            values = _finite(history[name])
            ax.plot(range(1, len(values) + 1), values, lw=1.2)
            positive = [v for v in values if v == v]
            if positive and min(positive) > 0 and max(positive) / min(positive) > 50:
                ax.set_yscale("log")
            ax.set_title(name)
            ax.set_xlabel("step")
    return path


def frame_statistics(ssim: Sequence[Sequence[float]], psnr: Sequence[Sequence[float]], labels: Sequence[str],
                     path: Path) -> Path:
    """SSIM and PSNR of consecutive frames against the frame index, one line per video (Fig. 7)."""
    with _figure(path, 1, 2, size=(9.0, 3.0)) as (_, axes):
        for ax, series, name in ((axes[0, 0], ssim, "SSIM"), (axes[0, 1], psnr, "PSNR (dB)")):
            for values, label in zip(series, labels):
                values = _finite(values)
                ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, lw=1, label=label)
            ax.set_title(f"frame {name} (t, t+1)")
            ax.set_xlabel("frame pair t")
        if 0 < len(labels) <= 12 and axes[0, 1].get_legend_handles_labels()[0]:
            axes[0, 1].legend(fontsize=7, loc="best")
    return path


def grouped_bars(groups: Sequence[str], series: Mapping[str, Sequence[float]], path: Path, *, title: str,
                 xlabel: str, panels: Sequence[tuple[str, Mapping[str, Sequence[float]], str]] = ()) -> Path:
    """Horizontal grouped bars: ``groups`` on the y axis, one bar per series name; extra ``panels``
    (title, series, xlabel) share the groups and are drawn to the right."""
    all_panels = [p for p in [(title, series, xlabel), *panels] if _any_value(p[1])] or [(title, series, xlabel)]
    height = max(2.2, 0.28 * len(groups) * max(1, max(len(s) for _, s, _ in all_panels)) + 1.0)
    with _figure(path, 1, len(all_panels), size=(4.6 * len(all_panels), height)) as (_, axes):
        for ax, (name, data, label) in zip(axes.flat, all_panels):
            n = max(1, len(data))
            width = 0.8 / n
            for k, (key, values) in enumerate(data.items()):
                ys = [i + (k - (n - 1) / 2) * width for i in range(len(groups))]
                ax.barh(ys, _finite(values), height=width, label=key)
            ax.set_yticks(range(len(groups)), labels=list(groups))
            ax.invert_yaxis()
            ax.set_title(name)
            ax.set_xlabel(label)
            if len(data) > 1:
                ax.legend(fontsize=7, loc="best")
    return path


def _any_value(series: Mapping[str, Sequence[float]]) -> bool:
    return any(v == v for values in series.values() for v in _finite(values))
