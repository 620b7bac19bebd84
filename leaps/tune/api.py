"""``leaps.tune.run``: choose λ₁, λ_L, r (or any inversion option) for a model by grid search or TPE,
on one shared, resumable Optuna study that any number of processes work on."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from leaps.sweep.logs import file_logger

from .driver import drive
from .errors import TuneError
from .evaluate import DEFAULT_OBJECTIVE, TrialSetup, maximise
from .results import best_trial, trial_rows, write_best_preset, write_csv, write_heatmaps, write_markdown
from .space import PAPER_GRID, PAPER_STEPS, SAMPLERS, Range, check_dimension, make_sampler
from .storage import open_study

LOG_DIR = "logs"
DEFAULT_TPE_TRIALS = 20


@dataclass
class TuneReport:
    """What the study holds after this process's work (``evaluated`` ... ``reruns``: this process)."""

    out: Path
    objective: str
    complete: int = 0
    evaluated: int = 0
    failed: int = 0
    duplicates: int = 0
    reruns: int = 0
    best: dict | None = None
    heatmaps: list = field(default_factory=list)


def run(model: str, out: str | Path, *, stimuli: str = "toy:test:20", verifier: str | None = "auto",
        grid: dict[str, list] | None = None, ranges: dict[str, tuple] | None = None, sampler: str = "grid",
        objective: str = DEFAULT_OBJECTIVE, seeds=(0,), batch: int = 8, n_trials: int | None = None,
        max_trials: int | None = None, sampler_seed: int = 0, weights: str | None = None,
        verifier_weights: str | None = None, pretrained: bool = False, device: str = "auto",
        keep_videos: bool = False, **config) -> TuneReport:
    """Tune ``model`` into ``out``; keyword ``config`` are fixed InversionConfig fields (``steps``
    defaults to the paper's 1000, ``fast=True``, ``size`` ...).

        leaps.tune.run("toy_r3d", "tunes/toy", stimuli="toy:test:20", steps=200)   # the paper's 5x5x5 grid

    ``grid``: name -> values (default: the paper's grid for ``sampler="grid"``); ``ranges``: name ->
    (low, high[, "log"]) for ``sampler="tpe"``. ``n_trials``: TPE trials in the study (default 20);
    ``max_trials``: stop this process after evaluating that many (run again to resume).
    """
    if importlib.util.find_spec("optuna") is None:
        raise TuneError("leaps tune needs Optuna: pip install 'leaps[tune]' (or pip install optuna)")
    if sampler not in SAMPLERS:
        raise TuneError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
    maximise(objective)  # an unknown objective fails before any work
    ranges = {k: _as_range(k, v) for k, v in (ranges or {}).items()}
    if grid is None:
        grid = dict(PAPER_GRID) if sampler == "grid" and not ranges else {}
    grid = {k: list(v) for k, v in grid.items()}
    for name in grid:
        check_dimension(name)
    if sampler == "grid" and ranges:
        raise TuneError("ranges need --sampler tpe (the grid sampler takes --grid values)")
    if not grid and not ranges:
        raise TuneError("nothing to tune: give --grid or --range dimensions")
    if set(grid) & set(ranges):
        raise TuneError(f"{', '.join(sorted(set(grid) & set(ranges)))}: both a grid and a range")
    if any(len(v) == 0 for v in grid.values()):
        raise TuneError("a grid dimension has no values")
    if n_trials is not None and n_trials < 1 or max_trials is not None and max_trials < 1:
        raise TuneError("n_trials and max_trials must be at least 1")
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise TuneError(f"seeds must be distinct non-negative integers, got {seeds}")
    clash = set(config) & (set(grid) | set(ranges))
    if clash:
        raise TuneError(f"{', '.join(sorted(clash))}: both tuned and fixed")
    for name in config:
        check_dimension(name)
    if "steps" not in config and "steps" not in _preset_values(config.get("preset")):
        config["steps"] = PAPER_STEPS  # the paper's, unless given or in a fixed preset
    total = None if sampler == "grid" else (n_trials or DEFAULT_TPE_TRIALS)

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TuneError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    setup = TrialSetup(model=model, stimuli=stimuli, verifier=verifier, seeds=seeds, batch=batch, config=config,
                       weights=weights, verifier_weights=verifier_weights, pretrained=pretrained, device=device,
                       keep_videos=keep_videos)
    identity = {"sampler": sampler, "sampler_seed": sampler_seed, "grid": grid, "objective": objective,
                "ranges": {k: dataclasses.astuple(r)[:3] for k, r in ranges.items()}, "total": total,
                "setup": {k: v for k, v in dataclasses.asdict(setup).items()
                          if k not in ("device", "keep_videos", "_networks")}}
    study = open_study(out, make_sampler(sampler, grid, sampler_seed), maximise(objective), identity)
    log = _logger(out)
    work = drive(study, setup, grid, ranges, objective, out, total=total, max_trials=max_trials, log=log)
    report = TuneReport(out=out, objective=objective, **dataclasses.asdict(work))
    report.complete = sum(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False))
    report.best, report.heatmaps = write_results(study, out, list(grid) + list(ranges), objective, identity)
    return report


def write_results(study, out: Path, dims: list[str], objective: str, identity: dict):
    rows = trial_rows(study, dims, objective)
    best = best_trial(study, objective)
    write_csv(rows, out / "trials.csv")
    write_markdown(rows, out / "trials.md", objective, best)
    if best is not None:
        meta = {"objective": objective, "model": identity["setup"]["model"], "verifier": identity["setup"]["verifier"],
                "stimuli": identity["setup"]["stimuli"], "steps": identity["setup"]["config"].get("steps"),
                "sampler": identity["sampler"]}
        write_best_preset(best, out / "best_preset.json", meta)
    return best, write_heatmaps(rows, out, objective)


def _preset_values(preset) -> dict:
    from .preset import load_preset

    return {} if preset is None else load_preset(preset)


def _as_range(name: str, value) -> Range:
    if isinstance(value, Range):
        return value
    from .space import parse_ranges

    low, high, *rest = value
    return parse_ranges([f"{name}={low}:{high}" + (f":{rest[0]}" if rest else "")])[name]


def _logger(out: Path) -> logging.Logger:
    pid = os.getpid()
    return file_logger(f"leaps.tune.{out.resolve()}.{pid}", out / LOG_DIR / f"tune-{pid}.log")
