"""The loop every worker runs on the shared study: pick a point, skip it if someone else has it,
evaluate it, record it. Grid tunes end when every point is done once, TPE tunes after N trials.

Trial states: COMPLETE (evaluated), FAIL with ``error`` (the point failed; not retried), FAIL with
``stale`` (its worker died; the point is evaluated again, a *re-run*), PRUNED with ``duplicate``
(another worker had the point; nothing evaluated).
"""

from __future__ import annotations

import datetime
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from leaps.errors import LeapsError

from .evaluate import TrialSetup, evaluate
from .space import grid_points, point_key, suggest
from .storage import WorkerLock, worker_alive

TRIAL_DIR = "trials"
#: A sampler that proposes only points already taken this many times in a row has nothing new left.
MAX_DUPLICATES_IN_A_ROW = 50
#: How long a worker waits for trials asked for before its own to be signed, and how often it looks.
SIGN_WAIT_S, SIGN_POLL_S = 10.0, 0.02


@dataclass
class DriveReport:
    evaluated: int = 0    # trials this process evaluated
    failed: int = 0       # of which failed
    duplicates: int = 0   # points skipped: another worker had them
    reruns: int = 0       # trials of killed workers marked stale (their points run again)


def _state(t) -> str:
    return t.state.name


def _done_keys(trials) -> set[str]:
    return {t.user_attrs.get("point") for t in trials
            if _state(t) == "COMPLETE" or (_state(t) == "FAIL" and "error" in t.user_attrs)}


def _live_running(trials, out: Path, me: str) -> list:
    """RUNNING trials of live workers (a trial just asked for, not yet signed, counts as live)."""
    return [t for t in trials if _state(t) == "RUNNING" and
            (t.user_attrs.get("worker") in (None, me) or worker_alive(out, t.user_attrs["worker"]))]


def fail_stale(study, trials, out: Path, me: str) -> int:
    """Mark the RUNNING trials of dead workers as FAIL (stale); how many."""
    from optuna.trial import TrialState

    count = 0
    for t in trials:
        token = t.user_attrs.get("worker")
        if _state(t) != "RUNNING" or token in (None, me) or worker_alive(out, token):
            continue
        try:
            study._storage.set_trial_user_attr(t._trial_id, "stale", True)
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            count += 1
        except (RuntimeError, ValueError):  # another worker finished it first
            pass
    return count


def drive(study, setup: TrialSetup, grid: dict, ranges: dict, objective: str, out: Path, *, total: int | None,
          max_trials: int | None, log: logging.Logger) -> DriveReport:
    """Work on ``study`` until it is finished (grid: every point done; else ``total`` trials done)
    or this process has evaluated ``max_trials``."""
    report = DriveReport()
    points = grid_points(grid) if not ranges else None
    if points is not None and total is not None:
        total = min(total, len(points))  # TPE over a grid only: no more trials than points
    in_a_row = 0
    with WorkerLock(out) as me:
        while (max_trials is None or report.evaluated < max_trials) and in_a_row < MAX_DUPLICATES_IN_A_ROW:
            trials = study.get_trials(deepcopy=False)
            report.reruns += fail_stale(study, trials, out, me.token)
            trials = study.get_trials(deepcopy=False)
            done, live = _done_keys(trials), _live_running(trials, out, me.token)
            if points is not None and total is None:
                missing = [p for p in points if point_key(p) not in done]
                live_keys = {t.user_attrs.get("point") for t in live}
                if not missing or all(point_key(p) in live_keys for p in missing):
                    break  # finished, or the rest is in live workers' hands
                tried = {t.user_attrs.get("point") for t in trials}
                if all(point_key(p) in tried for p in missing):  # the grid sampler would only repeat points
                    retry = next(p for p in missing if point_key(p) not in live_keys)
                    study.enqueue_trial(retry, skip_if_exists=False)
            elif len(done) + len(live) >= total:
                break
            evaluated = _run_one(study, setup, grid, ranges, objective, out, me.token, report, log)
            in_a_row = 0 if evaluated else in_a_row + 1
    return report


def _signed_trials(study, number: int) -> list:
    """The trials other than ``number``, once those asked for before it are signed with their point.

    A worker signs a trial right after asking for it, but another worker may check in between; a trial
    asked for long ago and still unsigned is an orphan (its worker died in between) and is not waited for.
    """
    deadline = time.monotonic() + SIGN_WAIT_S
    while True:
        trials = [t for t in study.get_trials(deepcopy=False) if t.number != number]
        now = datetime.datetime.now()
        pending = [t for t in trials if t.number < number and _state(t) == "RUNNING" and "point" not in t.user_attrs
                   and t.datetime_start is not None and (now - t.datetime_start).total_seconds() < SIGN_WAIT_S]
        if not pending or time.monotonic() > deadline:
            return trials
        time.sleep(SIGN_POLL_S)


def _run_one(study, setup, grid, ranges, objective, out, token, report, log) -> bool:
    from optuna.trial import TrialState

    trial = study.ask()
    point = suggest(trial, grid, ranges)
    key = point_key(point)
    trial.set_user_attr("point", key)
    trial.set_user_attr("worker", token)
    # Signed before this check, and the check waits for the earlier trials' signatures: of two workers on one
    # point the later trial always sees the earlier (which goes ahead) and skips it.
    others = [t for t in _signed_trials(study, trial.number) if t.user_attrs.get("point") == key]
    if key in _done_keys(others) or any(t.number < trial.number for t in _live_running(others, out, token)):
        trial.set_user_attr("duplicate", True)
        study.tell(trial, state=TrialState.PRUNED)
        report.duplicates += 1
        return False
    log.info("trial %d: %s", trial.number, key)
    report.evaluated += 1
    try:
        result = evaluate(setup, point, Path(out) / TRIAL_DIR / f"{trial.number:04d}", log)
        value = result["measures"].get(objective)
        if value is None:
            raise LeapsError(f"the trial has no {objective} (is there a verifier?)")
    except LeapsError as exc:
        log.warning("trial %d failed: %s", trial.number, exc)
        trial.set_user_attr("error", " ".join(str(exc).split()))
        study.tell(trial, state=TrialState.FAIL)
        report.failed += 1
        return True
    trial.set_user_attr("measures", result["measures"])
    trial.set_user_attr("per_seed", result["per_seed"])
    study.tell(trial, value)
    log.info("trial %d: %s = %.6g", trial.number, objective, value)
    return True
