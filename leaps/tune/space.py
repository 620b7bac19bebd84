"""The search space of a tune: the paper's grid, ``--grid`` / ``--range`` parsing, and the sampler.

Any :class:`InversionConfig` field can be a dimension; values are coerced to the field's type.
"""

from __future__ import annotations

import dataclasses
import math

from .errors import TuneError

#: The paper's grid search (Section 4.1): 5 x 5 x 5 points, 1K steps each.
PAPER_GRID: dict[str, list] = {
    "lambda_first": [0.5, 0.625, 0.75, 0.875, 1.0],
    "lambda_last": [0.1, 0.2, 0.3, 0.4, 0.5],
    "r": [1e-3, 2.5e-3, 5e-3, 7.5e-3, 1e-2],
}
PAPER_STEPS = 1000
SAMPLERS = ("grid", "tpe")
#: Fields a tune must not vary: they do not shape the video, or the tune sets them itself.
NOT_TUNABLE = {"progress", "seed", "objective", "snapshot_every"}


def field_types() -> dict[str, type]:
    """InversionConfig field -> the Python type its values are coerced to."""
    from leaps.config import InversionConfig

    out = {}
    for f in dataclasses.fields(InversionConfig):
        text = str(f.type)
        for kind in (bool, int, float):
            if kind.__name__ in text:
                out[f.name] = kind
                break
        else:
            out[f.name] = str
    return out


def tuple_fields() -> set[str]:
    """InversionConfig fields that hold a tuple (a JSON array fills them item by item)."""
    from leaps.config import InversionConfig

    return {f.name for f in dataclasses.fields(InversionConfig) if "tuple" in str(f.type)}


def check_dimension(name: str) -> type:
    types = field_types()
    if name not in types or name in NOT_TUNABLE:
        choices = ", ".join(sorted(set(types) - NOT_TUNABLE))
        raise TuneError(f"{name!r} is not a tunable inversion option; choose from {choices}")
    return types[name]


def coerce(name: str, text, kind: type):
    if not isinstance(text, str):
        return kind(text)
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        return kind(text)
    except ValueError:
        raise TuneError(f"{name}: {text!r} is not a {kind.__name__}") from None


def parse_grid(specs: list[str]) -> dict[str, list]:
    """``["lambda_first=0.5,1.0", "r=1e-3"]`` -> ``{"lambda_first": [0.5, 1.0], "r": [0.001]}``."""
    grid: dict[str, list] = {}
    for spec in specs:
        name, sep, values = str(spec).partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not values.strip():
            raise TuneError(f"--grid expects NAME=V1,V2,..., got {spec!r}")
        kind = check_dimension(name)
        parsed = [coerce(name, v.strip(), kind) for v in values.split(",") if v.strip()]
        if len(set(parsed)) != len(parsed):
            raise TuneError(f"--grid {name} repeats a value")
        grid[name] = parsed
    return grid


@dataclasses.dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = False
    kind: type = float


def parse_ranges(specs: list[str]) -> dict[str, Range]:
    """``["r=1e-4:1e-2:log", "steps=100:500"]`` -> name -> :class:`Range` (TPE dimensions)."""
    ranges = {}
    for spec in specs:
        name, sep, body = str(spec).partition("=")
        name = name.strip().replace("-", "_")
        parts = body.split(":")
        if not sep or len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("log", "lin")):
            raise TuneError(f"--range expects NAME=LOW:HIGH[:log], got {spec!r}")
        kind = check_dimension(name)
        if kind not in (int, float):
            raise TuneError(f"--range {name}: only numeric options have ranges (use --grid)")
        low, high = coerce(name, parts[0], kind), coerce(name, parts[1], kind)
        log = len(parts) == 3 and parts[2] == "log"
        if not (math.isfinite(low) and math.isfinite(high)) or low >= high or (log and low <= 0):
            raise TuneError(f"--range {name}: need LOW < HIGH (and LOW > 0 for log), got {low}:{high}")
        ranges[name] = Range(low, high, log, kind)
    return ranges


def make_sampler(kind: str, grid: dict[str, list], seed: int):
    import optuna

    if kind == "grid":
        return _GridSampler(grid, seed=seed)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    raise TuneError(f"unknown sampler {kind!r}; choose from {', '.join(SAMPLERS)}")


def suggest(trial, grid: dict[str, list], ranges: dict[str, Range]) -> dict:
    """The point of ``trial``: grid dimensions categorical, ranges continuous (or integer)."""
    point = {name: trial.suggest_categorical(name, values) for name, values in grid.items()}
    for name, rng in ranges.items():
        if rng.kind is int:
            point[name] = trial.suggest_int(name, int(rng.low), int(rng.high), log=rng.log)
        else:
            point[name] = trial.suggest_float(name, rng.low, rng.high, log=rng.log)
    return point


def grid_points(grid: dict[str, list]) -> list[dict]:
    import itertools

    names = sorted(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


def point_key(point: dict) -> str:
    """A canonical name of a point (floats by repr): tells whether two trials evaluated the same point."""
    return ",".join(f"{k}={point[k]!r}" for k in sorted(point))


def _grid_sampler_class():
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        """Optuna's grid sampler without its stop-when-exhausted hook: the tune's driver (ask/tell,
        no ``optimize``) decides when the grid is done, and re-runs points by enqueueing them."""

        def after_trial(self, study, trial, state, values) -> None:
            return None

    return GridSampler


def _GridSampler(grid, seed):  # noqa: N802 - a class built on first use (optuna is an optional dependency)
    return _grid_sampler_class()(grid, seed=seed)
