"""The ``leaps`` command line: ``leaps invert``, ``leaps models``, ``leaps demo``.

Bad input ends with one ``leaps: error: ...`` line and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import types
import typing
from pathlib import Path

from .errors import LeapsError, NonFiniteLossError

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


def config_options() -> list[tuple[dataclasses.Field, "CliOption"]]:
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
    kwargs = {"dest": f.name, "default": f.default, "help": opt.help.replace("%", "%%")}
    if bool in kinds:  # a switch: --x turns a False default on, --no-x a True default off
        kwargs["action"] = "store_false" if f.default is True else "store_true"
        return kwargs
    shown = opt.default_text or (None if f.default is None else _shown(f.default))
    if shown:
        kwargs["help"] += f" (default {shown})".replace("%", "%%")
    kind = kinds[0]
    if typing.get_origin(kind) is tuple:  # (T, S), (b1, b2): nargs = its length, the elements' type
        elements = typing.get_args(kind)
        kwargs.update(nargs=len(elements), type=elements[0])
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leaps", description="Space-time model inversion (LEAPS, ICCV 2023).")
    sub = parser.add_subparsers(dest="command", required=True)

    inv = sub.add_parser("invert", help="synthesise videos of a class from a video model")
    inv.add_argument("--model", required=True, help="registered model name (see `leaps models`)")
    src = inv.add_mutually_exclusive_group()
    src.add_argument("--weights", help="local checkpoint of the model (.pyth, .pth, state_dict)")
    src.add_argument("--pretrained", action="store_true", help="download the published weights (needs network)")
    inv.add_argument("--num-classes", type=int, default=400, help="classes of the checkpoint (default 400)")
    inv.add_argument("--target", required=True, action="append", help="class name or index; repeat for a batch")
    inv.add_argument("--stimulus", action="append", help="stimulus video of the target; repeat: one per --target, "
                     "or several for one target (multi-stimuli priming)")
    inv.add_argument("--verifier", help="verifier model name for R_feat (e.g. x3d_s); omit to drop R_feat")
    vsrc = inv.add_mutually_exclusive_group()
    vsrc.add_argument("--verifier-weights", help="local checkpoint of the verifier")
    vsrc.add_argument("--verifier-pretrained", action="store_true", help="download the verifier's weights")
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
    return parser


# --------------------------------------------------------------------------------------------
# commands
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
    """The InversionConfig of the parsed flags (each field's flag stores into the field's name)."""
    from .config import InversionConfig

    values = {f.name: getattr(args, f.name) for f, _ in config_options()}
    return InversionConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}).validate()


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

    config = _config_from_args(args)
    spec = get_spec(args.model)
    verifier_spec = get_spec(args.verifier) if args.verifier else None
    targets = [t for t in args.target for _ in range(args.batch)]
    stimuli = _stimuli_for(args, config, len(args.target))
    if isinstance(stimuli, list) and len(args.target) > 1:
        stimuli = [s for s in stimuli for _ in range(args.batch)]
    device = _device(args.device)

    model = build_model(spec, weights=args.weights, pretrained=args.pretrained, num_classes=args.num_classes).to(device)
    verifier = None
    if verifier_spec is not None:
        verifier = build_model(verifier_spec, weights=args.verifier_weights, pretrained=args.verifier_pretrained,
                               num_classes=args.num_classes).to(device)
    return _run(lambda: inversion.invert(model, targets, stimuli, verifier, config, spec=spec, verifier_spec=verifier_spec),
                Path(args.out))


def _run(invert_fn, out: Path) -> int:
    """Run an inversion, save its outputs and print a summary; keep the last finite video on NaN."""
    from .video import save_outputs

    start = time.perf_counter()
    try:
        result = invert_fn()
    except NonFiniteLossError as err:
        if err.last_finite is not None:
            paths = save_outputs(err.last_finite, out, stem="last_finite")
            print(f"kept the last finite video: {paths['mp4']}", file=sys.stderr)
        raise
    seconds = time.perf_counter() - start
    paths = result.save(out)
    steps = len(result.history["loss"])
    print(f"{steps} steps in {seconds:.1f} s ({seconds / steps:.3f} s/step); final loss {result.history['loss'][-1]:.4f}")
    print(f"top-1 of the inverted model: {100 * result.top1('model'):.1f}%")
    if result.verifier_probs is not None:
        print(f"top-1 of the verifier:       {100 * result.top1('verifier'):.1f}%")
    for key in ("mp4", "gif", "png", "history"):
        if key in paths:
            print(f"wrote {paths[key]}")
    return 0


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
    from .demo import run_demo

    return run_demo(Path(args.out), steps=args.steps, device=_device(args.device), progress=not args.quiet, run=_run,
                    target=args.target, seed=args.seed)


COMMANDS = {"invert": cmd_invert, "models": cmd_models, "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except LeapsError as err:
        print(f"leaps: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("leaps: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
