"""Does the fast engine cost synthesis quality? The demo's inversion under each precision mode.

    python -m benchmarks.demo_precision [--modes fp32 graph fast graph+fp16] [--seeds 0 1 2]
                                       [--steps 200] [--device auto] [--json out.json]

For every seed and mode, the inversion of ``leaps demo`` (the robust toy R3D, toy X3D verifier,
``DEMO_PRESET``, one video of each of the 10 toy classes in one batch) is run and scored: top-1
of the inverted model, of the verifier and of ``toy_r2plus1d``, which takes no part in the
optimisation (an independent judge), mean consecutive-frame SSIM, and wall seconds. Modes:

* ``fp32``: the eager loop in full precision (the reference);
* ``bf16``: eager with bf16 autocast;
* ``graph``: CUDA graph in fp32 (``cuda_graph=True``);
* ``fast``: ``fast=True``, i.e. on CUDA fused losses + CUDA graph + bf16 autocast;
* ``graph+fp16``: CUDA graph with fp16 autocast and loss scaling.

The graph modes need CUDA; on a CPU they are skipped with a note. Quality numbers are from the
toy world, not from Kinetics models.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.environment import environment
from leaps.demo import DEMO_MODEL, DEMO_VERIFIER, at_demo_size, demo_batch, demo_config
from leaps.inversion import Network, invert
from leaps.metrics import frame_ssim
from leaps.models import build_model, get_spec

JUDGE = "toy_r2plus1d"
MODES = {
    "fp32": dict(),
    "bf16": dict(amp="bf16"),
    "graph": dict(cuda_graph=True),
    "fast": dict(fast=True),
    "graph+fp16": dict(cuda_graph=True, amp="fp16"),
}
NEEDS_CUDA = {"graph", "fast", "graph+fp16"}


@torch.no_grad()
def judge_top1(judge: Network, videos: torch.Tensor, targets: list[int]) -> float:
    """Top-1 of ``judge`` on videos in [0, 1] (N x 3 x T x H x W), normalised as it expects."""
    pred = judge.module((videos - judge.mean) / judge.std).argmax(1).cpu()
    return (pred == torch.tensor(targets)).float().mean().item()


def run_one(mode: str, seed: int, steps: int, device: torch.device, nets: dict, labels, stimuli) -> dict:
    config = demo_config(steps, progress=False, seed=seed).replace(**MODES[mode])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = at_demo_size(invert(nets["model"], labels, stimuli, nets["verifier"], config))
    seconds = time.perf_counter() - start
    video = result.video.float()
    return {
        "mode": mode, "seed": seed, "steps": steps, "seconds": round(seconds, 2),
        "top1_model": result.top1("model"), "top1_verifier": result.top1("verifier"),
        "top1_judge": judge_top1(nets["judge"], video.to(device), list(result.targets)),
        "frame_ssim": statistics.fmean(float(frame_ssim(v.cpu()).mean()) for v in video),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)

    with tempfile.TemporaryDirectory() as tmp:  # the stimuli mp4s; read back as the demo does
        labels, stimuli = demo_batch(Path(tmp))
    nets = {k: build_model(name, pretrained=True).to(device)
            for k, name in (("model", DEMO_MODEL), ("verifier", DEMO_VERIFIER), ("judge", JUDGE))}
    nets["judge"] = Network.wrap(nets["judge"], get_spec(JUDGE), None)
    print(f"demo inversion ({DEMO_MODEL}, verifier {DEMO_VERIFIER}, judge {JUDGE}), {args.steps} steps, "
          f"10 videos a run, on {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"{'mode':<12}{'seed':>5}{'top-1 m':>9}{'top-1 v':>9}{'judge':>7}{'SSIM':>7}{'seconds':>9}")
    rows = []
    for mode in args.modes:
        if mode in NEEDS_CUDA and device.type != "cuda":
            print(f"{mode:<12} skipped: needs CUDA")
            continue
        for seed in args.seeds:
            row = run_one(mode, seed, args.steps, device, nets, labels, stimuli)
            rows.append(row)
            print(f"{mode:<12}{seed:>5}{100 * row['top1_model']:>8.0f}%{100 * row['top1_verifier']:>8.0f}%"
                  f"{100 * row['top1_judge']:>6.0f}%{row['frame_ssim']:>7.3f}{row['seconds']:>9.1f}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"environment": environment(device), "device": str(device), "torch": torch.__version__, "rows": rows}
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
