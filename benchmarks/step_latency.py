"""Per-step latency of an inversion: leaps (reference losses) vs the bare networks.

    python benchmarks/step_latency.py --model slow_r50 --verifier x3d_s --frames 8 --size 224 --batch 16

"bare" is the inverted model + verifier forward/backward with cross-entropy only and an Adam
step on x*: the floor any LEAPS step is compared with. "leaps" is one full eq. (4) step of
:class:`leaps.inversion.Inverter` (augmentation, taps, the three terms, backward, Adam, clip).
Models are randomly initialised (timing does not depend on the weights). Prints milliseconds
(median and 90th percentile) and, on CUDA, peak memory.
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from leaps.timing import time_ms as _time
from leaps.inversion import prepare
from leaps.models import build_model


def bare_step_fn(model, verifier, x, target, geometry_model, geometry_verifier):
    opt = torch.optim.Adam([x], lr=0.2)

    def step():
        opt.zero_grad(set_to_none=True)
        xm = F.interpolate(x, size=geometry_model, mode="trilinear") if geometry_model else x
        loss = F.cross_entropy(model(xm), target)
        if verifier is not None:
            xv = F.interpolate(x, size=geometry_verifier, mode="trilinear") if geometry_verifier else x
            loss = loss + F.cross_entropy(verifier(xv), target)
        loss.backward()
        opt.step()

    return step


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="slow_r50")
    p.add_argument("--verifier", default="x3d_s", help="'none' for no verifier")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    model = build_model(args.model).to(device)
    verifier = build_model(args.verifier).to(device) if args.verifier != "none" else None
    targets = [0] * args.batch
    stimulus = torch.rand(3, args.frames, args.size, args.size)
    inverter = prepare(model, targets, stimulus, verifier, steps=args.warmup + args.iters, frames=args.frames,
                       size=args.size, progress=False)

    geometry_model = inverter.net.geometry
    geometry_verifier = inverter.ver.geometry if inverter.ver is not None else None
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size, device=device, requires_grad=True)
    target = torch.zeros(args.batch, dtype=torch.long, device=device)

    rows = []
    with torch.no_grad():
        def forward():
            model(inverter.net.fit(x))
            if verifier is not None:
                verifier(inverter.ver.fit(x))
        rows.append(("forward (no grad)", _time(forward, args.iters, args.warmup, device)))
    rows.append(("bare step (CE only)", _time(bare_step_fn(model, verifier, x, target, geometry_model, geometry_verifier),
                                            args.iters, args.warmup, device)))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with inverter:
        rows.append(("leaps step (reference)", _time(inverter.step, args.iters, args.warmup, device)))
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None

    print(f"{args.model} + verifier {args.verifier}, x* {args.batch} x 3 x {args.frames} x {args.size}^2 on {device}")
    print(f"{'what':26s} {'median ms':>10s} {'p90 ms':>10s}")
    for name, times in rows:
        q = statistics.quantiles(times, n=10)[-1] if len(times) > 1 else times[0]
        print(f"{name:26s} {statistics.median(times):10.1f} {q:10.1f}")
    if peak is not None:
        print(f"peak memory of the leaps step: {peak:.2f} GiB")


if __name__ == "__main__":
    main()
