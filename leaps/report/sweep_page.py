"""The sweep page: Table 1 metrics per model and method, per-class accuracy, a gallery of every
video (filterable by class / model / method, sorted by verifier confidence, paged) and the failures."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from . import escape, plots
from .html import Markup, animation, figure, image, missing, notice, pager, section, select, table
from .sweep_data import Record, SweepData, collect

PAGE_SIZE = 48
CHART_CLASSES = 30  # more classes than 2x this: the chart shows the worst and best this many


def build(root: Path, assets: Path) -> tuple[str, str, list[str]]:
    data = collect(root)
    ok = sum(r.ok for r in data.records)
    subtitle = f"{len(data.records)} record(s) from {len(data.manifests)} manifest(s): {ok} ok, " \
               f"{len(data.records) - ok} failed"
    return f"LEAPS sweep: {root.resolve().name}", subtitle, render(data, assets)


def render(data: SweepData, assets: Path) -> list[str]:
    sections: list[str] = []
    if data.problems:
        sections.append(section("What is missing", "".join(notice(p) for p in data.problems), "problems"))
    ok = [r for r in data.records if r.ok]
    sections.append(section("Table 1 metrics per model and method", _metrics(ok), "metrics"))
    sections.append(section("Per-class accuracy", _per_class(ok, data.root, assets), "classes"))
    sections.append(section("Gallery", _gallery(ok, data.root), "gallery"))
    failed = [r for r in data.records if not r.ok]
    rows = [(r.job_id, r.model, r.method, r.class_name, r.seed, r.reason or "no reason recorded") for r in failed]
    body = table(("job", "model", "method", "class", "seed", "reason"), rows, cls="failures") if failed \
        else Markup("<p>none</p>")
    sections.append(section(f"Failures ({len(failed)})", body, "failures"))
    return sections


def _rate(flags) -> float | None:
    known = [f for f in flags if f is not None]
    return sum(known) / len(known) if known else None


def _mean(values) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def _metrics(ok: list[Record]) -> Markup:
    if not ok:
        return notice("no successful records")
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in ok:
        groups[(r.model, r.method)].append(r)
    rows = []
    for (model, method), records in sorted(groups.items()):
        rows.append((model, method, len(records), Markup(escape.percent(_rate(r.model_correct for r in records))),
                     Markup(escape.percent(_rate(r.verifier_correct for r in records))),
                     _mean(r.verifier_prob for r in records), _mean(r.frame_ssim for r in records),
                     _mean(r.frame_psnr for r in records)))
    headers = ("model", "method", "videos", "top-1 model", "top-1 verifier", "mean verifier confidence",
               "frame SSIM", "frame PSNR (dB)")
    return table(headers, rows, numeric=range(2, 8), cls="metrics")


def _per_class(ok: list[Record], root: Path, assets: Path) -> Markup:
    if not ok:
        return notice("no successful records")
    by_class: dict[str, list[Record]] = defaultdict(list)
    for r in ok:
        by_class[r.class_name].append(r)
    stats = sorted(((name, len(rs), _rate(r.model_correct for r in rs), _rate(r.verifier_correct for r in rs))
                    for name, rs in by_class.items()), key=lambda s: (s[3] is None, -(s[3] or 0), s[0]))
    shown = stats if len(stats) <= 2 * CHART_CLASSES else stats[:CHART_CLASSES] + stats[-CHART_CLASSES:]
    caption = "verifier top-1 per class" + ("" if shown is stats else f" (best and worst {CHART_CLASSES})")
    try:
        chart = plots.grouped_bars([s[0] for s in shown], {
            "model": [100 * s[2] if s[2] is not None else math.nan for s in shown],
            "verifier": [100 * s[3] if s[3] is not None else math.nan for s in shown]},
            assets / "per_class.png", title="top-1 per class (%)", xlabel="%")
        out = figure(image(chart, root, caption, cls="plot"), caption)
    except plots.PlotUnavailable as exc:
        out = notice(f"{caption}: {exc}")
    rows = [(name, n, Markup(escape.percent(m)), Markup(escape.percent(v))) for name, n, m, v in stats]
    return Markup(out + table(("class", "videos", "top-1 model", "top-1 verifier"), rows, numeric=(1, 2, 3),
                              cls="per-class"))


def _gallery(ok: list[Record], root: Path) -> Markup:
    if not ok:
        return notice("no videos")
    ordered = sorted(ok, key=lambda r: -(r.verifier_prob if r.verifier_prob is not None and
                                         math.isfinite(r.verifier_prob) else -1.0))
    gid = "sweep-gallery"
    controls = (select(gid, "class", sorted({r.class_name for r in ok}), filter_key="class")
                + select(gid, "model", sorted({r.model for r in ok}), filter_key="model")
                + select(gid, "method", sorted({r.method for r in ok}), filter_key="method")
                + select(gid, "sort", (), sort_options=(("vprob:desc", "verifier confidence, high first"),
                                                         ("vprob:asc", "verifier confidence, low first"),
                                                         ("mprob:desc", "model confidence, high first")))
                + pager(gid))
    cards = "".join(_card(r, root) for r in ordered)
    return Markup(f'<div class="controls">{controls}</div>'
                  f'<div class="cards" id="{gid}" data-gallery="" data-page-size="{PAGE_SIZE}">{cards}</div>')


def _sort_key(value: float | None) -> str:
    return repr(value) if value is not None and math.isfinite(value) else "NaN"


def _card(r: Record, root: Path) -> str:
    if r.thumbnail is not None and r.thumbnail.is_file():
        media = image(r.thumbnail, root, r.class_name)
    elif r.video is not None:
        media = animation([r.video], root, r.class_name, lazy=True)
    else:
        media = missing("no video recorded")
    mark_m = "" if r.model_correct is None else (" ok" if r.model_correct else " bad")
    mark_v = "" if r.verifier_correct is None else (" ok" if r.verifier_correct else " bad")
    lines = (f"<b>{escape.text(r.class_name)}</b><br>{escape.text(r.model)} · {escape.text(r.method)} · seed "
             f"{escape.text(r.seed)}<br><span class=\"{mark_m.strip()}\">model: {escape.text(r.model_top1)} "
             f"({escape.percent(r.model_prob)})</span><br><span class=\"{mark_v.strip()}\">verifier: "
             f"{escape.text(r.verifier_top1)} ({escape.percent(r.verifier_prob)})</span>")
    attrs = (f'data-class="{escape.attr(r.class_name)}" data-model="{escape.attr(r.model)}" '
             f'data-method="{escape.attr(r.method)}" data-vprob="{escape.attr(_sort_key(r.verifier_prob))}" '
             f'data-mprob="{escape.attr(_sort_key(r.model_prob))}"')
    return (f'<div class="card" {attrs}><div class="media"><figure>{media}</figure>'
            f'<div class="small">{lines}</div></div></div>')
