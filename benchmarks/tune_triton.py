"""Sweep the Triton kernels' tile sizes on the real layer sets and print the fastest per pass.

The layer sets are those of benchmarks/kernel_latency.py (default: the 53 BatchNorm inputs of 3D R50 at
8 x 224^2 for the means of L_prim, the 83 of X3D-S at 13 x 160^2 for R_feat's moments and their
gradient, R50's last layer for R_coh). Each candidate is timed as device time: the launch is
captured in a CUDA graph and replayed (leaps.timing.graph_time_ms), so host cost does not hide
tile effects at batch 1. "GB/s" counts the bytes each pass must move: forward reads A, the
alpha + beta x backward reads A and writes A.

Only the S-contiguous ("rows") layout is swept: the CNN layer sets have no channels-last layer.
Set the winners in kernels/channel_stats.py (BLOCKS) and kernels/frame_l1.py (BLOCK_F,
BLOCK_F_BWD).

    python -m benchmarks.tune_triton --batch 1 16 --json tune.json      # CUDA only
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
from pathlib import Path

import torch

from benchmarks.environment import environment
from benchmarks.kernel_latency import DTYPES, Problem, derive_layer_set, peak_bandwidth
from leaps.timing import graph_time_ms

#: (rows, positions, warps) candidates of channel_stats.
CHANNEL_TILES = [(r, s, w) for r, s in ((1, 1024), (1, 2048), (2, 512), (2, 1024), (4, 256), (4, 512), (4, 1024),
                                        (8, 128), (8, 256), (8, 512), (16, 128), (16, 256)) for w in (4, 8)]
FRAME_BLOCKS = (128, 256, 512, 1024)


def _time(fn, args, device) -> float:
    return statistics.median(graph_time_ms(fn, args.iters, args.warmup, device))


def _flat(out) -> torch.Tensor:
    parts = out if isinstance(out, (list, tuple)) else [out]
    return torch.cat([t.detach().float().flatten() for t in parts])


def _try_tile(fn, expected: torch.Tensor, args, device, nbytes: int, tile) -> dict:
    """Time one tile after checking that it computes what the shipped tile computes."""
    try:
        got = _flat(fn())
        err = ((got - expected).abs().max() / expected.abs().max().clamp_min(1e-12)).item()
        if not err <= 1e-5:
            return {"tile": list(tile), "error": f"wrong result (max rel err {err:.1e})"}
        ms = _time(fn, args, device)
    except Exception as exc:  # noqa: BLE001 - a tile that does not compile or launch is skipped
        return {"tile": list(tile), "error": f"{type(exc).__name__}: {str(exc)[:100]}"}
    return {"tile": list(tile), "ms": ms, "gbps": nbytes / ms / 1e6}


def sweep(args, batch: int, device: torch.device) -> dict:
    # by module path: leaps.kernels re-exports functions of the same names
    cs = importlib.import_module("leaps.kernels.channel_stats")
    fl = importlib.import_module("leaps.kernels.frame_l1")
    from leaps import losses

    ls = derive_layer_set(args.model, args.verifier, args.frames, args.size, batch)
    p = Problem(ls, device, DTYPES[args.dtype], "jvs", 1.0, 0)
    prim = [x.detach().flatten(2) for x in p.prim]
    feat = [x.detach().flatten(2) for x in p.feat]
    a_prim = sum(x.numel() * x.element_size() for x in prim)
    a_feat = sum(x.numel() * x.element_size() for x in feat)
    rows_feat = sum(x.shape[0] * x.shape[1] for x in feat)
    alpha = torch.randn(rows_feat, device=device)
    beta = torch.randn(rows_feat, device=device)
    frames = losses.frames_view_4d(p.z.detach(), ls.coh_token_grid, ls.coh_channels_last)
    w = torch.randn(batch, frames.shape[1], frames.shape[1], device=device)
    w = w + w.transpose(1, 2)
    a_coh = frames.numel() * frames.element_size()

    passes = {
        "fwd mean (L_prim)": (("fwd", "rows"), lambda: cs.channel_stats(prim, False), a_prim),
        "fwd mean+M2 (R_feat)": (("fwd", "rows"), lambda: cs.channel_stats(feat, True), a_feat),
        "bwd alpha+beta x (R_feat)": (("bwd", "rows"), lambda: cs.channel_stats_backward(feat, alpha, beta),
                                      2 * a_feat),
    }
    saved = dict(cs.BLOCKS)
    out = {"batch": batch, "passes": {}}
    try:
        for name, (key, fn, nbytes) in passes.items():
            expected = _flat(fn())
            results = []
            for tile in CHANNEL_TILES:
                cs.BLOCKS[key] = tile
                results.append(_try_tile(fn, expected, args, device, nbytes, tile))
            cs.BLOCKS.update(saved)
            out["passes"][name] = {"key": list(key), "current": list(saved[key]), "bytes": nbytes, "results": results}
    finally:
        cs.BLOCKS.update(saved)

    saved_f = {"BLOCK_F": fl.BLOCK_F, "BLOCK_F_BWD": fl.BLOCK_F_BWD}
    try:
        for name, attr, fn, nbytes in (
            ("frame_l1 fwd (R_coh)", "BLOCK_F", lambda: fl.frame_l1(frames), a_coh),
            ("frame_l1 bwd (R_coh)", "BLOCK_F_BWD", lambda: fl.frame_l1_backward(frames, w), 2 * a_coh),
        ):
            expected = _flat(fn())
            results = []
            for block in FRAME_BLOCKS:
                setattr(fl, attr, block)
                results.append(_try_tile(fn, expected, args, device, nbytes, [block]))
            setattr(fl, attr, saved_f[attr])
            out["passes"][name] = {"key": [attr], "current": [saved_f[attr]], "bytes": nbytes, "results": results}
    finally:
        for attr, value in saved_f.items():
            setattr(fl, attr, value)
    del p
    torch.cuda.empty_cache()
    return out


def report(result: dict, peak: float | None) -> None:
    print(f"\n== B={result['batch']} ==")
    for name, res in result["passes"].items():
        ok = [r for r in res["results"] if "ms" in r]
        if not ok:
            print(f"{name}: no tile ran ({res['results'][0].get('error')})")
            continue
        best = min(ok, key=lambda r: r["ms"])
        current = next((r for r in ok if list(r["tile"]) == res["current"]), None)
        pk = lambda r: f" ({100 * r['gbps'] / peak:.0f}% peak)" if peak else ""  # noqa: E731
        cur = (f"current {tuple(res['current'])}: {current['ms']:.3f} ms {current['gbps']:.0f} GB/s{pk(current)}; "
               if current else "")
        print(f"{name:28s} {res['bytes'] / 2**20:8.1f} MiB  {cur}best {tuple(best['tile'])}: "
              f"{best['ms']:.3f} ms {best['gbps']:.0f} GB/s{pk(best)}")
        ranked = sorted(ok, key=lambda r: r["ms"])[:4]
        print("    top: " + ", ".join(f"{tuple(r['tile'])} {r['ms']:.3f}" for r in ranked))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="slow_r50")
    p.add_argument("--verifier", default="x3d_s")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    p.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    device = torch.device("cuda")
    if not torch.cuda.is_available():
        print("tune_triton.py needs a CUDA GPU", file=sys.stderr)
        return 2
    name, peak = peak_bandwidth(device)
    print(f"Triton tile sweep on {name}, {args.dtype}; device ms per pass from CUDA-graph replays")
    results = []
    for b in args.batch:
        results.append(sweep(args, b, device))
        report(results[-1], peak)
    if args.json:
        payload = {"environment": environment(device), "device": name, "peak_gbps": peak, "results": results}
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
