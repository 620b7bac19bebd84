"""Throughput of ``leaps sweep`` on the CPU toy world, and its overhead against bare ``leaps.invert``.

    python benchmarks/sweep.py                 # 32 toy stimuli, 8 x 32^2, 40 steps, batch 4
    python benchmarks/sweep.py --stimuli 40 --steps 50 --workers 1 2 4

Rows (videos/hour = videos / wall seconds x 3600):

* ``bare invert``: the sweep's batches (same targets, stimuli, config and seeds) through
  ``leaps.invert`` in this process, models built once beforehand: the inversion work alone;
* ``sweep API, 1 worker``: ``leaps.sweep.run`` in this process (adds building the models, reading
  stimuli, writing mp4s and records, metrics, fsynced manifests and the summary);
* ``sweep CLI, N workers``: ``python -m leaps.sweep`` (N = 1) or ``torchrun --nproc-per-node N``,
  interpreter start-up included, as a user runs it.

Overhead = wall / bare wall - 1. On a shared 2-core machine expect noise of +-10%.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bare_invert(opts) -> float:
    """Seconds for the plan's batches through leaps.invert (models built before the clock starts)."""
    from leaps.inversion import invert
    from leaps.sweep import build_plan

    plan = build_plan(opts)
    nets = {name: src.build("cpu") for name, src in plan.networks.items()}
    start = None
    for i, batch in enumerate([plan.batches[0], *plan.batches]):  # the first, untimed: warm-up
        if i == 1:
            start = time.perf_counter()
        first = batch.first
        cfg = plan.configs[(first.model, first.method)].replace(seed=batch.inversion_seed)
        stimuli = [j.stimulus.load(cfg.frames, cfg.size) for j in batch.jobs]
        invert(nets[first.model], [j.target for j in batch.jobs], stimuli, nets[first.verifier], cfg)
    return time.perf_counter() - start


def sweep_api(opts) -> float:
    from leaps.sweep import run_sweep

    start = time.perf_counter()
    run_sweep(opts)
    return time.perf_counter() - start


def sweep_cli(args, workers: int, out: Path) -> float:
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(workers)] if workers > 1 else []
    cmd = [sys.executable, *launcher, "-m", "leaps.sweep", "sweep", "--model", args.model, "--stimuli",
           f"toy:test:{args.stimuli}", "--batch", str(args.batch), "--size", str(args.size), "--frames",
           str(args.frames), "--steps", str(args.steps), "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="toy_r3d")
    p.add_argument("--stimuli", type=int, default=32, help="toy test clips (default 32)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads per worker (default 1: on a busy machine more threads mostly wait for each other)")
    args = p.parse_args(argv)

    import torch

    from leaps.sweep import SweepOptions

    torch.set_num_threads(args.threads)
    videos = args.stimuli
    with tempfile.TemporaryDirectory() as tmp:
        def options(name):
            return SweepOptions(models=[args.model], out=str(Path(tmp) / name), stimuli=f"toy:test:{args.stimuli}",
                                batch=args.batch, config={"size": args.size, "frames": args.frames,
                                                          "steps": args.steps}, progress=False, device="cpu")

        rows = [("bare invert", bare_invert(options("bare")))]
        rows.append(("sweep API, 1 worker", sweep_api(options("api"))))
        for w in args.workers:
            rows.append((f"sweep CLI, {w} worker{'s' if w > 1 else ''}", sweep_cli(args, w, Path(tmp) / f"cli{w}")))

    print(f"{args.model} + toy_x3d, {videos} videos, x* {args.frames} x {args.size}^2, {args.steps} steps, "
          f"batch {args.batch}, {args.threads} CPU thread(s) per worker, {os.cpu_count()} cores, "
          f"torch {torch.__version__}")
    print("| row | wall s | videos/h | overhead vs bare |")
    print("|---|---|---|---|")
    bare = rows[0][1]
    for name, wall in rows:
        print(f"| {name} | {wall:.1f} | {videos / wall * 3600:.0f} | {100 * (wall / bare - 1):+.0f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
