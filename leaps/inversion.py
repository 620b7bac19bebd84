"""The inversion loop: optimise x* for eq. (4), or for a baseline objective.

    result = leaps.invert(model, "juggling balls", "stimulus.mp4", verifier=x3d_s)
    result.save("out/")            # mp4, gif, contact sheet, history.json

x* lives in the inverted model's normalised input space (B x 3 x T x S x S). Each step it is
randomly rolled and flipped, resized to the input geometry of each network, and the networks
are read at their normalisation layers through :mod:`leaps.taps`.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import losses
from .config import InversionConfig
from .errors import LeapsError, NonFiniteLossError, ShapeError
from .taps import BatchNormTaps, FeatureTaps

# Used when a model carries no registry spec: the Kinetics statistics of pytorchvideo and the
# 3D R50 preset of Table S1.
DEFAULT_MEAN = (0.45, 0.45, 0.45)
DEFAULT_STD = (0.225, 0.225, 0.225)
DEFAULT_PRESET = (1.0, 0.3, 7.5e-3)


# --------------------------------------------------------------------------------------------
# what the loop needs to know about a network
# --------------------------------------------------------------------------------------------

@dataclass
class Network:
    """A frozen network with its input normalisation and the geometry it is fed."""

    module: nn.Module
    mean: torch.Tensor               # 3, broadcastable as 1 x 3 x 1 x 1 x 1
    std: torch.Tensor
    geometry: tuple[int, int, int] | None   # (T, H, W) to interpolate to; None: as given
    spec: Any = None

    @classmethod
    def wrap(cls, module: nn.Module, spec: Any, override: tuple[int, int] | None) -> "Network":
        spec = _resolve_spec(module, spec)
        device = _device_of(module)
        mean = torch.tensor(spec.mean if spec else DEFAULT_MEAN, device=device).view(1, 3, 1, 1, 1)
        std = torch.tensor(spec.std if spec else DEFAULT_STD, device=device).view(1, 3, 1, 1, 1)
        if override is not None:
            geometry = (override[0], override[1], override[1])
        elif spec is not None and spec.fixed_size:
            geometry = (spec.frames, spec.size, spec.size)
        else:
            geometry = None
        return cls(module, mean, std, geometry, spec)

    def fit(self, x: torch.Tensor) -> torch.Tensor:
        """Resize B x 3 x T x H x W to this network's input geometry (trilinear)."""
        if self.geometry is None or tuple(x.shape[2:]) == self.geometry:
            return x
        return F.interpolate(x, size=self.geometry, mode="trilinear", align_corners=False)

    def input_shape(self, x_shape: Sequence[int]) -> tuple[int, int, int]:
        return self.geometry if self.geometry is not None else tuple(x_shape[2:])


def _resolve_spec(module: nn.Module, spec: Any):
    if spec is None:
        return getattr(module, "leaps_spec", None)
    if isinstance(spec, str):
        from .models import get_spec

        return get_spec(spec)
    return spec


def _device_of(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------

@dataclass
class InversionResult:
    """What an inversion produced.

    ``video``: B x 3 x T x H x W in [0, 1] (CPU); ``x``: the optimised x* in the model's
    normalised space; ``history``: per-step values of every loss term and the lr;
    ``snapshots``: (step, video) pairs; ``model_probs`` / ``verifier_probs``: softmax of the
    final videos (no augmentation); ``targets``: class index per video.
    """

    video: torch.Tensor
    x: torch.Tensor
    targets: list[int]
    history: dict[str, list[float]]
    snapshots: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    model_probs: torch.Tensor | None = None
    verifier_probs: torch.Tensor | None = None
    config: InversionConfig | None = None

    def top1(self, which: str = "model") -> float | None:
        """Fraction of videos the model (or verifier) classifies as their target."""
        probs = self.model_probs if which == "model" else self.verifier_probs
        if probs is None:
            return None
        return (probs.argmax(1) == torch.tensor(self.targets)).float().mean().item()

    def frame_statistics(self) -> dict[str, list[list[float]]]:
        """SSIM and PSNR of consecutive frames of each video (Fig. 7); empty for one frame."""
        from .metrics import frame_psnr, frame_ssim

        if self.video.shape[2] < 2:
            return {"frame_ssim": [], "frame_psnr": []}
        return {
            "frame_ssim": [frame_ssim(v).tolist() for v in self.video],
            "frame_psnr": [frame_psnr(v).tolist() for v in self.video],
        }

    def save(self, out_dir: str | Path, stem: str = "leaps", fps: int = 8) -> dict[str, Path]:
        """Write the videos (mp4, gif), a contact sheet and history.json; returns the paths."""
        from .video import save_outputs, write_contact_sheet
        from ._atomic import atomic_write_text

        out = Path(out_dir)
        paths = save_outputs(self.video, out, stem=stem, fps=fps)
        for step, snap in self.snapshots:
            paths[f"snapshot_{step}"] = out / f"{stem}_step{step:05d}.png"
            write_contact_sheet(snap, paths[f"snapshot_{step}"])
        summary = {
            "targets": self.targets,
            "top1_model": self.top1("model"),
            "top1_verifier": self.top1("verifier"),
            **self.frame_statistics(),
            "history": self.history,
        }
        paths["history"] = out / f"{stem}_history.json"
        atomic_write_text(paths["history"], json.dumps(summary, indent=1))
        return paths


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------

def _as_list(value) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _resolve_targets(target, spec, num_classes: int) -> list[int]:
    from .classes import kinetics400_classes, resolve_target

    names = getattr(spec, "class_names", None) if spec is not None else None
    if names is None and num_classes == 400:
        names = kinetics400_classes()
    return [resolve_target(t, class_names=names, num_classes=num_classes) for t in _as_list(target)]


def _load_stimulus(item, frames: int, size: int) -> torch.Tensor:
    """One stimulus as a 3 x T x S x S tensor in [0, 1]: a path is read, a tensor resized."""
    if isinstance(item, (str, Path)):
        from .video import read_video

        return read_video(item, frames, size)
    if not isinstance(item, torch.Tensor):
        raise LeapsError(f"a stimulus must be a video path or a 3 x T x H x W tensor, got {type(item).__name__}")
    if item.dim() != 4 or item.shape[0] != 3:
        raise ShapeError(f"a stimulus tensor must be 3 x T x H x W in [0, 1], got {tuple(item.shape)}")
    video = item.detach().float()
    if tuple(video.shape[1:]) != (frames, size, size):
        video = F.interpolate(video[None], size=(frames, size, size), mode="trilinear", align_corners=False)[0]
    return video


def _stimulus_groups(stimulus, batch: int) -> list[list]:
    """Per target, the list of its stimuli (several stimuli: multi-stimuli priming, S5).

    ``stimulus`` may be one stimulus (shared by every target), a B x 3 x T x H x W tensor, or a
    list with one entry per target where each entry is a stimulus or a list of stimuli.
    """
    if isinstance(stimulus, torch.Tensor) and stimulus.dim() == 5:
        stimulus = list(stimulus)
    if not isinstance(stimulus, (list, tuple)):
        return [[stimulus]] * batch
    if batch == 1 and len(stimulus) > 1 and not any(isinstance(s, (list, tuple)) for s in stimulus):
        return [list(stimulus)]  # one target primed by several stimuli
    if len(stimulus) == 1:
        return [_as_list(stimulus[0])] * batch
    if len(stimulus) != batch:
        raise LeapsError(f"got {len(stimulus)} stimuli for {batch} targets: give one per target or one for all")
    return [_as_list(s) for s in stimulus]


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------

def _lr_factor(step: int, cfg: InversionConfig) -> float:
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return 1.0
    span = max(1, cfg.steps - cfg.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * (step - cfg.warmup_steps) / span))


def _augment(x: torch.Tensor, cfg: InversionConfig, rng: random.Random) -> torch.Tensor:
    """DeepInversion augmentation: random roll along H and W, random horizontal flip."""
    jitter = cfg.jitter if cfg.jitter is not None else max(1, round(0.13 * cfg.size))
    if jitter > 0:
        dy, dx = rng.randint(-jitter, jitter), rng.randint(-jitter, jitter)
        x = torch.roll(x, shifts=(dy, dx), dims=(3, 4))
    if cfg.flip and rng.random() < 0.5:
        x = torch.flip(x, dims=(4,))
    return x


class _Objective:
    """Computes the terms of the chosen objective for one batch of x*."""

    def __init__(self, cfg, model: Network, verifier: Network | None, targets, stimulus_feats, layer_count, preset):
        self.cfg = cfg
        self.model = model
        self.verifier = verifier
        self.targets = targets
        self.stimulus_feats = stimulus_feats
        self.layer_count = layer_count
        lam1, lamL, r = preset
        self.weights = losses.linear_layer_weights(layer_count, lam1, lamL) if layer_count else []
        self.r = r
        # Decided once: torch.equal on device tensors would sync the host on every step.
        self.same_normalisation = verifier is not None and _same_normalisation(model, verifier)

    def __call__(self, x: torch.Tensor, model_taps: FeatureTaps, verifier_taps: BatchNormTaps | None):
        cfg = self.cfg
        terms: dict[str, torch.Tensor] = {}
        x_model = self.model.fit(x)
        logits = self.model.module(x_model)
        if cfg.objective == "am":
            terms["logit"] = -logits.gather(1, self.targets[:, None]).mean()
            terms["l2"] = cfg.l2_weight * x.pow(2).mean()
            return terms
        terms["ce"] = F.cross_entropy(logits, self.targets) if cfg.use_ce or cfg.objective == "deepdream" else None
        if cfg.objective == "deepdream":
            terms["tv"] = cfg.tv_weight * losses.total_variation(x)
            terms["l2"] = cfg.l2_weight * x.pow(2).mean()
            return {k: v for k, v in terms.items() if v is not None}
        if cfg.use_priming:
            n = self.layer_count
            terms["prim"] = losses.priming_loss_from_activations(
                model_taps.activations()[:n], self.stimulus_feats, self.weights, cfg.distance,
                channel_dims=model_taps.channel_dims()[:n], backend=cfg.backend,
            )
        if cfg.use_coherence:
            terms["coh"] = self.r * self._coherence(model_taps, x_model.shape)
        if cfg.use_feat and self.verifier is not None:
            x_verifier = x if self.same_normalisation else _renormalise(x, self.model, self.verifier)
            self.verifier.module(self.verifier.fit(x_verifier))
            means, variances = verifier_taps.running_stats()
            terms["feat"] = self.r * losses.bn_statistics_loss(
                verifier_taps.activations(), means, variances, backend=cfg.backend
            )
        return {k: v for k, v in terms.items() if v is not None}

    def _coherence(self, taps: FeatureTaps, input_shape) -> torch.Tensor:
        _, module, z = taps.last()
        grid = self.cfg.token_grid
        spec = self.model.spec
        if grid is None and z.dim() == 3 and spec is not None and getattr(spec, "token_grid", None):
            grid = spec.token_grid(tuple(input_shape[2:]))
        if grid is None and z.dim() != 5:
            raise LeapsError(
                f"cannot find the frames in the last layer's input of shape {tuple(z.shape)}: pass "
                "token_grid=(T', H'W') for transformer tokens, or disable temporal coherence"
            )
        channels_last = grid is None and isinstance(module, nn.LayerNorm)
        return losses.temporal_coherence_loss(
            z, self.cfg.margin, token_grid=grid, channels_last=channels_last, backend=self.cfg.backend
        )


def _same_normalisation(a: Network, b: Network) -> bool:
    return torch.equal(a.mean, b.mean) and torch.equal(a.std, b.std)


def _renormalise(x: torch.Tensor, src: Network, dst: Network) -> torch.Tensor:
    """Move x from src's normalised space to dst's (through pixel space)."""
    if _same_normalisation(src, dst):
        return x
    return (x * src.std + src.mean - dst.mean) / dst.std


@torch.no_grad()
def _stimulus_features(model: Network, groups, cfg, device) -> tuple[list[torch.Tensor], int]:
    """Channel means of every tapped layer for each target's stimuli (mean over its stimuli)."""
    per_target: list[list[torch.Tensor]] = []
    cache: dict[int, list[torch.Tensor]] = {}
    with FeatureTaps(model.module) as taps:
        for group in groups:
            if id(group) not in cache:
                videos = torch.stack([_load_stimulus(s, cfg.frames, cfg.size) for s in group]).to(device)
                model.module(model.fit((videos - model.mean) / model.std))
                cache[id(group)] = [m.mean(0, keepdim=True) for m in taps.channel_means()]
            per_target.append(cache[id(group)])
    layers = len(per_target[0])
    count = max(1, math.floor(cfg.priming_fraction * layers))
    feats = [torch.cat([t[l] for t in per_target]) for l in range(count)]
    return feats, count


def invert(
    model: nn.Module,
    target,
    stimulus=None,
    verifier: nn.Module | None = None,
    config: InversionConfig | None = None,
    *,
    spec=None,
    verifier_spec=None,
    **options,
) -> InversionResult:
    """Synthesise videos of ``target`` from ``model`` with LEAPS, eq. (4); see :func:`prepare`."""
    return prepare(model, target, stimulus, verifier, config, spec=spec, verifier_spec=verifier_spec, **options).run()


def prepare(
    model: nn.Module,
    target,
    stimulus=None,
    verifier: nn.Module | None = None,
    config: InversionConfig | None = None,
    *,
    spec=None,
    verifier_spec=None,
    **options,
) -> Inverter:
    """Set up an inversion (stimulus features, x*, optimiser) without running it.

    Synthesise videos of ``target`` from ``model`` with LEAPS, eq. (4).

    model:     a frozen video classifier (e.g. from :func:`leaps.models.build_model`).
    target:    a class index or name, or a list of them: one video per target, in one batch.
    stimulus:  a video path or a 3 x T x H x W tensor in [0, 1]; a list with one per target; a
               list of several for one target (multi-stimuli priming, Section S5). Required
               when priming is on.
    verifier:  a BatchNorm network for R_feat (X3D-S in the paper); None disables R_feat.
    config:    :class:`InversionConfig`; keyword ``options`` override its fields.
    spec, verifier_spec: registry names or specs giving normalisation, geometry and presets;
               default: the ``leaps_spec`` attribute that :func:`build_model` sets.
    """
    cfg = (config or InversionConfig()).replace(**options).validate()
    device = _device_of(model)
    net = Network.wrap(model, spec, cfg.model_input)
    ver = Network.wrap(verifier, verifier_spec, cfg.verifier_input) if verifier is not None else None
    preset = _preset(cfg, net.spec)
    num_classes = _num_classes(model, net, cfg, device)
    targets = torch.tensor(_resolve_targets(target, net.spec, num_classes), device=device)
    batch = len(targets)
    leaps_objective = cfg.objective == "leaps"

    stimulus_feats, layer_count = [], 0
    if leaps_objective and cfg.use_priming:
        if stimulus is None:
            raise LeapsError("priming needs a stimulus video of the target class (or use_priming=False)")
        stimulus_feats, layer_count = _stimulus_features(net, _stimulus_groups(stimulus, batch), cfg, device)

    objective = _Objective(cfg, net, ver if leaps_objective and cfg.use_feat else None, targets, stimulus_feats, layer_count, preset)
    return Inverter(cfg, net, ver, objective, targets, device)


def _preset(cfg: InversionConfig, spec) -> tuple[float, float, float]:
    p = getattr(spec, "preset", None)
    base = (p.lambda_first, p.lambda_last, p.r) if p is not None else DEFAULT_PRESET
    return (
        base[0] if cfg.lambda_first is None else cfg.lambda_first,
        base[1] if cfg.lambda_last is None else cfg.lambda_last,
        base[2] if cfg.r is None else cfg.r,
    )


@torch.no_grad()
def _num_classes(model: nn.Module, net: Network, cfg: InversionConfig, device) -> int:
    """Number of classes: recorded by build_model, or read off one forward of a blank video."""
    known = getattr(model, "leaps_num_classes", None)
    if isinstance(known, int):
        return known
    probe = torch.zeros(1, 3, *net.input_shape((1, 3, cfg.frames, cfg.size, cfg.size)), device=device)
    out = model(probe)
    if out.dim() != 2:
        raise ShapeError(f"the model must return B x num_classes logits, got {tuple(out.shape)}")
    return out.shape[1]


class Inverter:
    """The optimisation state of one inversion, advanced one Adam step at a time.

    ``with Inverter(...) as inv: inv.step()`` keeps the taps' hooks registered for the block;
    :meth:`run` does the whole loop with a progress bar; :meth:`result` packs the outcome.
    Benchmarks time :meth:`step` directly.
    """

    def __init__(self, cfg: InversionConfig, net: Network, ver: Network | None, objective: "_Objective", targets, device):
        self.cfg, self.net, self.ver, self.objective, self.targets = cfg, net, ver, objective, targets
        gen = torch.Generator(device="cpu")
        if cfg.seed is not None:
            gen.manual_seed(cfg.seed)
        self.rng = random.Random(cfg.seed)
        x = torch.randn(len(targets), 3, cfg.frames, cfg.size, cfg.size, generator=gen) * cfg.init_scale
        self.low, self.high = (0 - net.mean) / net.std, (1 - net.mean) / net.std
        self.x = x.to(device)
        self._clip()
        self.x.requires_grad_(True)
        self.optimiser = torch.optim.Adam([self.x], lr=cfg.lr, betas=cfg.betas)
        self.history: dict[str, list[float]] = {"loss": [], "lr": []}
        self.snapshots: list[tuple[int, torch.Tensor]] = []
        self.steps_done = 0
        self.model_taps = FeatureTaps(net.module)
        self.verifier_taps = BatchNormTaps(objective.verifier.module) if objective.verifier is not None else None

    def __enter__(self) -> "Inverter":
        self.model_taps.__enter__()
        if self.verifier_taps is not None:
            self.verifier_taps.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.model_taps.__exit__(*exc)
        if self.verifier_taps is not None:
            self.verifier_taps.__exit__(*exc)

    def _clip(self) -> None:
        if self.cfg.clip:
            with torch.no_grad():
                self.x.copy_(torch.max(torch.min(self.x, self.high), self.low))

    def pixels(self, t: torch.Tensor | None = None) -> torch.Tensor:
        """x* (or ``t``) mapped back to the [0, 1] pixel range, on the CPU."""
        t = self.x if t is None else t
        return (t.detach() * self.net.std + self.net.mean).clamp(0, 1).cpu()

    def step(self) -> float:
        """One update of x*: augment, forward both networks, eq. (4), backward, Adam, clip."""
        cfg, step = self.cfg, self.steps_done
        lr = cfg.lr * _lr_factor(step, cfg)
        for group in self.optimiser.param_groups:
            group["lr"] = lr
        self.optimiser.zero_grad(set_to_none=True)
        terms = self.objective(_augment(self.x, cfg, self.rng), self.model_taps, self.verifier_taps)
        loss = sum(terms.values())
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"the loss became {value} at step {step} (terms: "
                + ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
                + "); try a lower lr or a smaller r",
                step=step,
                last_finite=self.pixels(),
                history=self.history,
            )
        loss.backward()
        self.optimiser.step()
        self._clip()
        self.history["loss"].append(value)
        self.history["lr"].append(lr)
        for k, v in terms.items():
            self.history.setdefault(k, []).append(float(v.detach()))
        self.model_taps.clear()
        if self.verifier_taps is not None:
            self.verifier_taps.clear()
        self.steps_done += 1
        if cfg.snapshot_every and self.steps_done % cfg.snapshot_every == 0:
            self.snapshots.append((self.steps_done, self.pixels()))
        return value

    def run(self) -> InversionResult:
        from tqdm.auto import tqdm

        with self:
            bar = tqdm(range(self.cfg.steps), disable=not self.cfg.progress, desc=self.cfg.objective, unit="step", leave=False)
            for i in bar:
                value = self.step()
                if i % 10 == 0:
                    bar.set_postfix(loss=f"{value:.3f}")
            bar.close()
        return self.result()

    def result(self) -> InversionResult:
        final = self.x.detach()
        ver = self.ver
        return InversionResult(
            video=self.pixels(final),
            x=final.cpu(),
            targets=self.targets.tolist(),
            history=self.history,
            snapshots=self.snapshots,
            model_probs=_probs(self.net, final),
            verifier_probs=_probs(ver, _renormalise(final, self.net, ver)) if ver is not None else None,
            config=self.cfg,
        )


@torch.no_grad()
def _probs(net: Network, x: torch.Tensor) -> torch.Tensor:
    return net.module(net.fit(x)).float().softmax(1).cpu()
