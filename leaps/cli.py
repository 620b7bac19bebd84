"""The ``leaps`` command line: ``leaps invert``, ``leaps models``, ``leaps demo``.

Bad input ends with one ``leaps: error: ...`` line and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .errors import LeapsError, NonFiniteLossError

EXIT_BAD_INPUT = 2


# --------------------------------------------------------------------------------------------
# argument parsing
# --------------------------------------------------------------------------------------------

def _add_optimisation_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("optimisation (defaults: Section 4.1 of the paper)")
    g.add_argument("--steps", type=int, default=2000, help="Adam updates (default 2000)")
    g.add_argument("--lr", type=float, default=0.2, help="learning rate, cosine-decayed (default 0.2)")
    g.add_argument("--frames", type=int, default=8, help="frames T of the synthesised video (default 8)")
    g.add_argument("--size", type=int, default=224, help="height = width of the synthesised video (default 224)")
    g.add_argument("--batch", type=int, default=1, help="videos per target, optimised together (default 1)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    g.add_argument("--model-input", type=int, nargs=2, metavar=("T", "S"), help="override the T x S^2 the model sees")
    g.add_argument("--verifier-input", type=int, nargs=2, metavar=("T", "S"), help="override the T x S^2 the verifier sees")
    g.add_argument("--jitter", type=int, help="max random roll in pixels (default: 13%% of --size)")
    g.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    g.add_argument("--no-clip", action="store_true", help="do not clip x* to the valid pixel range")
    g.add_argument("--snapshot-every", type=int, default=0, help="save a contact sheet every K steps")
    e = p.add_argument_group("engine (speed; results match the plain eager loop up to rounding, or AMP's precision)")
    e.add_argument("--backend", choices=("auto", "reference", "triton", "cuda"), default="auto",
                   help="LEAPS loss kernels: fused cuda/triton on GPU, plain torch on CPU (default auto)")
    e.add_argument("--fast", action="store_true", help="on a GPU: fused losses + CUDA graph + bf16 autocast + deferred loss reads")
    e.add_argument("--amp", choices=("fp32", "bf16", "fp16"), default=None,
                   help="autocast (fp16 with loss scaling); fp32 turns off the bf16 that --fast picks on CUDA")
    e.add_argument("--compile", action="store_true", help="torch.compile the objective")
    e.add_argument("--cuda-graph", action="store_true", help="capture the whole step as a CUDA graph (CUDA only)")
    e.add_argument("--checkpoint", action="store_true", help="activation checkpointing of the networks' stages")
    e.add_argument("--channels-last", action="store_true", help="channels_last_3d networks and x*")
    e.add_argument("--sync-every", type=int, default=0,
                   help="read the losses back (and check for NaN) every K steps (default 1, 25 with --fast/--cuda-graph)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_objective_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("objective, eq. (4) (defaults: the model's Table S1 preset)")
    g.add_argument("--method", choices=("leaps", "deepdream", "am"), default="leaps", help="objective (default leaps)")
    g.add_argument("--distance", choices=("jvs", "l1", "l2", "cos"), default="jvs", help="priming distance (default jvs)")
    g.add_argument("--lambda-first", type=float, help="priming weight of the first layer")
    g.add_argument("--lambda-last", type=float, help="priming weight of the last layer")
    g.add_argument("--r", type=float, help="regulariser scale r")
    g.add_argument("--margin", type=float, default=1.0, help="coherence margin delta (default 1)")
    g.add_argument("--priming-fraction", type=float, default=1.0, help="prime the first fraction of layers (default 1)")
    g.add_argument("--prior-tv", type=float, default=0.0,
                   help="add W * total variation of x* to the LEAPS loss (not in the paper; default 0: off)")
    for term in ("ce", "priming", "coherence", "feat"):
        g.add_argument(f"--no-{term}", action="store_true", help=f"ablation: drop the {term} term")


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
    _add_objective_args(inv)
    _add_optimisation_args(inv)

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
    from .config import InversionConfig

    return InversionConfig(
        objective=args.method,
        frames=args.frames,
        size=args.size,
        model_input=tuple(args.model_input) if args.model_input else None,
        verifier_input=tuple(args.verifier_input) if args.verifier_input else None,
        steps=args.steps,
        lr=args.lr,
        jitter=args.jitter,
        flip=not args.no_flip,
        clip=not args.no_clip,
        lambda_first=args.lambda_first,
        lambda_last=args.lambda_last,
        r=args.r,
        margin=args.margin,
        distance=args.distance,
        priming_fraction=args.priming_fraction,
        prior_tv=args.prior_tv,
        use_ce=not args.no_ce,
        use_priming=not args.no_priming,
        use_coherence=not args.no_coherence,
        use_feat=not args.no_feat,
        seed=args.seed,
        backend=args.backend,
        fast=args.fast,
        amp=args.amp,
        compile=args.compile,
        cuda_graph=args.cuda_graph,
        checkpoint=args.checkpoint,
        channels_last=args.channels_last,
        sync_every=args.sync_every,
        snapshot_every=args.snapshot_every,
        progress=not args.quiet,
    ).validate()


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
