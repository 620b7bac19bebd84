"""Fused LEAPS loss kernels: reference vs triton vs cuda, forward+backward time and achieved GB/s.

    # on a GPU: 3D R50 (L_prim, R_coh) + X3D-S (R_feat) at x* = 8 x 224^2, B = 1 and B = 16
    python -m benchmarks.kernel_latency --frames 8 --size 224 --batch 1 16 --json kernels.json
    python -m benchmarks.kernel_latency --batch 16 --dtype bf16          # half-precision activations
    python -m benchmarks.kernel_latency --batch 16 --terms all --backends cuda   # one row pair only
    # CPU smoke run (reference + the C++ CPU kernels; Triton only under TRITON_INTERPRET=1)
    python -m benchmarks.kernel_latency --frames 4 --size 32 --batch 1 --iters 1 --warmup 0 --device cpu

Layer sets. The activations are those an inversion feeds the three activation-reading terms of
eq. (4): every normalisation-layer input of the inverted model (``FeatureTaps``) for L_prim, the
last of them for R_coh, and every BatchNorm input of the verifier (``BatchNormTaps``) for R_feat.
Their shapes, strides, channel axes and layer types are found by running each network once on
PyTorch's ``meta`` device (no memory, no arithmetic) at the geometry it sees in an inversion
(``leaps.inversion.Network``): the model gets x* (``--frames`` x ``--size``^2) unless it is a
fixed-size model, a fixed-size verifier gets its native input (X3D-S: 13 x 160^2; override with
``--verifier-input T S``). Random activations of those shapes (``--dtype``) are then allocated
on ``--device``, with random stimulus means, BatchNorm running statistics, the model's Table S1
priming weights and r, and the default margin.

What is timed. For each backend (the plain-torch ``reference`` always; ``triton`` when it runs on
the device -- on a CPU only under TRITON_INTERPRET=1; ``cuda``, the compiled extension, when it
has kernels for the device -- its CPU kernels on a CPU), one fwd+bwd is
``loss = term(acts); loss.backward()`` with the activations as leaves (their ``.grad`` reset to
None first), for L_prim, R_coh and R_feat separately and for ``L_prim + r (R_coh + R_feat)``
("all", one backward). Median milliseconds over ``--iters`` after ``--warmup`` (synchronised on
CUDA). Before timing, each fused backend's loss and gradients are checked against the reference
once per term (``--no-check`` skips this; it also compiles the Triton kernels before the clock
starts); a mismatch is printed and makes ``main`` return 1. On CUDA each fwd+bwd is also
captured as a CUDA graph and replayed ("graph ms"): the device time alone, as in an inversion
run with ``cuda_graph=True``. At small batch the eager time is mostly host launch cost (the
reference's dozens of small ops per layer, autograd's per-leaf work), the graph time is not.

Bytes model (the lower bound of the fused kernels; the per-channel statistics, running stats and
stimulus means are a few MB at most and not counted). With A = the bytes of a term's activations:

* L_prim: forward reads every activation once, backward writes every gradient once (a
  per-channel constant; the activations are not read again): 2 A.
* R_feat: forward reads once; backward reads the activations again (the gradient is
  alpha + beta x) and writes the gradient: 3 A.
* R_coh: forward reads the last layer once; backward reads it again and writes its gradient: 3 A.
* all: the sum of the three (R_coh's layer is also L_prim's last; autograd adds its two gradients,
  a few extra passes over one small layer that no kernel of these losses can avoid).

Achieved GB/s = bytes / median time; "% peak" divides by the device's memory bandwidth
(``--peak-gbps``, default from a small table keyed on ``torch.cuda.get_device_name``; n/a for an
unknown GPU and for CPUs), so 50% means within 2x of the bandwidth bound. "speed-up" is the
reference's median over the backend's.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from benchmarks.environment import environment
from leaps import losses, ops
from leaps.errors import LeapsError
from leaps.inversion import Network
from leaps.models import build_model, get_spec
from leaps.taps import BatchNormTaps, FeatureTaps
from leaps.timing import graph_time_ms, time_ms

BACKEND_CHOICES = ("reference", "triton", "cuda")
TERMS = ("L_prim", "R_coh", "R_feat", "all")
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}
#: (loss rtol, gradient tolerance relative to the largest reference gradient) per dtype.
TOLERANCES = {torch.float32: (1e-4, 1e-3), torch.bfloat16: (3e-2, 3e-2), torch.float16: (1e-2, 2e-2)}

#: Peak memory bandwidth in GB/s (vendor figures); first entry whose words all occur in the
#: CUDA device name wins, so the more specific names come first.
PEAK_GBPS = (
    (("H200",), 4800.0),
    (("GH200",), 4000.0),
    (("H100", "PCIe"), 2000.0),
    (("H100", "NVL"), 3900.0),
    (("H100",), 3350.0),                # SXM5 (HBM3)
    (("A100", "80GB", "PCIe"), 1935.0),
    (("A100", "80GB"), 2039.0),         # SXM4 80GB
    (("A100",), 1555.0),                # 40GB
    (("L40S",), 864.0),
    (("L4",), 300.0),
    (("A10",), 600.0),
    (("V100",), 900.0),
    (("T4",), 320.0),
    (("RTX 4090",), 1008.0),
)


def peak_bandwidth(device: torch.device) -> tuple[str, float | None]:
    """(device name, peak GB/s or None when unknown or not a GPU)."""
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    for words, gbps in PEAK_GBPS:
        if all(w.lower() in name.lower() for w in words):
            return name, gbps
    return name, None


# --------------------------------------------------------------------------------------------
# Layer sets from a forward on the meta device
# --------------------------------------------------------------------------------------------

@dataclass
class Layer:
    name: str
    kind: str                  # module type, e.g. BatchNorm3d
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    channel_dim: int

    @property
    def channels(self) -> int:
        return self.shape[self.channel_dim]


@dataclass
class LayerSet:
    """What the three terms read for one batch size, as shapes only."""

    model: str
    verifier: str | None
    batch: int
    model_input: tuple[int, int, int]
    verifier_input: tuple[int, int, int] | None
    prim: list[Layer]
    coh_token_grid: tuple[int, int] | None
    coh_channels_last: bool
    feat: list[Layer] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    r: float = 1.0
    shape_source: str = "meta"

    @property
    def coh(self) -> Layer:
        return self.prim[-1]


def _tap_shapes(name: str, batch: int, frames: int, size: int, override, taps_cls):
    """Run registered model ``name`` with ``taps_cls`` attached, on the meta device (no memory, no
    arithmetic) or, should its builder or forward not run there, on the CPU at batch 1; returns
    (spec, input geometry, layers, last tapped module, where the shapes came from)."""
    spec = get_spec(name)

    def tap(device: str, n: int):
        with torch.device(device):
            module = build_model(name)
        module.eval().requires_grad_(False)
        geometry = Network.wrap(module, spec, override).input_shape((batch, 3, frames, size, size))
        with taps_cls(module) as taps, torch.no_grad():
            module(torch.zeros(n, 3, *geometry, device=device))
            mods = dict(taps.layers)
            layers = [Layer(ln, type(mods[ln]).__name__, (batch,) + tuple(a.shape[1:]),
                            tuple(a.stride()) if n == batch else (), d)
                      for a, d, ln in zip(taps.activations(), taps.channel_dims(), taps.names())]
            return tuple(geometry), layers, taps.last()[1]

    try:
        return (spec, *tap("meta", batch), "meta")
    except Exception:  # an op without a meta kernel, a host sync...: real weights, batch 1
        return (spec, *tap("cpu", 1), "cpu (batch 1)")


def derive_layer_set(model: str, verifier: str | None, frames: int, size: int, batch: int,
                     verifier_input: tuple[int, int] | None = None) -> LayerSet:
    """The activations of an inversion of ``model`` (+ ``verifier``) at x* = batch x 3 x frames x size^2."""
    spec, geometry, prim, last_module, source = _tap_shapes(model, batch, frames, size, None, FeatureTaps)
    grid = None
    z = prim[-1]
    if len(z.shape) == 3:
        if getattr(spec, "token_grid", None) is None:
            raise LeapsError(f"{model}: the last norm input {z.shape} is tokens and the spec has no token_grid")
        grid = spec.token_grid(geometry)
    elif len(z.shape) != 5:
        raise LeapsError(f"{model}: cannot find frames in the last norm input of shape {z.shape}")
    channels_last = grid is None and isinstance(last_module, nn.LayerNorm)
    lam1, lam_last, r = spec.preset.lambda_first, spec.preset.lambda_last, spec.preset.r
    layer_set = LayerSet(model, verifier, batch, geometry, None, prim, grid, channels_last,
                         weights=losses.linear_layer_weights(len(prim), lam1, lam_last), r=r, shape_source=source)
    if verifier is not None:
        _, vgeometry, feat, _, vsource = _tap_shapes(verifier, batch, frames, size, verifier_input, BatchNormTaps)
        layer_set.verifier_input, layer_set.feat = vgeometry, feat
        if vsource != "meta":
            layer_set.shape_source = vsource
    return layer_set


# --------------------------------------------------------------------------------------------
# Tensors and the terms
# --------------------------------------------------------------------------------------------

def _alloc(layer: Layer, device, dtype, generator) -> torch.Tensor:
    if layer.stride and len(layer.stride) == len(layer.shape):
        probe = torch.empty_strided(layer.shape, layer.stride, device="meta")
        t = torch.empty_like(probe, device=device, dtype=dtype)  # keeps a dense layout (e.g. channels_last_3d)
    else:
        t = torch.empty(layer.shape, device=device, dtype=dtype)
    # Post-normalisation-scale values; std 0.5 keeps frame distances below the margin 1 so the
    # hinge pairs of R_coh are active (their gradient is checked too).
    return t.normal_(0.1, 0.5, generator=generator).requires_grad_()


class Problem:
    """Random activations of a layer set and the four timed losses."""

    def __init__(self, ls: LayerSet, device: torch.device, dtype: torch.dtype, distance: str, margin: float,
                 seed: int = 0):
        g = torch.Generator(device=device).manual_seed(seed)
        self.ls, self.distance, self.margin = ls, distance, margin
        self.prim = [_alloc(l, device, dtype, g) for l in ls.prim]
        self.dims = [l.channel_dim for l in ls.prim]
        self.stim = [torch.randn(ls.batch, l.channels, device=device, generator=g) * 0.5 + 0.1 for l in ls.prim]
        self.z = self.prim[-1]  # R_coh reads the last tapped layer: the same tensor as in an inversion
        self.feat = [_alloc(l, device, dtype, g) for l in ls.feat]
        self.rm = [torch.randn(l.channels, device=device, generator=g) * 0.1 for l in ls.feat]
        self.rv = [torch.rand(l.channels, device=device, generator=g) + 0.5 for l in ls.feat]

    def terms(self) -> list[str]:
        return list(TERMS) if self.feat else ["L_prim", "R_coh", "all"]

    def leaves(self, term: str) -> list[torch.Tensor]:
        return {"L_prim": self.prim, "R_coh": [self.z], "R_feat": self.feat, "all": self.prim + self.feat}[term]

    def loss(self, term: str, backend: str) -> torch.Tensor:
        if term == "L_prim":
            return losses.priming_loss_from_activations(self.prim, self.stim, self.ls.weights, self.distance,
                                                        channel_dims=self.dims, backend=backend)
        if term == "R_coh":
            return losses.temporal_coherence_loss(self.z, self.margin, token_grid=self.ls.coh_token_grid,
                                                  channels_last=self.ls.coh_channels_last, backend=backend)
        if term == "R_feat":
            return losses.bn_statistics_loss(self.feat, self.rm, self.rv, backend=backend)
        reg = self.loss("R_coh", backend)
        if self.feat:
            reg = reg + self.loss("R_feat", backend)
        return self.loss("L_prim", backend) + self.ls.r * reg

    def coh_bytes(self) -> int:
        frames = losses.frames_view_4d(self.z.detach(), self.ls.coh_token_grid, self.ls.coh_channels_last)
        return frames.numel() * self.z.element_size()

    def bytes_moved(self, term: str) -> int:
        """Lower bound on the activation bytes the fused kernels read and write (module docstring)."""
        a = lambda ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
        prim, coh, feat = 2 * a(self.prim), 3 * self.coh_bytes(), 3 * a(self.feat)
        return {"L_prim": prim, "R_coh": coh, "R_feat": feat, "all": prim + coh + feat}[term]

    def step(self, term: str, backend: str) -> torch.Tensor:
        for t in self.leaves(term):
            t.grad = None
        loss = self.loss(term, backend)
        loss.backward()
        return loss


# --------------------------------------------------------------------------------------------
# Checks and timing
# --------------------------------------------------------------------------------------------

def check_backend(problem: Problem, term: str, backend: str, reference) -> dict:
    """Loss and gradients of ``backend`` against ``reference`` = (loss, grads) of the reference."""
    ref_loss, ref_grads = reference
    loss = problem.step(term, backend).detach().double().item()
    rtol, gtol = TOLERANCES.get(problem.prim[0].dtype, (1e-4, 1e-3))
    loss_err = abs(loss - ref_loss) / max(abs(ref_loss), 1e-6)
    grad_err = 0.0
    for t, r in zip(problem.leaves(term), ref_grads):
        if t.grad is None:
            grad_err = math.inf
            continue
        scale = r.float().abs().max().clamp_min(1e-12)
        grad_err = max(grad_err, ((t.grad.float() - r.float()).abs().max() / scale).item())
        t.grad = None
    ok = loss_err <= rtol and grad_err <= gtol and math.isfinite(loss)
    return {"loss": loss, "reference_loss": ref_loss, "loss_rel_err": loss_err, "grad_rel_err": grad_err,
            "rtol": rtol, "grad_tol": gtol, "ok": ok}


def available_backends(requested, like: torch.Tensor) -> tuple[list[str], dict[str, str]]:
    """The requested backends that run for tensors like ``like`` (reference first), and why others don't."""
    run, skipped = ["reference"], {}
    for backend in requested:
        if backend == "reference" or backend in run:
            continue
        if backend == "triton" and like.device.type == "cpu" and not ops.triton_interpreted():
            skipped[backend] = "skipped on CPU: set TRITON_INTERPRET=1 to run Triton's interpreter (slow)"
            continue
        try:
            ops.resolve_backend(backend, like)
        except LeapsError as exc:
            skipped[backend] = f"skipped: {exc}"
            continue
        run.append(backend)
    return run, skipped


def _graph_ms(problem: Problem, term: str, backend: str, args, device: torch.device) -> tuple[float | None, str]:
    """Median device ms of one fwd+bwd replayed from a CUDA graph (no host launch cost), or
    (None, why) on a CPU, with --no-graph, or when the step cannot be captured."""
    if device.type != "cuda" or args.no_graph:
        return None, "not measured"
    try:
        times = graph_time_ms(lambda: problem.step(term, backend), args.iters, args.warmup, device)
        return statistics.median(times), "ok"
    except Exception as exc:  # noqa: BLE001 - a backend that cannot be captured keeps its eager row
        torch.cuda.synchronize(device)
        return None, f"capture failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    finally:
        for t in problem.leaves(term):
            t.grad = None


def _shape(s) -> str:
    return "x".join(str(d) for d in s)


def run_batch(args, batch: int, device: torch.device, dtype: torch.dtype, peak: float | None) -> dict:
    ls = derive_layer_set(args.model, args.verifier, args.frames, args.size, batch,
                          tuple(args.verifier_input) if args.verifier_input else None)
    problem = Problem(ls, device, dtype, args.distance, args.margin, args.seed)
    backends, skipped = available_backends(args.backends, problem.z)
    rows, ok = [], True
    for term in [t for t in problem.terms() if t in args.terms]:
        checks = {}
        if not args.no_check and len(backends) > 1:
            # Once per term, before timing (this also compiles the Triton kernels): the reference's
            # loss and gradients, then each fused backend's against them.
            loss = problem.step(term, "reference").detach().double().item()
            reference = (loss, [t.grad for t in problem.leaves(term)])
            for t in problem.leaves(term):
                t.grad = None
            for backend in backends[1:]:
                check = checks[backend] = check_backend(problem, term, backend, reference)
                if not check["ok"]:
                    ok = False
                    print(f"MISMATCH {term} {backend} vs reference at B={batch}: loss rel err "
                          f"{check['loss_rel_err']:.2e} (tol {check['rtol']:.0e}), grad rel err "
                          f"{check['grad_rel_err']:.2e} (tol {check['grad_tol']:.0e})", file=sys.stderr)
            del reference
        ref_ms = ref_gpu_ms = None
        for backend in backends:
            times = time_ms(lambda: problem.step(term, backend), args.iters, args.warmup, device)  # noqa: F821 - deleted after the loop
            for t in problem.leaves(term):
                t.grad = None
            ms = statistics.median(times)
            ref_ms = ms if backend == "reference" else ref_ms
            gpu_ms, gpu_note = _graph_ms(problem, term, backend, args, device)
            ref_gpu_ms = gpu_ms if backend == "reference" else ref_gpu_ms
            moved = problem.bytes_moved(term)
            gbps = moved / (ms * 1e-3) / 1e9
            gpu_gbps = moved / (gpu_ms * 1e-3) / 1e9 if gpu_ms else None
            rows.append({
                "term": term, "backend": backend, "ms": ms, "times_ms": times, "bytes": moved, "gbps": gbps,
                "frac_peak": gbps / peak if peak else None,
                "bound_ms": moved / (peak * 1e9) * 1e3 if peak else None,
                "speedup": ref_ms / ms if ref_ms else None, "check": checks.get(backend),
                "graph_ms": gpu_ms, "graph_note": gpu_note, "graph_gbps": gpu_gbps,
                "graph_frac_peak": gpu_gbps / peak if gpu_gbps and peak else None,
                "graph_speedup": ref_gpu_ms / gpu_ms if ref_gpu_ms and gpu_ms else None,
            })
    layers = {
        "model_input": list(ls.model_input), "verifier_input": list(ls.verifier_input) if ls.verifier_input else None,
        "prim": len(ls.prim), "coh": 1, "feat": len(ls.feat), "shape_source": ls.shape_source,
        "prim_kinds": sorted({l.kind for l in ls.prim}), "feat_kinds": sorted({l.kind for l in ls.feat}),
        "coh_shape": list(ls.coh.shape),
        "prim_shapes": [list(l.shape) for l in ls.prim], "feat_shapes": [list(l.shape) for l in ls.feat],
        "bytes": {t: problem.bytes_moved(t) for t in problem.terms()},
    }
    del problem
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"batch": batch, "layers": layers, "backends": backends, "skipped": skipped, "rows": rows, "ok": ok}


def print_table(args, result: dict, device_name: str, peak: float | None, dtype_name: str) -> None:
    lay, b = result["layers"], result["batch"]
    mi, vi = lay["model_input"], lay["verifier_input"]
    print(f"\n== B={b}, {dtype_name}, {device_name}"
          f" (peak {'%.0f GB/s' % peak if peak else 'n/a'}) ==")
    print(f"L_prim: {args.model} at {mi[0]}x{mi[1]}x{mi[2]}: {lay['prim']} inputs of "
          f"{'/'.join(lay['prim_kinds'])}; R_coh: the last, {_shape(lay['coh_shape'])}")
    if vi:
        print(f"R_feat: {args.verifier} at {vi[0]}x{vi[1]}x{vi[2]}: {lay['feat']} inputs of "
              f"{'/'.join(lay['feat_kinds'])}")
    graphs = any(row.get("graph_ms") for row in result["rows"])
    print(f"{'term':7s} {'backend':10s} {'MiB moved':>10s} {'median ms':>10s} {'speed-up':>9s} "
          f"{'GB/s':>8s} {'% peak':>7s}" + (f" {'graph ms':>9s} {'speed-up':>9s} {'% peak':>7s}" if graphs else "")
          + "  check")
    for row in result["rows"]:
        speedup = f"{row['speedup']:.2f}x" if row["speedup"] else "n/a"
        frac = f"{100 * row['frac_peak']:.1f}" if row["frac_peak"] is not None else "n/a"
        check = row["check"]
        check = "-" if check is None else ("ok" if check["ok"] else "MISMATCH") + f" ({check['grad_rel_err']:.0e})"
        graph = ""
        if graphs:
            g = row.get("graph_ms")
            graph = (f" {g:9.3f} {row['graph_speedup'] or 0:8.2f}x {100 * (row['graph_frac_peak'] or 0):7.1f}"
                     if g else f" {'n/a':>9s} {'':>9s} {'':>7s}")
        print(f"{row['term']:7s} {row['backend']:10s} {row['bytes'] / 2**20:10.1f} {row['ms']:10.3f} "
              f"{speedup:>9s} {row['gbps']:8.1f} {frac:>7s}{graph}  {check}")
        if graphs and row.get("graph_note", "ok") not in ("ok", "not measured"):
            print(f"        graph: {row['graph_note']}")
    for backend, why in result["skipped"].items():
        print(f"{backend}: {why}")
    if device_name == "cpu" and "cuda" in result["backends"]:
        print("cuda on cpu: the extension's C++ CPU kernels")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="slow_r50", help="inverted model: L_prim on all norm inputs, R_coh on the last")
    p.add_argument("--verifier", default="x3d_s", help="BatchNorm verifier for R_feat; 'none' to leave R_feat out")
    p.add_argument("--frames", type=int, default=8, help="T of x*")
    p.add_argument("--size", type=int, default=224, help="H = W of x*")
    p.add_argument("--verifier-input", type=int, nargs=2, metavar=("T", "S"), default=None,
                   help="verifier geometry (default: its native input if fixed-size, else x*'s)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    p.add_argument("--backends", nargs="+", default=list(BACKEND_CHOICES), choices=BACKEND_CHOICES,
                   help="the reference always runs (the baseline)")
    p.add_argument("--terms", nargs="+", default=list(TERMS), choices=TERMS,
                   help="what to time; 'all' is L_prim + r (R_coh + R_feat) in one backward")
    p.add_argument("--distance", default="jvs", choices=losses.DISTANCES)
    p.add_argument("--margin", type=float, default=1.0)
    p.add_argument("--peak-gbps", type=float, default=None, help="device memory bandwidth (default: by GPU name)")
    p.add_argument("--no-check", action="store_true", help="skip the check against the reference")
    p.add_argument("--no-graph", action="store_true",
                   help="skip the CUDA-graph timing (device time without host launch cost; CUDA only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = p.parse_args(argv)
    args.verifier = None if args.verifier in (None, "none") else args.verifier

    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    device_name, peak = peak_bandwidth(device)
    peak = args.peak_gbps if args.peak_gbps else peak
    results = [run_batch(args, b, device, dtype, peak) for b in args.batch]
    for result in results:
        print_table(args, result, device_name, peak, args.dtype)
    ok = all(r["ok"] for r in results)
    if not ok:
        print("\nsome fused backend does not match the reference (see MISMATCH above)")
    if args.json:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        payload = {"environment": environment(device), "config": config, "device": device_name, "peak_gbps": peak,
                   "torch": torch.__version__, "ok": ok, "results": results}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
