"""The tune page: the best preset (its values, the objective ± std over seeds), every trial of
trials.csv (best first) and the lambda_first x lambda_last heat maps the tuner drew."""

from __future__ import annotations

import math
from pathlib import Path

from . import escape
from .html import Markup, figure, image, key_values, notice, section, table
from .tune_data import BEST_PRESET, HEATMAPS, TRIALS_CSV, TuneData, collect


def build(root: Path, assets: Path) -> tuple[str, str, list[str]]:
    data = collect(root)
    direction = "" if data.maximise is None else f" ({'higher' if data.maximise else 'lower'} is better)"
    subtitle = f"{len(data.rows)} trial(s), objective {data.objective}{direction}, " \
               f"{len(data.heatmaps)} heat map(s)"
    return f"LEAPS tune: {root.resolve().name}", subtitle, render(data)


def render(data: TuneData) -> list[str]:
    sections: list[str] = []
    if data.problems:
        sections.append(section("What is missing", "".join(notice(p) for p in data.problems), "problems"))
    sections.append(section("Best preset", _best(data), "best"))
    sections.append(section(f"Trials ({len(data.rows)})", _trials(data), "trials"))
    sections.append(section("λ₁ × λ_L heat maps", _heatmaps(data), "heatmaps"))
    return sections


def _best(data: TuneData) -> Markup:
    if not data.preset and not data.meta:
        return notice(f"no best preset ({BEST_PRESET} is missing or unreadable)")
    value, std = data.meta.get("objective_value"), data.meta.get("objective_std_over_seeds")
    headline = (f"<p><b>{escape.text(data.objective)} = {escape.number(_number(value), 4)} ± "
                f"{escape.number(_number(std), 3)}</b> (std over seeds {escape.text(_seeds(data.meta.get('seeds')))}"
                f"; trial {escape.text(data.meta.get('trial', '?'))})</p>")
    usage = (f'<p class="small">use it with <code>leaps invert --preset {escape.text(BEST_PRESET)}</code> '
             "(explicit flags win)</p>")
    preset = key_values(data.preset) if data.preset else notice(f"{BEST_PRESET} names no parameters")
    per_seed = data.meta.get("objective_per_seed")
    seeds = data.meta.get("seeds")
    extra = ""
    if isinstance(per_seed, list) and per_seed:
        names = seeds if isinstance(seeds, list) and len(seeds) == len(per_seed) else list(range(len(per_seed)))
        extra += table(("seed", data.objective), ((s, _number(v)) for s, v in zip(names, per_seed)), numeric=(1,),
                       cls="per-seed")
    measures = data.meta.get("measures")
    if isinstance(measures, dict) and measures:
        extra += table(("measure at the best point", "value"), ((k, _number(v)) for k, v in measures.items()),
                       numeric=(1,), cls="measures")
    settings = {k: v for k, v in data.meta.items() if k in ("model", "stimuli", "verifier", "sampler", "steps")}
    if settings:
        extra += key_values(settings)
    return Markup(headline + usage + preset + extra)


def _number(value):
    """JSON / CSV values for :func:`cell`: numbers as they are, anything else as text (never raises)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return value
    return str(value)


def _seeds(seeds) -> str:
    if isinstance(seeds, list) and seeds:
        return ", ".join(str(s) for s in seeds)
    return "unknown"


def _trials(data: TuneData) -> Markup:
    if not data.rows:
        return notice(f"no trials ({TRIALS_CSV} is missing, empty or unreadable)")
    numeric = [i for i, c in enumerate(data.columns) if any(isinstance(r.get(c), float) for r in data.rows)]
    rows = [[_cell(r.get(c)) for c in data.columns] for r in data.rows]
    order = "best first" if data.maximise is not None else "in the order of the CSV (objective direction unknown)"
    return Markup(f'<p class="small">{escape.text(order)}; NaN: not measured</p>'
                  + table(data.columns, rows, numeric=numeric, cls="trials"))


def _cell(value):
    """Integral numbers (trial, videos) without a decimal point; empty cells as empty."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    return value


def _heatmaps(data: TuneData) -> Markup:
    if not data.heatmaps:
        return notice(f"no heat maps in {HEATMAPS}/")
    figures = "".join(figure(image(p, data.root, f"{data.objective} over lambda_first x lambda_last, {p.stem}",
                                   cls="plot"), p.stem) for p in data.heatmaps)
    return Markup(f'<div class="cards">{figures}</div>')
