"""``leaps tune``: parser and command, for leaps.cli and ``python -m leaps.tune``.

Bad input prints one ``leaps: error: ...`` line and returns 2. Any number of processes may run the
same command on the same --out at once: they share the study and split its trials.
"""

from __future__ import annotations

import argparse
import sys

from leaps.errors import LeapsError
from leaps.sweep.cli import add_config_flags, config_from_args
from leaps.sweep.stimuli import DEFAULT_STIMULI

from .evaluate import DEFAULT_OBJECTIVE, MEASURES
from .space import PAPER_STEPS, SAMPLERS

EXIT_BAD_INPUT = 2


def add_tune_arguments(p: argparse.ArgumentParser) -> None:
    w = p.add_argument_group("what to tune")
    w.add_argument("--model", required=True, help="model to tune the inversion of")
    w.add_argument("--weights", help="checkpoint of the model (toy models use the weights shipped with leaps)")
    w.add_argument("--pretrained", action="store_true", help="download the published weights of non-toy models")
    w.add_argument("--verifier", default="auto", help="verifier for R_feat and the objective (default: toy_x3d for "
                   "toy models, none otherwise)")
    w.add_argument("--verifier-weights", help="checkpoint of the verifier")
    w.add_argument("--stimuli", default=DEFAULT_STIMULI, help="the fixed stimulus set of every trial: ROOT/<class>/"
                   f"<video> folder, .csv/.jsonl manifest, or toy:SPLIT:N (default {DEFAULT_STIMULI})")
    w.add_argument("--seeds", "--seed", type=int, nargs="+", default=[0], help="seeds each trial runs (the "
                   "objective is their mean; its std at the best point is reported) (default 0)")
    w.add_argument("--batch", type=int, default=8, help="videos optimised together (default 8)")
    s = p.add_argument_group("search")
    s.add_argument("--sampler", choices=SAMPLERS, default="grid", help="grid (default: the paper's 5x5x5 grid of "
                   "lambda_first, lambda_last, r) or tpe")
    s.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                   help="a grid dimension, any InversionConfig field (repeat); replaces the paper's grid")
    s.add_argument("--range", action="append", default=[], metavar="FIELD=LOW:HIGH[:log]",
                   help="a continuous dimension for --sampler tpe (repeat)")
    s.add_argument("--objective", default=DEFAULT_OBJECTIVE, help=f"measure to optimise: {', '.join(MEASURES)} or "
                   f"loss_<term> (default {DEFAULT_OBJECTIVE}: the verifier's mean probability of the target)")
    s.add_argument("--trials", type=int, help="tpe: trials in the study (default 20); the grid: every point once")
    s.add_argument("--max-trials", type=int, help="stop this process after evaluating N trials (rerun to resume)")
    s.add_argument("--sampler-seed", type=int, default=0, help="seed of the sampler (default 0)")
    fixed = p.add_argument_group(f"fixed inversion options (InversionConfig; --steps defaults to {PAPER_STEPS})")
    add_config_flags(fixed)
    r = p.add_argument_group("running")
    r.add_argument("--out", required=True, help="tune folder: study.log, trials.csv/md, best_preset.json, heatmaps/")
    r.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda:N")
    r.add_argument("--keep-videos", action="store_true", help="keep every trial's videos (default: records only)")
    r.add_argument("--quiet", action="store_true", help="print the summary line only")


def add_tune_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("tune", help="choose lambda_first, lambda_last, r (or any option) by grid search / TPE",
                              description="Tune inversion options of a model on a fixed stimulus set with Optuna; "
                              "resumable; run the same command in several processes to share the work.")
    add_tune_arguments(p)
    return p


def run_kwargs(args) -> dict:
    from .space import parse_grid, parse_ranges

    config = config_from_args(args)
    return dict(stimuli=args.stimuli, verifier=args.verifier, grid=parse_grid(args.grid) or None,
                ranges=parse_ranges(args.range), sampler=args.sampler, objective=args.objective, seeds=args.seeds,
                batch=args.batch, n_trials=args.trials, max_trials=args.max_trials, sampler_seed=args.sampler_seed,
                weights=args.weights, verifier_weights=args.verifier_weights, pretrained=args.pretrained,
                device=args.device, keep_videos=args.keep_videos, **config)


def cmd_tune(args) -> int:
    """``leaps tune``: work on the study in --out until it is done; print the table and the best preset."""
    from .api import run

    try:
        report = run(args.model, args.out, **run_kwargs(args))
    except LeapsError as err:
        print(f"leaps: error: {' '.join(str(err).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = report.out
    if not args.quiet:
        print((out / "trials.md").read_text(encoding="utf-8"), end="")
    print(f"this run: {report.evaluated} trials ({report.failed} failed), {report.duplicates} duplicates skipped, "
          f"{report.reruns} stale trials re-run; study: {report.complete} complete")
    if report.best is not None:
        print(f"best {report.objective} = {report.best['value']:.6g} (std over seeds {report.best['std']:.3g}) at "
              + ", ".join(f"{k}={v}" for k, v in report.best["params"].items()) + f"; wrote {out / 'best_preset.json'}")
    return 0


__all__ = ["add_tune_parser", "cmd_tune"]
