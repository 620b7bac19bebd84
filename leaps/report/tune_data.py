"""A tune folder (``leaps tune --out DIR``): ``study.log`` beside ``trials.csv`` and/or ``best_preset.json``.

Read without trusting it: a missing or broken file, a malformed CSV row, a NaN or a missing heat
map each become a line in ``problems`` (the page shows them) rather than an error::

    trials.csv        trial,state,<parameters...>,objective,objective_std,<measures...>,note
    best_preset.json  {<parameter>: value, ..., "meta": {"objective": "verifier_prob",
                       "objective_value": ..., "objective_std_over_seeds": ..., "seeds": [...], ...}}
    heatmaps/*.png    the objective over lambda_first x lambda_last, one per r
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from .files import as_dict, as_float, read_json

STUDY = "study.log"
TRIALS_CSV = "trials.csv"
BEST_PRESET = "best_preset.json"
HEATMAPS = "heatmaps"


@dataclass
class TuneData:
    root: Path
    columns: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)  # column -> float (numbers) or str (the rest)
    preset: dict = field(default_factory=dict)  # the best point's parameters (best_preset.json's top level)
    meta: dict = field(default_factory=dict)
    maximise: bool | None = None  # None: direction unknown, rows keep the CSV order
    heatmaps: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def objective(self) -> str:
        return str(self.meta.get("objective") or "objective")


def detect(root: Path) -> bool:
    return (root / STUDY).is_file() and ((root / TRIALS_CSV).is_file() or (root / BEST_PRESET).is_file())


def collect(root: Path) -> TuneData:
    data = TuneData(root)
    _read_preset(data)
    data.maximise = _direction(data.meta.get("objective"))
    _read_trials(data)
    _find_heatmaps(data)
    return data


def _read_preset(data: TuneData) -> None:
    path = data.root / BEST_PRESET
    raw = read_json(path, data.problems, data.root)
    if raw is None:
        return
    if not isinstance(raw, dict):
        data.problems.append(f"{BEST_PRESET} is not a JSON object")
        return
    data.meta = as_dict(raw.get("meta"))
    data.preset = {str(k): v for k, v in raw.items() if k != "meta"}
    if not data.preset:
        data.problems.append(f"{BEST_PRESET} names no parameters")
    value = as_float(data.meta.get("objective_value"))
    if value is None or not math.isfinite(value):
        data.problems.append(f"{BEST_PRESET} has no finite objective value")


def _direction(objective) -> bool | None:
    """Whether the tune maximised its objective (leaps.tune's own rule); None for an unknown objective."""
    if not isinstance(objective, str):
        return None
    try:
        from leaps.tune.evaluate import maximise

        return maximise(objective)
    except Exception:  # noqa: BLE001 - an unknown objective or an unimportable tuner: keep the CSV order
        return None


def _read_trials(data: TuneData) -> None:
    path = data.root / TRIALS_CSV
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        data.problems.append(f"{TRIALS_CSV} is missing")
        return
    except (OSError, UnicodeDecodeError) as exc:
        data.problems.append(f"{TRIALS_CSV} cannot be read ({exc.__class__.__name__}: {exc})")
        return
    try:
        lines = list(csv.reader(text.splitlines()))
    except csv.Error as exc:
        data.problems.append(f"{TRIALS_CSV} is not valid CSV ({exc})")
        return
    if not lines or not any(lines[0]):
        data.problems.append(f"{TRIALS_CSV} is empty")
        return
    data.columns = [c.strip() for c in lines[0]]
    for number, cells in enumerate(lines[1:], 2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(data.columns):
            data.problems.append(f"{TRIALS_CSV} line {number} has {len(cells)} fields, not {len(data.columns)}: "
                                 "skipped")
            continue
        data.rows.append({c: _value(v) for c, v in zip(data.columns, cells)})
    if not data.rows:
        data.problems.append(f"{TRIALS_CSV} holds no trials")
    elif "objective" not in data.columns:
        data.problems.append(f"{TRIALS_CSV} has no objective column")
    else:
        unscored = [r for r in data.rows if not _finite(r.get("objective"))]
        if unscored:
            data.problems.append(f"{len(unscored)} trial(s) have no finite objective (failed, pruned or NaN)")
    data.rows = _ordered(data.rows, data.maximise)


def _value(cell: str):
    """A CSV cell as a float where it is a number (NaN included), else the stripped text."""
    text = cell.strip()
    try:
        return float(text)
    except ValueError:
        return text


def _finite(value) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def _ordered(rows: list[dict], maximise: bool | None) -> list[dict]:
    """Best objective first (as trials.md orders them); trials without a finite objective last, by number."""
    if maximise is None:
        return rows
    sign = -1 if maximise else 1
    return sorted(rows, key=lambda r: (not _finite(r.get("objective")),
                                       sign * r["objective"] if _finite(r.get("objective")) else 0.0))


def _find_heatmaps(data: TuneData) -> None:
    folder = data.root / HEATMAPS
    if not folder.is_dir():
        data.problems.append(f"no {HEATMAPS}/ folder (the tune did not vary both lambdas, or matplotlib was missing)")
        return
    data.heatmaps = sorted((p for p in folder.glob("*.png") if p.is_file()), key=_heatmap_key)
    if not data.heatmaps:
        data.problems.append(f"{HEATMAPS}/ holds no PNG heat maps")
        return
    # leaps tune writes one map per r of the scored trials, named r=<r:g>.png
    if {"lambda_first", "lambda_last", "r"} <= set(data.columns):
        scored = [row for row in data.rows if _finite(row.get("r")) and _finite(row.get("objective"))]
        expected = {f"r={row['r']:g}.png" for row in scored}
        absent = sorted(expected - {p.name for p in data.heatmaps})
        if absent:
            data.problems.append(f"heat map(s) missing: {', '.join(f'{HEATMAPS}/{name}' for name in absent)}")


def _heatmap_key(path: Path):
    """``r=0.001.png`` before ``r=0.0075.png``: by the number after ``r=``, then by name."""
    _, _, value = path.stem.partition("=")
    try:
        return (0, float(value), path.name)
    except ValueError:
        return (1, 0.0, path.name)
