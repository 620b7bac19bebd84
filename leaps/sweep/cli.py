"""``leaps sweep`` and ``leaps summarize``: parsers and commands, for leaps.cli and ``python -m leaps.sweep``.

Each command returns its exit status; bad input prints one ``leaps: error: ...`` line and returns 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from leaps.errors import LeapsError

from .errors import SweepError
from .options import METHODS
from .stimuli import DEFAULT_STIMULI

EXIT_BAD_INPUT = 2

#: (flag, InversionConfig field, type, help): the inversion options a sweep passes through.
_CONFIG_FLAGS = (
    ("--steps", "steps", int, "Adam updates (default 2000)"),
    ("--lr", "lr", float, "learning rate, cosine-decayed (default 0.2)"),
    ("--frames", "frames", int, "frames T of x* (default: the model's)"),
    ("--size", "size", int, "height = width of x* (default: the model's)"),
    ("--distance", "distance", str, "priming distance jvs | l1 | l2 | cos (default jvs)"),
    ("--r", "r", float, "regulariser scale r (default: the model's preset)"),
    ("--lambda-first", "lambda_first", float, "priming weight of the first layer (default: preset)"),
    ("--lambda-last", "lambda_last", float, "priming weight of the last layer (default: preset)"),
    ("--margin", "margin", float, "coherence margin delta (default 1)"),
    ("--priming-fraction", "priming_fraction", float, "prime the first fraction of layers (default 1)"),
    ("--prior-tv", "prior_tv", float, "add W * TV(x*) to the LEAPS loss (default 0: off)"),
    ("--init-scale", "init_scale", float, "x* ~ N(0, s^2) at the start (default 1)"),
    ("--jitter", "jitter", int, "max random roll in pixels (default: 13%% of --size)"),
    ("--backend", "backend", str, "loss kernels auto | reference | triton | cuda (default auto)"),
    ("--amp", "amp", str, "autocast fp32 | bf16 | fp16"),
)
_SWITCHES = (
    ("--fast", "fast", True, "on a GPU: fused losses + CUDA graph + bf16 + deferred loss reads"),
    ("--compile", "compile", True, "torch.compile the objective"),
    ("--no-flip", "flip", False, "no random horizontal flips"),
    ("--no-ce", "use_ce", False, "ablation: drop the cross-entropy term"),
    ("--no-priming", "use_priming", False, "ablation: drop priming (no stimulus needed)"),
    ("--no-coherence", "use_coherence", False, "ablation: drop R_coh"),
    ("--no-feat", "use_feat", False, "ablation: drop R_feat"),
)


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected i/n (e.g. 0/4), got {text!r}") from None
    return i, n


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    w = p.add_argument_group("what to invert")
    w.add_argument("--model", action="append", required=True, help="model to invert (repeat for several)")
    w.add_argument("--weights", action="append", type=_key_value, default=[], metavar="MODEL=PATH",
                   help="checkpoint of a model (repeat); toy models use the weights shipped with leaps")
    w.add_argument("--pretrained", action="store_true", help="download the published weights of non-toy models")
    w.add_argument("--verifier", default="auto",
                   help="verifier for R_feat and verifier top-1; 'none' to drop (default: toy_x3d for toy models, "
                        "none otherwise)")
    w.add_argument("--verifier-weights", help="checkpoint of the verifier")
    w.add_argument("--stimuli", default=DEFAULT_STIMULI,
                   help=f"ROOT/<class>/<video> folder, a .csv/.jsonl of path,label rows, or toy:SPLIT:N "
                        f"(default {DEFAULT_STIMULI})")
    w.add_argument("--method", action="append", choices=METHODS, help="leaps (default), deepdream, am; repeat to "
                   "compare side by side")
    w.add_argument("--runs-per-class", type=int, default=1, help="baselines: videos per class and seed (default 1)")
    w.add_argument("--classes", action="append", help="baselines: only this class (repeat; default: all classes)")
    w.add_argument("--seeds", "--seed", type=int, nargs="+", default=[0], help="seeds; each makes its own videos "
                   "(default 0)")
    w.add_argument("--batch", type=int, default=8, help="videos optimised together (default 8)")
    add_config_flags(p.add_argument_group("inversion options (InversionConfig; defaults: the paper's / the model's)"))
    r = p.add_argument_group("running")
    r.add_argument("--out", required=True, help="sweep folder: videos, records, manifests, logs, summary")
    r.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK if CUDA, else cpu), cpu, cuda:N")
    r.add_argument("--shard", type=_shard, help="run only shard i of n (e.g. a SLURM array task), i/n")
    r.add_argument("--retry-failed", action="store_true", help="run failed jobs again")
    r.add_argument("--dry-run", action="store_true", help="print jobs, shards and estimated device hours; run nothing")
    r.add_argument("--fps", type=float, default=8, help="frame rate of the written mp4 (default 8)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")


def add_sweep_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("sweep", help="invert a stimulus set with several models/methods (resumable, sharded)",
                              description="Invert every stimulus of a set (or every class, for the baselines) with "
                              "each model and method; resumable; shards over torchrun ranks or --shard i/n.")
    add_sweep_arguments(p)
    return p


def add_summarize_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("summarize", help="recompute a sweep's tables from its manifests")
    p.add_argument("dir", help="sweep folder (the --out of leaps sweep)")
    p.add_argument("--quiet", action="store_true", help="write the files only")
    return p


def add_config_flags(group) -> None:
    """The InversionConfig flags shared by ``leaps sweep`` and ``leaps tune`` (read back by config_from_args)."""
    for flag, dest, typ, text in _CONFIG_FLAGS:
        group.add_argument(flag, dest=f"cfg_{dest}", type=typ, help=text)
    for flag, dest, value, text in _SWITCHES:
        group.add_argument(flag, dest=f"cfg_{dest}", action="store_const", const=value, help=text)
    group.add_argument("--option", action="append", type=_key_value, default=[], metavar="FIELD=VALUE",
                       help="any other InversionConfig field (VALUE as JSON, else a string); repeatable")


def config_from_args(args) -> dict:
    """The InversionConfig fields given on the command line (flags of :func:`add_config_flags`)."""
    config = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    config.update({k: _json_or_text(v) for k, v in args.option})
    return config


def _json_or_text(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def options_from_args(args):
    from .options import SweepOptions

    config = config_from_args(args)
    weights = dict(args.weights)
    return SweepOptions(models=args.model, out=args.out, stimuli=args.stimuli, verifier=args.verifier,
                        methods=args.method or ["leaps"], runs_per_class=args.runs_per_class, classes=args.classes,
                        seeds=args.seeds, batch=args.batch, config=config, weights=weights,
                        pretrained=args.pretrained, verifier_weights=args.verifier_weights, device=args.device,
                        shard=args.shard, retry_failed=args.retry_failed, dry_run=args.dry_run,
                        progress=not args.quiet, fps=args.fps)


def _guarded(command):
    def wrapped(args) -> int:
        try:
            return command(args)
        except LeapsError as err:
            print(f"leaps: error: {' '.join(str(err).split())}", file=sys.stderr)
            return EXIT_BAD_INPUT
    wrapped.__name__ = command.__name__
    wrapped.__doc__ = command.__doc__
    return wrapped


@_guarded
def cmd_sweep(args) -> int:
    """``leaps sweep``: run (or with --dry-run describe) a sweep; print Table 1 at the end."""
    from .api import run_sweep
    from .summary import to_markdown

    report = run_sweep(options_from_args(args))
    if report.dry_run is not None:
        print(report.dry_run)
        return 0
    done = sum(c["ok"] for c in report.per_worker)
    failed = sum(c["failed"] for c in report.per_worker)
    skipped = sum(c["skipped"] for c in report.per_worker)
    if report.summary is not None:
        print(f"this run: {done} videos, {failed} failed, {skipped} finished before")
        print(to_markdown(report.summary), end="")
        print(f"wrote {Path(args.out) / 'summary.md'}, summary.json, summary.csv")
    return 0


@_guarded
def cmd_summarize(args) -> int:
    """``leaps summarize DIR``: recompute summary.md/json/csv from DIR's manifests."""
    from .summary import to_markdown, write_summary

    summary = write_summary(Path(args.dir))
    if not args.quiet:
        print(to_markdown(summary), end="")
    return 0


__all__ = ["add_summarize_parser", "add_sweep_parser", "cmd_summarize", "cmd_sweep", "SweepError"]
