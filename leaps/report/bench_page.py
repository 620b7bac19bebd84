"""The benchmark page: per Table 4 setting a latency + memory chart and the table of its rows; per
kernel-benchmark batch a latency + bandwidth chart and its table; other JSON files listed."""

from __future__ import annotations

import re
from pathlib import Path

from . import escape, plots
from .bench_data import BenchData, BenchFile, KernelSetting, Table4Setting, collect
from .html import Markup, figure, image, key_values, notice, section, table


def build(root: Path, assets: Path) -> tuple[str, str, list[str]]:
    data = collect(root)
    charted = [f for f in data.files if f.kind != "other"]
    title = f"LEAPS benchmarks: {root.resolve().name}"
    return title, f"{len(charted)} benchmark file(s) charted", render(data, assets)


def render(data: BenchData, assets: Path) -> list[str]:
    sections: list[str] = []
    if data.problems:
        sections.append(section("What is missing", "".join(notice(p) for p in data.problems), "problems"))
    charted = [f for f in data.files if f.kind != "other"]
    if charted:
        links = "".join(f'<a href="#{escape.attr(_anchor(f, data.root))}">{escape.text(_rel(f.path, data.root))}</a>'
                        for f in charted)
        sections.append(Markup(f'<nav class="toc">{links}</nav>'))
    counter = iter(range(10**9))
    for entry in charted:
        parts = [notice(n) for n in entry.notes]
        if entry.environment:
            parts.append(key_values(entry.environment))
        for setting in entry.settings:
            number = next(counter)
            if isinstance(setting, Table4Setting):
                parts.append(_table4(setting, data.root, assets / f"table4_{number}.png"))
            else:
                parts.append(_kernels(setting, data.root, assets / f"kernels_{number}.png"))
        if not entry.settings:
            parts.append(notice("no results in this file"))
        kind = "Table 4" if entry.kind == "table4" else "kernels"
        sections.append(section(f"{kind}: {_rel(entry.path, data.root)}", "".join(parts), _anchor(entry, data.root)))
    others = [f for f in data.files if f.kind == "other"]
    if others:
        rows = [(_rel(f.path, data.root),) for f in others]
        sections.append(section("Other JSON (not charted)", table(("file",), rows), "other"))
    return sections


def _rel(path: Path, root: Path) -> str:
    return str(path.relative_to(root))


def _anchor(entry: BenchFile, root: Path) -> str:
    return "f-" + re.sub(r"[^A-Za-z0-9_-]+", "-", _rel(entry.path, root))


def _chart(make, caption: str, root: Path) -> Markup:
    try:
        path = make()
    except plots.PlotUnavailable as exc:
        return notice(f"{caption}: {exc}")
    return figure(image(path, root, caption, cls="plot"), caption)


def _table4(setting: Table4Setting, root: Path, chart: Path) -> Markup:
    ok = [r for r in setting.rows if r.status == "ok"]
    names = [r.name + (" (superseded)" if r.superseded else "") for r in ok]
    caption = f"{setting.label} on {setting.device}: median latency per step and inference, peak memory"
    body = _chart(lambda: plots.grouped_bars(
        names, {"step (fwd+bwd+update)": [r.step_ms for r in ok], "inference (fwd)": [r.inference_ms for r in ok]},
        chart, title="latency (ms, median)", xlabel="ms",
        panels=[("peak memory (GiB)", {"step": [r.peak_step_gib for r in ok],
                                       "inference": [r.peak_inference_gib for r in ok]}, "GiB")]),
        caption, root) if ok else notice(f"{setting.label}: no row ran")
    headers = ("row", "status", "step ms (median)", "step ms (p90)", "inference ms (median)", "peak step GiB",
               "peak inference GiB", "step / bare", "videos / hour", "note")
    rows = [(r.name, r.status, r.step_ms, r.step_p90, r.inference_ms, r.peak_step_gib, r.peak_inference_gib,
             r.step_vs_bare, r.videos_per_hour, ("superseded; " if r.superseded else "") + r.reason)
            for r in setting.rows]
    return Markup(f"<h3>{escape.text(setting.label)} ({escape.text(setting.device)})</h3>" + body
                  + table(headers, rows, numeric=range(2, 9), cls="table4"))


def _kernels(setting: KernelSetting, root: Path, chart: Path) -> Markup:
    backends = list(dict.fromkeys(r.backend for r in setting.rows))
    terms = list(dict.fromkeys(r.term for r in setting.rows))
    by = {(r.term, r.backend): r for r in setting.rows}

    def series(attr):
        return {b: [getattr(by.get((t, b)), attr, None) for t in terms] for b in backends}

    caption = f"{setting.label} on {setting.device}: eager and CUDA-graph latency per term and backend, bandwidth"
    body = _chart(lambda: plots.grouped_bars(
        terms, series("ms"), chart, title="latency, eager (ms)", xlabel="ms",
        panels=[("latency, CUDA graph (ms)", series("graph_ms"), "ms"), ("memory bandwidth (GB/s)", series("gbps"),
                                                                         "GB/s")]),
        caption, root) if setting.rows else notice(f"{setting.label}: no rows")
    headers = ("term", "backend", "ms", "graph ms", "GB/s", "speedup vs reference", "check")
    rows = [(r.term, r.backend, r.ms, r.graph_ms, r.gbps, r.speedup, r.check) for r in setting.rows]
    skipped = "".join(notice(f"skipped {k}: {v}") for k, v in setting.skipped.items())
    return Markup(f"<h3>{escape.text(setting.label)} ({escape.text(setting.device)})</h3>" + body + skipped
                  + table(headers, rows, numeric=range(2, 6), cls="kernels"))
