"""The ``leaps`` command line: ``leaps invert``, ``leaps models``, ``leaps demo``.

Bad input ends with one ``leaps: error: ...`` line and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
import types
import typing
from pathlib import Path

from .errors import LeapsError, NonFiniteLossError, OutputError

if typing.TYPE_CHECKING:
    from .config import CliOption

EXIT_BAD_INPUT = 2


# --------------------------------------------------------------------------------------------
# argument parsing
# --------------------------------------------------------------------------------------------

#: Titles of the argument groups that InversionConfig's fields name (leaps.config.OBJECTIVE, ...).
GROUP_TITLES = {
    "objective": "objective, eq. (4) (defaults: the model's Table S1 preset)",
    "optimisation": "optimisation (defaults: Section 4.1 of the paper)",
    "engine": "engine (speed; results match the plain eager loop up to rounding, or AMP's precision)",
}


def config_options() -> list[tuple[dataclasses.Field, CliOption]]:
    """``(field, its CliOption)`` for every InversionConfig field that has a flag, in field order."""
    from .config import InversionConfig

    return [(f, f.metadata["cli"]) for f in dataclasses.fields(InversionConfig) if f.metadata.get("cli") is not None]


def option_flag(f: dataclasses.Field, opt) -> str:
    """The flag of a config field: declared, or ``--name`` (``--no-name`` for a bool that defaults to True)."""
    if opt.flag:
        return opt.flag
    name = f.name.replace("_", "-")
    return f"--no-{name}" if f.default is True else f"--{name}"


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return " ".join(_shown(v) for v in value)
    return str(value)


def _argparse_kwargs(f: dataclasses.Field, opt, annotation) -> dict:
    """add_argument keywords for one config field, derived from its type, default and CliOption."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    kinds = [t for t in typing.get_args(annotation) if t is not type(None)] if union else [annotation]
    # no default in the namespace: a flag that is absent is not set, so a flag equal to its default still counts
    # as given (it beats --preset); the help shows the field's default
    kwargs = {"dest": f.name, "default": argparse.SUPPRESS, "help": opt.help.replace("%", "%%")}
    if bool in kinds:  # a switch: --x turns a False default on, --no-x a True default off
        kwargs["action"] = "store_false" if f.default is True else "store_true"
        return kwargs
    shown = opt.default_text or (None if f.default is None else _shown(f.default))
    if shown:
        kwargs["help"] += f" (default {shown})".replace("%", "%%")
    kind = kinds[0]
    if typing.get_origin(kind) is tuple:  # (T, S), (b1, b2): nargs = its length, the elements' type
        elements = typing.get_args(kind)
        # tuple[str, ...]: one or more values
        kwargs.update(nargs="+" if elements[-1] is Ellipsis else len(elements), type=elements[0])
    else:
        kwargs["type"] = kind
    if opt.choices:
        kwargs["choices"] = opt.choices
    if opt.metavar:
        kwargs["metavar"] = opt.metavar
    return kwargs


def _add_config_args(p: argparse.ArgumentParser) -> dict[str, argparse._ArgumentGroup]:
    """One flag per InversionConfig field, in the groups its metadata names; returns the groups."""
    from .config import InversionConfig

    hints = typing.get_type_hints(InversionConfig)
    groups = {name: p.add_argument_group(title) for name, title in GROUP_TITLES.items()}
    # group by group, so that the usage line lists the flags in the order of the help
    for f, opt in sorted(config_options(), key=lambda item: list(GROUP_TITLES).index(item[1].group)):
        groups[opt.group].add_argument(option_flag(f, opt), **_argparse_kwargs(f, opt, hints[f.name]))
    return groups


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose every complaint is one ``leaps: error: ...`` line and exit status 2."""

    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


class UsageError(LeapsError):
    """A flag is missing or has a value argparse cannot read."""


_PRETRAINED_HELP = "published weights (downloaded; the toy models' ship with leaps)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="leaps", description="Space-time model inversion (LEAPS, ICCV 2023).")
    sub = parser.add_subparsers(dest="command", required=True)  # subparsers are _Parser too

    inv = sub.add_parser("invert", help="synthesise videos of a class from a video model")
    inv.add_argument("--model", required=True, help="registered model name (see `leaps models`)")
    src = inv.add_mutually_exclusive_group()
    src.add_argument("--weights", help="local checkpoint of the model (.pyth, .pth, state_dict)")
    src.add_argument("--pretrained", action="store_true", help=_PRETRAINED_HELP)
    src.add_argument("--random-weights", action="store_true",
                     help="invert the randomly initialised network (for tests; without a weights flag the toy "
                          "models load their shipped weights, other models stop with an error)")
    inv.add_argument("--num-classes", type=int, default=400, help="classes of the checkpoint (default 400)")
    inv.add_argument("--target", required=True, action="append", help="class name or index; repeat for a batch")
    inv.add_argument("--stimulus", action="append", help="stimulus video of the target; repeat: one per --target, "
                     "or several for one target (multi-stimuli priming)")
    inv.add_argument("--verifier", help="verifier model name for R_feat (e.g. x3d_s); omit to drop R_feat")
    vsrc = inv.add_mutually_exclusive_group()
    vsrc.add_argument("--verifier-weights", help="local checkpoint of the verifier")
    vsrc.add_argument("--verifier-pretrained", action="store_true", help="the verifier's " + _PRETRAINED_HELP)
    vsrc.add_argument("--verifier-random-weights", action="store_true", help="a randomly initialised verifier")
    inv.add_argument("--trust-weights", action="store_true",
                     help="let --weights / --verifier-weights unpickle more than tensors: this can run code from "
                          "the file, only use it for checkpoints from sources you trust")
    inv.add_argument("--out", required=True, help="output directory")
    groups = _add_config_args(inv)
    # run options that are not InversionConfig fields
    groups["optimisation"].add_argument("--batch", type=int, default=1,
                                        help="videos per target, optimised together (default 1)")
    groups["optimisation"].add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")

    sub.add_parser("models", help="list the registered models, their input geometry and presets")

    demo = sub.add_parser("demo", help="invert the shipped toy-world model on CPU (about a minute, no downloads)")
    demo.add_argument("--out", default="leaps-out/demo", help="output directory (default leaps-out/demo)")
    demo.add_argument("--steps", type=int, default=200, help="Adam updates (default 200)")
    demo.add_argument("--target", default="ring growing", help="toy class to synthesise (default 'ring growing')")
    demo.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    demo.add_argument("--seed", type=int, default=0, help="seed of x*'s noise and augmentation (default 0)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")

    from .sweep.cli import add_summarize_parser, add_sweep_parser

    add_sweep_parser(sub)
    add_summarize_parser(sub)

    from .report.cli import add_report_parser
    from .tune.cli import add_tune_parser

    add_report_parser(sub)
    add_tune_parser(sub)
    return parser


# --------------------------------------------------------------------------------------------
# checks before anything is built or written
# --------------------------------------------------------------------------------------------

def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise LeapsError(f"unknown device {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LeapsError("--device cuda asked for, but no CUDA GPU is available")
    return device


def _config_from_args(args):
    """The InversionConfig of the flags given (each field's flag stores into the field's name; absent
    flags leave no attribute). With --preset the file fills the fields whose flags were not given."""
    from .config import InversionConfig

    given = {f.name: getattr(args, f.name) for f, _ in config_options() if hasattr(args, f.name)}
    return InversionConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}).validate()


@dataclasses.dataclass
class _WeightsChoice:
    """How one network gets its weights: build_model's keywords, and a warning to print for random ones."""

    weights: str | None
    pretrained: bool
    warning: str | None = None


def _weights_choice(spec, weights, pretrained: bool, random_weights: bool, prefix: str = "") -> _WeightsChoice:
    """Random weights only when asked for: a random network's inversion shows nothing learned.

    Without a weights flag, models whose weights ship with leaps (the toy models) load them;
    any other model is an error naming the three flags.
    """
    if weights is not None or pretrained:
        return _WeightsChoice(weights, pretrained)
    if random_weights:
        role = "verifier " if prefix else ""
        return _WeightsChoice(None, False, f"{role}{spec.name} has random weights (--{prefix}random-weights): "
                                            "the result shows an untrained network, not what a model learned")
    if spec.ships_weights:
        return _WeightsChoice(None, True)
    role = "the verifier " if prefix else ""
    raise LeapsError(f"no weights given for {role}{spec.name}: pass --{prefix}weights PATH, --{prefix}pretrained "
                     f"or --{prefix}random-weights")


def _check_output_dir(out: Path) -> None:
    """Create ``out`` and write and remove a probe file, so a bad --out fails before minutes of work."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".leaps-probe-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write to --out {out}: {exc.strerror or exc}") from exc


def _warn(message: str) -> None:
    print(f"leaps: warning: {message}", file=sys.stderr)


def _stimuli_for(args, config, n_targets: int):
    """Read every stimulus first, so a bad file fails before any model is built."""
    from .video import read_video

    if config.objective != "leaps" or not config.use_priming:
        return None
    if not args.stimulus:
        raise LeapsError("--stimulus VIDEO is required for LEAPS priming (or pass --no-priming)")
    videos = [read_video(path, config.frames, config.size) for path in args.stimulus]
    if n_targets == 1:
        return videos if len(videos) > 1 else videos[0]
    if len(videos) == 1:
        return videos[0]
    if len(videos) != n_targets:
        raise LeapsError(f"got {len(videos)} --stimulus for {n_targets} --target: give one per target or one for all")
    return videos


def cmd_invert(args) -> int:
    from . import inversion
    from .models import build_model, get_spec

    # every option first: nothing is built or written before they are all valid
    config = _config_from_args(args)
    if args.batch < 1:
        raise LeapsError(f"--batch must be at least 1, got {args.batch}")
    spec = get_spec(args.model)
    model_source = _weights_choice(spec, args.weights, args.pretrained, args.random_weights)
    verifier_spec = verifier_source = None
    if args.verifier:
        verifier_spec = get_spec(args.verifier)
        verifier_source = _weights_choice(verifier_spec, args.verifier_weights, args.verifier_pretrained,
                                          args.verifier_random_weights, prefix="verifier-")
    elif args.verifier_weights or args.verifier_pretrained or args.verifier_random_weights:
        raise LeapsError("--verifier-weights / --verifier-pretrained / --verifier-random-weights need --verifier NAME")
    device = _device(args.device)
    targets = [t for t in args.target for _ in range(args.batch)]
    stimuli = _stimuli_for(args, config, len(args.target))
    if isinstance(stimuli, list) and len(args.target) > 1:
        stimuli = [s for s in stimuli for _ in range(args.batch)]
    out = Path(args.out)
    _check_output_dir(out)  # before minutes of building and optimising

    def build(spec, source):
        if source.warning:
            _warn(source.warning)
        return build_model(spec, weights=source.weights, pretrained=source.pretrained, num_classes=args.num_classes,
                           trust_weights=args.trust_weights).to(device)

    model = build(spec, model_source)
    verifier = build(verifier_spec, verifier_source) if verifier_spec is not None else None
    return _run(lambda: inversion.invert(model, targets, stimuli, verifier, config, spec=spec,
                                         verifier_spec=verifier_spec), out, _stimulus_paths(args, len(targets)))


def _stimulus_paths(args, videos: int) -> list | None:
    """The stimulus file of each synthesised video, for the report (None with multi-stimuli priming)."""
    given = args.stimulus or []
    if len(given) == 1:
        return given * videos
    if given and len(given) == len(args.target):
        return [s for s in given for _ in range(args.batch)]
    return None


def _save(save_to, out: Path) -> tuple[dict, str | None]:
    """``(save_to(out), None)``; if writing to ``out`` fails, save to a fresh temp dir instead and return
    ``(its paths, a message saying where the result went)``: minutes of optimisation are never dropped."""
    from .errors import VideoError

    try:
        return save_to(out), None
    except (VideoError, OSError) as exc:
        rescue = Path(tempfile.mkdtemp(prefix="leaps-rescue-"))
        return save_to(rescue), f"cannot save to {out} ({exc}); saved the result to {rescue} instead"


def _run(invert_fn, out: Path, stimuli: list | None = None) -> int:
    """Run an inversion, save its outputs and print a summary; keep the last finite video on NaN."""
    from .video import save_outputs

    start = time.perf_counter()
    try:
        result = invert_fn()
    except NonFiniteLossError as err:
        last_finite = err.last_finite
        if last_finite is not None:
            paths, problem = _save(lambda where: save_outputs(last_finite, where, stem="last_finite"), out)
            print(f"kept the last finite video: {paths['mp4']}", file=sys.stderr)
            if problem:
                _warn(problem)
        raise
    seconds = time.perf_counter() - start
    steps = len(result.history["loss"])
    print(f"{steps} steps in {seconds:.1f} s ({seconds / steps:.3f} s/step); "
          f"final loss {result.history['loss'][-1]:.4f}")
    print(f"top-1 of the inverted model: {100 * result.top1('model'):.1f}%")
    if result.verifier_probs is not None:
        print(f"top-1 of the verifier:       {100 * result.top1('verifier'):.1f}%")
    if stimuli is not None and result.stimuli is None:
        result.stimuli = stimuli
    paths, problem = _save(result.save, out)
    for key in ("mp4", "gif", "png", "history"):
        if key in paths:
            print(f"wrote {paths[key]}")
    if problem:
        raise OutputError(problem)
    _write_report(out)
    return 0


def _write_report(out: Path) -> None:
    """The run's report.html; a report that cannot be made is a warning, never a lost run."""
    from .report import write_report

    try:
        print(f"wrote {write_report(out)}")
    except Exception as exc:  # noqa: BLE001 - the videos are saved; the page is a convenience
        _warn(f"no report.html: {type(exc).__name__}: {exc}")


def cmd_models(_args) -> int:
    from .models import list_models

    rows = [("name", "model", "source", "kind", "input T x S^2", "fixed", "lambda_1", "lambda_L", "r")]
    for s in list_models():
        rows.append((s.name, s.title, s.source, s.kind, f"{s.frames} x {s.size}^2", "yes" if s.fixed_size else "no",
                     f"{s.preset.lambda_first:g}", f"{s.preset.lambda_last:g}", f"{s.preset.r:g}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def cmd_demo(args) -> int:
    from .classes import resolve_target
    from .demo import demo_config, run_demo
    from .toy.data import TOY_CLASSES

    # run_demo writes its stimuli first: every option is checked before it is called
    demo_config(args.steps, progress=not args.quiet, seed=args.seed).validate()
    resolve_target(args.target, class_names=TOY_CLASSES)
    device = _device(args.device)
    out = Path(args.out)
    _check_output_dir(out)
    return run_demo(out, steps=args.steps, device=device, progress=not args.quiet, run=_run,
                    target=args.target, seed=args.seed)


def cmd_sweep(args) -> int:
    from .sweep.cli import cmd_sweep as sweep

    return sweep(args)


def cmd_summarize(args) -> int:
    from .sweep.cli import cmd_summarize as summarize

    return summarize(args)


def cmd_report(args) -> int:
    from .report.cli import cmd_report as report

    return report(args)


def cmd_tune(args) -> int:
    from .tune.cli import cmd_tune as tune

    return tune(args)


COMMANDS = {"invert": cmd_invert, "models": cmd_models, "demo": cmd_demo, "sweep": cmd_sweep,
            "summarize": cmd_summarize, "report": cmd_report, "tune": cmd_tune}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except LeapsError as err:
        # one line, whatever the message holds (an encoder's or a checkpoint's multi-line text)
        print("leaps: error: " + " ".join(str(err).split()), file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("leaps: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
