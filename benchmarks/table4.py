"""Table 4 latency: bare networks, the official and naive formulations, and leaps' engine options.

    python -m benchmarks.table4                                   # full Table 4 sweep (GPU)
    python -m benchmarks.table4 --models slow_r50 --geometries 8x224 --batch 1 16
    python -m benchmarks.table4 --quick --device cpu              # tiny toy run (seconds)

For each inverted model (3D R50 = ``slow_r50``, (2+1)D R50 = ``r2plus1d_r50``), each x* geometry
T x S^2 of Table 4 and each batch B, with the X3D-S verifier (random weights; nothing downloads),
it times:

* **inference**: forward (no grad) of the inverted net + verifier, with each formulation's hooks
  and loss terms;
* **backprop**: one full step: forward of both nets + LEAPS terms, backward to x*, Adam on x*;

for the rows

* ``bare``: CE only (the floor), ``official``: the authors' public formulation, ``naive``: the
  paper's equations in plain eager PyTorch (all three in benchmarks/formulations.py);
* ``bare-fast``: the bare step under the engine of ``leaps-fast`` (leaps' CUDA graph + bf16
  autocast, fused Adam, augmentation, clip) with every LEAPS term off: CE on the inverted model
  only, so the verifier does not run (it serves only R_feat). ``leaps-fast / bare-fast`` is then
  the cost of the LEAPS terms and the verifier under one engine (target <= 1.10 at B=16). CUDA
  only: on a CPU the row is skipped with its reason;
* ``leaps-reference`` (eager, plain-torch losses), ``leaps-fused`` (``backend="auto"``), each
  engine option on top of fused (``amp`` bf16 / fp16, ``compile``, ``cuda_graph``, ``checkpoint``,
  ``channels_last``), ``leaps-graph+bf16`` / ``+fp16`` (CUDA graph and autocast together: a
  graph removes autocast's host cost), ``leaps-combo`` (the single options that beat fused by >3%, together) and
  ``leaps-fast`` (``fast=True``: leaps' own pick);

and prints median / p90 milliseconds, peak memory (CUDA), step time / bare step, step time /
bare-fast step, official step / row step (the speed-up over official), videos per GPU-hour of a 2000-step synthesis
(3600 / (2000 x step seconds) x B), and the paper's Table 4 figures for reference. A row that
cannot run (an option not implemented yet, CUDA graphs on a CPU, out of memory) is printed as
``n/a (reason)``; the sweep goes on. Models are randomly initialised: timing does not depend on
the weights.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import platform
import re
import statistics
import sys
from pathlib import Path

import torch

from benchmarks import formulations
from benchmarks.environment import environment
from leaps.inversion import prepare
from leaps.models import build_model, get_spec
from leaps.timing import synchronize as _sync
from leaps.timing import time_ms as _time

SYNTHESIS_STEPS = 2000
GRAPH_WARMUP = 3  # leaps.engine.GRAPH_WARMUP: eager steps before a CUDA graph is captured
try:
    from leaps.engine import GRAPH_WARMUP
except ImportError:  # an engine without CUDA graphs
    pass
COMBO_MARGIN = 0.97  # an option joins leaps-combo when its step is < 97% of leaps-fused's

#: leaps rows: name -> options for :func:`leaps.inversion.prepare` (leaps-combo is built at run time).
LEAPS_ROWS: dict[str, dict | None] = {
    "leaps-reference": {"backend": "reference"},
    "leaps-fused": {"backend": "auto"},
    "leaps-fused+bf16": {"backend": "auto", "amp": "bf16"},
    "leaps-fused+fp16": {"backend": "auto", "amp": "fp16"},
    "leaps-fused+compile": {"backend": "auto", "compile": True},
    "leaps-fused+cuda_graph": {"backend": "auto", "cuda_graph": True},
    "leaps-fused+checkpoint": {"backend": "auto", "checkpoint": True},
    "leaps-fused+channels_last": {"backend": "auto", "channels_last": True},
    "leaps-graph+bf16": {"backend": "auto", "cuda_graph": True, "amp": "bf16"},
    "leaps-graph+fp16": {"backend": "auto", "cuda_graph": True, "amp": "fp16"},
    "leaps-combo": None,
    "leaps-fast": {"fast": True},
}
#: The bare step under leaps' own engine, every LEAPS term off (CE on the inverted model only).
BARE_ENGINE_ROWS: dict[str, dict] = {
    "bare-fast": {"fast": True, "use_priming": False, "use_coherence": False, "use_feat": False},
}
ENGINE_ROWS = {**BARE_ENGINE_ROWS, **LEAPS_ROWS}
ROWS = ("bare", *BARE_ENGINE_ROWS, "official", "naive", *LEAPS_ROWS)
FAST_TARGET = 1.10  # leaps-fast / bare-fast at B=16
FAST_TARGET_BATCH = 16
ENGINE_FIELDS = ("backend", "amp", "compile", "cuda_graph", "checkpoint", "channels_last", "fast", "sync_every")

#: The paper's Table 4, as printed (latency in seconds: inference (down) / backprop (up); the GPU
#: and the batch size are not stated).
PAPER_TABLE4 = {
    "slow_r50": {
        "title": "3D R50",
        "rows": {
            "8x182": {"top1_m": "84.3", "top1_v": "67.2", "IS": "8.1±1.3", "latency": "0.591 / 0.913"},
            "8x224": {"top1_m": "86.7", "top1_v": "68.5", "IS": "9.7±1.0", "latency": "0.832 / 1.205"},
            "16x224": {"top1_m": "87.0", "top1_v": "68.7", "IS": "9.8±1.6", "latency": "1.140 / 1.681"},
        },
    },
    "r2plus1d_r50": {
        "title": "(2+1)D R50",
        "rows": {
            "8x182": {"top1_m": "75.4", "top1_v": "62.9", "IS": "4.2±1.8", "latency": "1.684/2.325"},
            "8x224": {"top1_m": "78.0", "top1_v": "65.2", "IS": "6.4±1.3", "latency": "1.858/2.793"},
            "16x224": {"top1_m": "78.5", "top1_v": "65.4", "IS": "6.6±1.5", "latency": "2.343/3.176"},
        },
    },
}
PAPER_UNITS = ("header as printed: Latency (secs) (↓ / ↑ B); the caption reads inference (↓) / backprop (↑); "
               "GPU and batch size not stated")


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------

def _summary(times: list[float]) -> dict:
    p90 = statistics.quantiles(times, n=10)[-1] if len(times) > 1 else times[0]
    return {"median": statistics.median(times), "p90": p90, "n": len(times), "times": times}


def _reset_peak(device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _free(device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "out of memory"
    text = str(exc).strip().splitlines()
    text = text[0] if text else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def parse_geometry(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[x×]\s*(\d+)(?:\^?2|²)?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"geometry must look like 8x224 (T x S), got {text!r}")
    return int(m.group(1)), int(m.group(2))


# --------------------------------------------------------------------------------------------
# one row
# --------------------------------------------------------------------------------------------

class _Setting:
    """One model x geometry x batch: the pristine networks every row copies."""

    def __init__(self, model_name, model, verifier, frames, size, batch, device, iters, warmup):
        self.model_name, self.model, self.verifier = model_name, model, verifier
        self.frames, self.size, self.batch, self.device = frames, size, batch, device
        self.iters, self.warmup = iters, warmup
        gen = torch.Generator().manual_seed(0)
        self.stimulus = torch.rand(3, frames, size, size, generator=gen)
        self.targets = [0] * batch


def _empty_row(name: str, options: dict | None = None) -> dict:
    kind = name if name in formulations.FORMULATIONS else "bare-engine" if name in BARE_ENGINE_ROWS else "leaps"
    return {
        "name": name, "kind": kind, "options": options, "status": "n/a", "reason": None,
        "step_ms": None, "inference_ms": None, "inference_reason": None,
        "peak_step_gib": None, "peak_inference_gib": None,
    }


def run_row(name: str, s: _Setting, options: dict | None = None) -> dict:
    """Time one row; never raises (a failure becomes ``status: n/a`` with its reason)."""
    row = _empty_row(name, options)
    device = s.device
    if options is None and name in LEAPS_ROWS:
        row["reason"] = "no options"
        return row
    if options and options.get("cuda_graph") and device.type != "cuda":
        row["reason"] = "CUDA graphs need a CUDA device"
        return row
    if name in BARE_ENGINE_ROWS and device.type != "cuda":
        # fast=True on a CPU is the eager fp32 loop: not the engine leaps-fast is measured with on a GPU
        row["reason"] = "needs CUDA: the fast engine is a CUDA graph with bf16 autocast"
        return row
    warmup = s.warmup
    if device.type == "cuda" and options and (options.get("cuda_graph") or options.get("fast")):
        warmup = max(warmup, GRAPH_WARMUP + 2)  # the capture itself stays out of the timed steps
    row["warmup"] = warmup
    _free(device)
    model = verifier = obj = context = step = inference = None
    try:
        model = copy.deepcopy(s.model)
        verifier = copy.deepcopy(s.verifier) if s.verifier is not None else None
        _reset_peak(device)
        if row["kind"] in formulations.FORMULATIONS:
            obj = formulations.build(name, model, verifier, s.targets, s.stimulus, frames=s.frames, size=s.size)
            context, step, inference = obj, obj.step, obj.inference
        else:
            steps = max(SYNTHESIS_STEPS, warmup + s.iters + 1)
            obj = prepare(model, s.targets, s.stimulus, verifier, steps=steps, frames=s.frames,
                          size=s.size, progress=False, **options)
            row["resolved_options"] = {k: getattr(obj.cfg, k) for k in ENGINE_FIELDS if hasattr(obj.cfg, k)}
            context, step, inference = obj, obj.step, obj.inference
        with context:
            try:
                _reset_peak(device)
                row["step_ms"] = _summary(_time(step, s.iters, warmup, device))
                row["peak_step_gib"] = _peak(device)
                row["status"] = "ok"
            except Exception as exc:  # noqa: BLE001 - a row never stops the sweep
                row["reason"] = _reason(exc)
            _free(device)
            try:
                _reset_peak(device)
                row["inference_ms"] = _summary(_time(inference, s.iters, warmup, device))
                row["peak_inference_gib"] = _peak(device)
            except Exception as exc:  # noqa: BLE001
                row["inference_reason"] = _reason(exc)
    except Exception as exc:  # noqa: BLE001 - set-up failed (unknown option, out of memory, ...)
        row["reason"] = _reason(exc)
    finally:
        del obj, model, verifier, context, step, inference
        if options and (options.get("compile") or options.get("fast")):
            try:
                torch._dynamo.reset()
            except Exception:  # noqa: BLE001
                pass
        _free(device)
    if row["status"] != "ok" and row["reason"] is None:
        row["reason"] = "did not run"
    _progress(row)
    return row


def _progress(row: dict) -> None:
    if row["status"] == "ok":
        fwd = row["inference_ms"]["median"] if row.get("inference_ms") else None
        text = f"fwd {_f(fwd)} ms, step {row['step_ms']['median']:.1f} ms"
    else:
        text = f"n/a ({row['reason']})"
    print(f"  {row['name']}: {text}", file=sys.stderr, flush=True)


def _warm_up(s: _Setting) -> None:
    """One untimed bare step per setting, so that the first row does not pay the lazy initialisation
    (thread pools, cuDNN handles, allocator) that every later row finds done."""
    try:
        bare = formulations.Bare(s.model, s.verifier, s.targets, frames=s.frames, size=s.size)
        bare.step()
        _sync(s.device)
    except Exception:  # noqa: BLE001 - the bare row will report it
        pass
    bare = None
    _free(s.device)


def _combo_options(rows: dict) -> tuple[dict | None, str]:
    """The single options that beat leaps-fused by more than 3%, merged (one amp mode at most)."""
    fused = rows.get("leaps-fused")
    if not fused or fused["status"] != "ok":
        return None, "leaps-fused did not run"
    base = fused["step_ms"]["median"]
    winners = []
    for name, row in rows.items():
        if name.startswith("leaps-fused+") and row["status"] == "ok" and row["step_ms"]["median"] < COMBO_MARGIN * base:
            winners.append((row["step_ms"]["median"], name, row["options"]))
    winners.sort()
    merged, used, amp_taken = {"backend": "auto"}, [], False
    for _, name, opts in winners:
        if "amp" in opts:
            if amp_taken:
                continue
            amp_taken = True
        merged.update(opts)
        used.append(name.split("+", 1)[1])
    if len(used) < 2:
        return None, f"fewer than two single options beat leaps-fused ({', '.join(used) or 'none'})"
    return merged, "+".join(used)


def _derive(rows: dict, batch: int, device: torch.device, synthesis_steps: int) -> None:
    """Ratios to bare and official, and videos per device-hour."""
    def med(name, key="step_ms"):
        r = rows.get(name)
        return r[key]["median"] if r and r["status"] == "ok" and r.get(key) else None

    bare, bare_fwd, official = med("bare"), med("bare", "inference_ms"), med("official")
    bare_fast = med("bare-fast")
    for row in rows.values():
        step = row["step_ms"]["median"] if row["status"] == "ok" else None
        fwd = row["inference_ms"]["median"] if row.get("inference_ms") else None
        row["step_vs_bare"] = step / bare if step and bare else None
        row["step_vs_bare_fast"] = step / bare_fast if step and bare_fast else None
        row["inference_vs_bare"] = fwd / bare_fwd if fwd and bare_fwd else None
        row["official_speedup"] = official / step if step and official else None
        row["videos_per_hour"] = 3600.0 / (synthesis_steps * step / 1000.0) * batch if step else None


def fast_vs_bare_fast(rows: dict, batch: int) -> dict:
    """leaps-fast's step over bare-fast's (the cost of the LEAPS terms and the verifier under one engine),
    with the target at B=16, or the reason it is missing."""
    out = {"ratio": None, "target": FAST_TARGET, "target_batch": FAST_TARGET_BATCH, "met": None, "reason": None}
    for name in ("bare-fast", "leaps-fast"):
        row = rows.get(name)
        if row is None:
            out["reason"] = f"{name} not in --rows"
            return out
        if row["status"] != "ok":
            out["reason"] = f"{name}: {row['reason']}"
            return out
    out["ratio"] = rows["leaps-fast"]["step_ms"]["median"] / rows["bare-fast"]["step_ms"]["median"]
    if batch == FAST_TARGET_BATCH:
        out["met"] = out["ratio"] <= FAST_TARGET
    return out


def _fast_line(block: dict) -> str:
    cmp = block.get("fast_vs_bare_fast")
    if not cmp:
        return "fast / bare-fast: n/a"
    target = f"target <= {cmp['target']:.2f} at B={cmp['target_batch']}"
    if cmp["ratio"] is None:
        return f"fast / bare-fast: n/a ({cmp['reason']}; {target})"
    verdict = "" if cmp["met"] is None else (": met" if cmp["met"] else ": NOT met")
    return f"fast / bare-fast: {cmp['ratio']:.3f}x ({target}{verdict})"


def _best_leaps(rows: dict) -> dict | None:
    ok = [r for n, r in rows.items() if r["kind"] == "leaps" and r["status"] == "ok"]
    if not ok:
        return None
    best = min(ok, key=lambda r: r["step_ms"]["median"])
    return {"row": best["name"], "step_ms": best["step_ms"]["median"],
            "options": best.get("resolved_options") or best["options"]}


# --------------------------------------------------------------------------------------------
# printing
# --------------------------------------------------------------------------------------------

def _f(value, fmt="{:.1f}", none="-"):
    return none if value is None else fmt.format(value)


COLUMNS = ("row", "fwd ms", "step ms", "step p90", "peak GiB", "step/bare", "/bare-fast", "official/row", "videos/h")


def _cells(row: dict) -> list[str]:
    if row["status"] != "ok":
        return [row["name"], f"n/a ({row['reason']})"]
    fwd = row["inference_ms"]["median"] if row.get("inference_ms") else None
    return [
        row["name"],
        _f(fwd) if fwd is not None else f"n/a ({row['inference_reason']})",
        _f(row["step_ms"]["median"]),
        _f(row["step_ms"]["p90"]),
        _f(row["peak_step_gib"], "{:.2f}", "n/a"),
        _f(row["step_vs_bare"], "{:.2f}x"),
        _f(row.get("step_vs_bare_fast"), "{:.2f}x"),
        _f(row["official_speedup"], "{:.2f}x"),
        _f(row["videos_per_hour"], "{:.0f}" if (row["videos_per_hour"] or 0) >= 100 else "{:.3g}"),
    ]


def _paper_line(model_name: str, frames: int, size: int) -> str | None:
    entry = PAPER_TABLE4.get(model_name, {}).get("rows", {}).get(f"{frames}x{size}")
    if entry is None:
        return None
    return (f"paper Table 4 ({PAPER_TABLE4[model_name]['title']} {frames} x {size}^2): latency (secs, inference / "
            f"backprop) {entry['latency']}; top-1 m/v {entry['top1_m']}/{entry['top1_v']}; IS {entry['IS']}")


def _title(block: dict) -> str:
    return (f"{block['title']} ({block['model']}) {block['frames']} x {block['size']}^2, B={block['batch']}, "
            f"verifier {block['verifier']}, {block['device']}")


def format_block(block: dict) -> str:
    rows = [_cells(r) for r in block["rows"].values()]
    widths = [max(len(COLUMNS[0]), *(len(r[0]) for r in rows))] + [12] * (len(COLUMNS) - 1)
    lines = [_title(block), "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(COLUMNS, widths)))]
    for cells in rows:
        if len(cells) == 2:
            lines.append(f"{cells[0].ljust(widths[0])}  {cells[1]}")
        else:
            lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))))
    lines.append(_fast_line(block))
    best = block.get("best_leaps")
    if best:
        lines.append(f"best leaps row measured: {best['row']} ({best['step_ms']:.1f} ms/step; "
                     f"options {best['options']})")
    fast = block["rows"].get("leaps-fast")
    if fast and fast.get("resolved_options"):
        lines.append(f"fast=True resolved to: {fast['resolved_options']}")
    paper = _paper_line(block["model"], block["frames"], block["size"])
    if paper:
        lines.append(paper)
    return "\n".join(lines)


def format_markdown(result: dict) -> str:
    meta = result["meta"]
    out = ["# Table 4 latency: bare, official, naive and leaps", "",
           f"Device: {meta['device_name']} ({meta['device']}); torch {meta['torch']}; iters {meta['iters']}, "
           f"warmup {meta['warmup']}; median ms. step = forward + LEAPS terms + backward to x* + Adam. "
           f"videos/h = 3600 / ({meta['synthesis_steps']} x step s) x B.", ""]
    for block in result["results"]:
        out += [f"## {_title(block)}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        for row in block["rows"].values():
            cells = _cells(row)
            if len(cells) == 2:
                cells = cells + [""] * (len(COLUMNS) - 2)
            out.append("| " + " | ".join(cells) + " |")
        out += ["", _fast_line(block) + "."]
        best = block.get("best_leaps")
        if best:
            out += ["", f"Best leaps row measured: `{best['row']}` ({best['step_ms']:.1f} ms/step), "
                        f"options `{best['options']}`."]
        paper = _paper_line(block["model"], block["frames"], block["size"])
        if paper:
            out += ["", paper[0].upper() + paper[1:] + "."]
        out.append("")
    out += ["## Paper Table 4 (for reference, as printed)", "", f"{PAPER_UNITS}.", "",
            "| model | T x S^2 | top-1 m | top-1 v | IS | latency (secs) ↓ / ↑ |", "|---|---|---|---|---|---|"]
    for entry in PAPER_TABLE4.values():
        for geom, r in entry["rows"].items():
            t, s = geom.split("x")
            out.append(f"| {entry['title']} | {t} x {s}^2 | {r['top1_m']} | {r['top1_v']} | {r['IS']} "
                       f"| {r['latency']} |")
    return "\n".join(out) + "\n"


def format_paper() -> str:
    lines = [f"Paper Table 4 ({PAPER_UNITS}):",
             f"{'model':12s} {'T x S^2':10s} {'top-1 m':>8s} {'top-1 v':>8s} {'IS':>9s}  latency"]
    for entry in PAPER_TABLE4.values():
        for geom, r in entry["rows"].items():
            t, s = geom.split("x")
            lines.append(f"{entry['title']:12s} {t + ' x ' + s + '^2':10s} {r['top1_m']:>8s} {r['top1_v']:>8s} "
                         f"{r['IS']:>9s}  {r['latency']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------

def _expand_rows(names: list[str] | None) -> list[str]:
    if not names:
        return list(ROWS)
    out = []
    for n in names:
        picked = [r for r in ROWS if r.startswith("leaps-")] if n == "leaps" else [n]
        out += [r for r in picked if r not in out]
    unknown = [n for n in out if n not in ROWS]
    if unknown:
        raise SystemExit(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(ROWS)} (or 'leaps')")
    return [r for r in ROWS if r in out]  # bare first: the ratios need it


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=None, help="inverted models (default slow_r50 r2plus1d_r50)")
    p.add_argument("--geometries", nargs="+", type=parse_geometry, default=None,
                   help="x* geometries T x S (default 8x182 8x224 16x224)")
    p.add_argument("--batch", nargs="+", type=int, default=None, help="batch sizes (default 1 16)")
    p.add_argument("--verifier", default=None, help="verifier model, 'none' for no verifier (default x3d_s)")
    p.add_argument("--iters", type=int, default=None, help="timed iterations per row (default 10)")
    p.add_argument("--warmup", type=int, default=None, help="untimed iterations per row (default 3)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--rows", nargs="+", default=None,
                   help=f"subset of rows ('leaps' = all leaps rows): {', '.join(ROWS)}")
    p.add_argument("--synthesis-steps", type=int, default=SYNTHESIS_STEPS, help="steps of one synthesis, for videos/h")
    p.add_argument("--json", default=None, help="write the results as JSON here")
    p.add_argument("--markdown", default=None, help="write the tables as Markdown here")
    p.add_argument("--quick", action="store_true",
                   help="tiny toy setting: toy_r3d inverted, toy_x3d verifier, 4x32^2, B=1, 1 iter, 0 warmup")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        defaults = dict(models=["toy_r3d"], geometries=[(4, 32)], batch=[1], verifier="toy_x3d", iters=1, warmup=0)
    else:
        defaults = dict(models=["slow_r50", "r2plus1d_r50"], geometries=[(8, 182), (8, 224), (16, 224)],
                        batch=[1, 16], verifier="x3d_s", iters=10, warmup=3)
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.iters < 1 or args.warmup < 0 or any(b < 1 for b in args.batch):
        raise SystemExit("--iters must be >= 1, --warmup >= 0 and batch sizes >= 1")
    rows_wanted = _expand_rows(args.rows)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = platform.processor() or platform.machine()
    meta = {"device": str(device), "device_name": device_name, "torch": torch.__version__, "iters": args.iters,
            "warmup": args.warmup, "synthesis_steps": args.synthesis_steps, "verifier": args.verifier,
            "rows": rows_wanted, "argv": list(sys.argv[1:] if argv is None else argv)}
    env = environment(device)
    print(f"Table 4 latency on {device} ({device_name}), torch {torch.__version__}; median ms over {args.iters} "
          f"iters after {args.warmup} warm-up; step = fwd + LEAPS terms + bwd to x* + Adam; "
          f"videos/h = 3600 / ({args.synthesis_steps} x step s) x B", flush=True)

    verifier = build_model(args.verifier).to(device) if args.verifier != "none" else None
    results = []
    for model_name in args.models:
        model = build_model(model_name).to(device)
        title = get_spec(model_name).title
        for frames, size in args.geometries:
            for batch in args.batch:
                setting = _Setting(model_name, model, verifier, frames, size, batch, device, args.iters, args.warmup)
                _warm_up(setting)
                rows: dict[str, dict] = {}
                for name in rows_wanted:
                    if name == "leaps-combo":
                        options, why = _combo_options(rows)
                        if options is None:
                            rows[name] = _empty_row(name)
                            rows[name]["reason"] = why
                            continue
                        rows[name] = run_row(name, setting, options)
                        rows[name]["combo"] = why
                    else:
                        rows[name] = run_row(name, setting, ENGINE_ROWS.get(name))
                _derive(rows, batch, device, args.synthesis_steps)
                block = {"model": model_name, "title": title, "frames": frames, "size": size, "batch": batch,
                         "verifier": args.verifier, "device": str(device), "rows": rows,
                         "best_leaps": _best_leaps(rows), "fast_vs_bare_fast": fast_vs_bare_fast(rows, batch),
                         "paper": PAPER_TABLE4.get(model_name, {}).get("rows", {}).get(f"{frames}x{size}")}
                results.append(block)
                print("\n" + format_block(block), flush=True)
                _write(args, env, meta, results)  # after every block: a sweep cut short keeps its tables
        del model
        _free(device)
    print("\n" + format_paper())
    _write(args, env, meta, results)
    return 0


def _write(args, env: dict, meta: dict, results: list) -> None:
    result = {"environment": env, "meta": meta, "paper_table4": PAPER_TABLE4, "paper_units": PAPER_UNITS,
              "results": results}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1, default=_json_default))
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(format_markdown(result))


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    return repr(value)


if __name__ == "__main__":
    sys.exit(main())
