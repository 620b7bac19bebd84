"""The pieces that make an inversion step fast: static schedules, on-device augmentation and loss
scaling, stage checkpointing, and the choice of engine options.

A step of :class:`leaps.inversion.Inverter` is written so that nothing in it needs the host:

* the learning rate of every step and the random roll/flip of x* are drawn once, up front, from
  the run's seed (:class:`Schedule`); a step reads its row through a step counter that lives on
  the device, so the same code runs eagerly or replays as a captured CUDA graph;
* the roll and flip are one gather along H and one along W (:func:`augment`), bit-identical to
  ``torch.roll`` + ``torch.flip``;
* fp16 loss scaling keeps its scale, growth tracker and overflow flag on the device
  (:class:`LossScaler`); the fused Adam skips an overflowing step without a host sync;
* loss values go to a device log that the host reads every ``sync_every`` steps.
"""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import InversionConfig
from .errors import LeapsError
from .taps import NORM_LAYERS

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
FAST_SYNC_EVERY = 25   # host reads of the loss log when the engine runs ahead of the host
FAST_AMP = "bf16"      # autocast of fast=True on CUDA (with the graph; see resolve_engine)
GRAPH_WARMUP = 3       # eager steps on a side stream before capture (cuDNN/Triton autotuning, allocator)


# --------------------------------------------------------------------------------------------
# engine options
# --------------------------------------------------------------------------------------------

def resolve_engine(cfg: InversionConfig, device: torch.device) -> InversionConfig:
    """``cfg`` with ``fast`` expanded and ``sync_every`` decided; impossible combinations raise.

    ``fast=True``: on CUDA the fused losses, a captured CUDA graph of the whole step and bf16
    autocast (unless ``amp`` names a mode; ``amp="fp32"`` keeps full precision); on the CPU only
    less frequent host reads. Measured on an H100 (benchmarks/table4.py, 3D R50 + X3D-S, 8 x
    224^2): the graph alone takes B=1 from 41 to 10.7 ms per step but B=16 only from 96 to 92 ms;
    bf16 under the graph gives 10.0 and 68.8 ms (0.85x the eager bare network's step). Eager
    autocast without a graph is slower at B=1 (its casts are host work), so bf16 comes only with
    the graph. fp16 was as fast (9.7 / 68.7 ms) but needs loss scaling; channels_last was slower.
    Re-tune with ``benchmarks/table4.py`` (its ``leaps-combo`` row) on the GPU you use.
    ``coarse_to_fine`` > 1 cannot be captured (each stage computes x* anew): ``fast`` then leaves
    out the graph (and with it the bf16), an explicit ``cuda_graph=True`` raises.
    """
    if cfg.coarse_to_fine > 1 and cfg.cuda_graph:
        raise LeapsError("coarse_to_fine changes what a step computes between stages, which a captured CUDA graph "
                         "cannot follow: use it without cuda_graph (fast=True then runs without the graph)")
    if cfg.fast and device.type == "cuda":
        # coarse to fine: no graph (new tensors at each stage), so no bf16 either (see below)
        graph = cfg.coarse_to_fine == 1
        cfg = replace(cfg, cuda_graph=graph, amp=cfg.amp or (FAST_AMP if graph else None))
    if cfg.amp == "fp32":
        cfg = replace(cfg, amp=None)
    if cfg.cuda_graph and device.type != "cuda":
        raise LeapsError(f"cuda_graph=True needs the model on a CUDA device, got {device.type}")
    if cfg.amp == "fp16" and device.type == "cpu":
        raise LeapsError("amp='fp16' runs on CUDA; on the CPU use amp='bf16' or None")
    if cfg.sync_every == 0:
        cfg = replace(cfg, sync_every=FAST_SYNC_EVERY if (cfg.fast or cfg.cuda_graph) else 1)
    return cfg


def autocast(cfg: InversionConfig, device: torch.device):
    if cfg.amp is None:
        return contextlib.nullcontext()
    # no cast cache under capture: a cached cast of x* would outlive the captured step
    return torch.autocast(device.type, dtype=AMP_DTYPES[cfg.amp], cache_enabled=not cfg.cuda_graph)


# --------------------------------------------------------------------------------------------
# the per-step schedule: learning rate and augmentation, drawn up front
# --------------------------------------------------------------------------------------------

def lr_factor(step: int, cfg: InversionConfig) -> float:
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return 1.0
    span = max(1, cfg.steps - cfg.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * (step - cfg.warmup_steps) / span))


def jitter_of(cfg: InversionConfig) -> int:
    return cfg.jitter if cfg.jitter is not None else max(1, round(0.13 * cfg.size))


@dataclass
class Schedule:
    """Per step: the lr, and the source index of every output row (H) and column (W) of x*."""

    lr: torch.Tensor        # steps, fp32
    rows: torch.Tensor      # steps x H, int64: output row i reads input row rows[s, i]
    cols: torch.Tensor      # steps x W, int64 (the flip folded in)
    lr_host: list[float]

    @classmethod
    def build(cls, cfg: InversionConfig, device: torch.device) -> "Schedule":
        # The same draws, in the same order, as a roll by (dy, dx) then a flip with p = 1/2.
        rng = random.Random(cfg.seed)
        jitter = jitter_of(cfg)
        h = w = cfg.size
        ar_h, ar_w = torch.arange(h), torch.arange(w)
        rows, cols = [], []
        for _ in range(cfg.steps):
            dy, dx = (rng.randint(-jitter, jitter), rng.randint(-jitter, jitter)) if jitter > 0 else (0, 0)
            flip = cfg.flip and rng.random() < 0.5
            rows.append((ar_h - dy) % h)
            src_w = (w - 1 - ar_w) if flip else ar_w
            cols.append((src_w - dx) % w)
        lr_host = [cfg.lr * lr_factor(s, cfg) for s in range(cfg.steps)]
        return cls(torch.tensor(lr_host, dtype=torch.float32, device=device),
                   torch.stack(rows).to(device), torch.stack(cols).to(device), lr_host)


def augment(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """x rolled and flipped as the schedule says: two gathers (their backward is a scatter)."""
    return x.index_select(3, rows).index_select(4, cols)


# --------------------------------------------------------------------------------------------
# fp16 loss scaling without host syncs
# --------------------------------------------------------------------------------------------

class LossScaler:
    """Dynamic loss scaling (as torch.amp.GradScaler) whose whole state stays on the device.

    ``scale(loss)`` before backward; ``unscale(grad)`` sets :attr:`found_inf` and divides the
    gradient in place; the fused Adam reads ``found_inf`` and skips the update; ``update()``
    grows or backs off the scale. No step reads anything back to the host.
    """

    def __init__(self, device, init_scale=2.0**16, growth=2.0, backoff=0.5, interval=2000):
        self.value = torch.full((), init_scale, dtype=torch.float32, device=device)
        self.growth_tracker = torch.zeros((), dtype=torch.int32, device=device)
        self.found_inf = torch.zeros((), dtype=torch.float32, device=device)
        self.growth, self.backoff, self.interval = growth, backoff, interval

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.value

    def unscale(self, grad: torch.Tensor) -> None:
        self.found_inf.zero_()
        torch._amp_foreach_non_finite_check_and_unscale_([grad], self.found_inf, self.value.reciprocal())

    def update(self) -> None:
        torch._amp_update_scale_(self.value, self.growth_tracker, self.found_inf,
                                 self.growth, self.backoff, self.interval)


# --------------------------------------------------------------------------------------------
# activation checkpointing of the networks' stages
# --------------------------------------------------------------------------------------------

def _has_norm(module: nn.Module) -> bool:
    return any(isinstance(m, NORM_LAYERS) for m in module.modules())


def _is_block_list(module: nn.Module) -> bool:
    """A container of blocks (not a block itself): a ModuleList, or a Sequential of blocks that
    has no normalisation layer of its own (a stem Sequential(conv, bn, relu) is one block)."""
    if isinstance(module, nn.ModuleList):
        return True
    return isinstance(module, nn.Sequential) and not any(isinstance(c, NORM_LAYERS) for c in module.children())


def stage_modules(model: nn.Module) -> list[nn.Module]:
    """The blocks of a network that hold normalisation layers, in order, for checkpointing.

    Containers of blocks are opened: pytorchvideo's ``blocks`` list gives a 3D R50's stem and
    residual stages, a toy net's ``stages`` its residual blocks, torchvision's video nets their
    stem and ``layer1..4``.
    """
    stages = []
    for child in model.children():
        if not _has_norm(child):
            continue
        stages.extend(stage_modules(child) if _is_block_list(child) else [child])
    return stages


@contextlib.contextmanager
def checkpointed(models: list[nn.Module]):
    """Runs every stage of ``models`` under non-reentrant activation checkpointing.

    Each stage's forward is wrapped for the duration of the block (and restored after), so its
    internal activations are recomputed in backward instead of kept. The taps' hooks fire again
    during that recomputation; the inverter drops the taps' references before backward and
    pauses them until it ends, so recomputed tensors are not recorded.
    """
    patched = []
    try:
        for model in models:
            for stage in stage_modules(model):
                own = stage.__dict__.get("forward")
                original = stage.forward

                def run(*args, _f=original, **kwargs):
                    if not torch.is_grad_enabled():
                        return _f(*args, **kwargs)
                    return checkpoint(_f, *args, use_reentrant=False, **kwargs)

                stage.forward = run
                patched.append((stage, own))
        yield
    finally:
        for stage, own in reversed(patched):
            if own is None:
                del stage.forward
            else:
                stage.forward = own
