"""The inversion loop: optimise x* for eq. (4), or for a baseline objective.

    result = leaps.invert(model, "juggling balls", "stimulus.mp4", verifier=x3d_s)
    result.save("out/")            # mp4, gif, contact sheet, history.json

x* lives in the inverted model's normalised input space (B x 3 x T x S x S). Each step it is
randomly rolled and flipped, resized to the input geometry of each network, and the networks
are read at their normalisation layers through :mod:`leaps.taps`. What is minimised (the terms,
their weights and their sum) is the :mod:`leaps.objective`; this module wraps the networks,
loads the stimuli, and runs the loop (:class:`Inverter`).
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import augment, engine, parameterization
from .config import InversionConfig
from .errors import JudgeError, LeapsError, NonFiniteLossError, ShapeError
from .objective import TOTAL, Objective, build_objective
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
        if getattr(module, "leaps_judge", False) or getattr(spec, "judge", False):
            # a judge scores the result: inside the objective it would stop being independent
            name = getattr(spec, "name", type(module).__name__)
            raise JudgeError(f"{name} is a judge: it scores synthesised videos and cannot be inverted "
                             "or used as the verifier")
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

    def same_normalisation(self, other: "Network") -> bool:
        return torch.equal(self.mean, other.mean) and torch.equal(self.std, other.std)

    def to_normalisation_of(self, x: torch.Tensor, other: "Network") -> torch.Tensor:
        """Move x from this network's normalised space to ``other``'s (through pixel space)."""
        return (x * self.std + self.mean - other.mean) / other.std


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

def contact_sheet_labels(targets, model_probs, verifier_probs, class_names) -> list[str]:
    """One label per row of a contact sheet: the target, and the model's / verifier's confidence in it.

    A network whose top-1 is another class has that class named after its confidence.
    """
    def name(c: int) -> str:
        return class_names[c] if class_names and 0 <= c < len(class_names) else f"class {c}"

    labels = [[name(t)] for t in targets]
    for who, probs in (("model", model_probs), ("verifier", verifier_probs)):
        if probs is None:
            continue
        for lines, t, p in zip(labels, targets, probs):
            top = int(p.argmax())
            lines.append(f"{who} {float(p[t]):.2f}" + ("" if top == t else f" -> {name(top)}"))
    return ["\n".join(lines) for lines in labels]


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
    # Registry specs of the networks (names, class names, preset) for save() and the report.
    model_spec: Any = None
    verifier_spec: Any = None
    # What primed each video (paths, or None for tensors), recorded by save() for the report.
    stimuli: list | None = None
    # Entries save() adds to {stem}_run.json (the demo's command, stimulus seeds, judges' scores).
    run_info: dict = field(default_factory=dict)

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

    REPR_MAX_VIDEOS = 16  # notebook view: videos shown, long side in px (not dataclass fields)
    REPR_SIZE = 112

    def class_names(self, which: str = "model") -> list[str] | None:
        """The class names of the model (or verifier): from its spec, else Kinetics-400 for 400
        classes, else None."""
        spec = self.model_spec if which == "model" else self.verifier_spec
        names = getattr(spec, "class_names", None)
        if names:
            return list(names)
        probs = self.model_probs if which == "model" else self.verifier_probs
        if probs is not None and probs.shape[-1] == 400:
            from .classes import kinetics400_classes

            return list(kinetics400_classes())
        return None

    def top5(self, which: str = "model") -> list[list[dict]] | None:
        """Per video, the 5 most probable classes of the model (or verifier): index, name, prob."""
        probs = self.model_probs if which == "model" else self.verifier_probs
        if probs is None:
            return None
        from .metrics import top_k_predictions

        return top_k_predictions(probs, self.class_names(which))

    def target_names(self) -> list[str | None]:
        names = self.class_names("model")
        return [names[t] if names and 0 <= t < len(names) else None for t in self.targets]

    def save(self, out_dir: str | Path, stem: str = "leaps", fps: int = 8) -> dict[str, Path]:
        """Write the videos (mp4, gif), a contact sheet and history.json; returns the paths.

        history.json holds the targets, top-1s, frame statistics and loss history, and for the
        report (``leaps report``): target names, each video's top-5 of the model and verifier,
        the config with the preset it resolved to, the networks and the environment.
        """
        from ._atomic import atomic_write_text
        from .video import run_metadata, save_outputs, write_contact_sheet

        out = Path(out_dir)
        labels = contact_sheet_labels(self.targets, self.model_probs, self.verifier_probs, self.class_names())
        metadata = run_metadata(self.config, model=getattr(self.model_spec, "name", None),
                                verifier=getattr(self.verifier_spec, "name", None), targets=self.targets)
        metadata.update(self.run_info)
        paths = save_outputs(self.video, out, stem=stem, fps=fps, labels=labels, metadata=metadata)
        for step, snap in self.snapshots:
            paths[f"snapshot_{step}"] = out / f"{stem}_step{step:05d}.png"
            write_contact_sheet(snap, paths[f"snapshot_{step}"])
        summary = {
            "targets": self.targets,
            "top1_model": self.top1("model"),
            "top1_verifier": self.top1("verifier"),
            **self.frame_statistics(),
            "history": self.history,
            "target_names": self.target_names(),
            "top5_model": self.top5("model"),
            "top5_verifier": self.top5("verifier"),
            "model": self._spec_summary(self.model_spec),
            "verifier": self._spec_summary(self.verifier_spec),
            "config": self._config_summary(self.config),
            "preset": self._resolved_preset(),
            "stimuli": [str(s) if isinstance(s, (str, Path)) else None for s in self.stimuli] if self.stimuli else None,
            "files": {key: path.name for key, path in paths.items()},
            "fps": fps,
            "environment": self._environment(),
        }
        paths["history"] = out / f"{stem}_history.json"
        atomic_write_text(paths["history"], json.dumps(summary, indent=1, default=str))
        return paths

    def _resolved_preset(self) -> dict | None:
        """The (lambda_1, lambda_L, r) the objective used: the config's values over the model's preset."""
        if self.config is None:
            return None
        lambda_first, lambda_last, r = _preset(self.config, self.model_spec)
        spec_name = getattr(self.model_spec, "name", None)
        source = f"preset of {spec_name}" if getattr(self.model_spec, "preset", None) is not None else "library default"
        overridden = [k for k in ("lambda_first", "lambda_last", "r") if getattr(self.config, k) is not None]
        return {"lambda_first": lambda_first, "lambda_last": lambda_last, "r": r, "source": source,
                "overridden": overridden}

    def _repr_html_(self) -> str:
        """Notebook view: each video as a small animated gif (inline) with its target and top-1 lines."""
        import base64
        import html

        names = self.target_names()
        model_top = self.top5("model") or []
        verifier_top = self.top5("verifier") or []
        cells = []
        shown = min(len(self.video), self.REPR_MAX_VIDEOS)
        for i in range(shown):
            gif = base64.b64encode(self._small_gif(self.video[i])).decode("ascii")
            target = names[i] if names[i] is not None else f"class {self.targets[i]}"
            lines = [f"<b>{html.escape(str(target))}</b>"]
            for label, top in (("model", model_top), ("verifier", verifier_top)):
                if i < len(top) and top[i]:
                    best = top[i][0]
                    name = best["name"] if best["name"] is not None else f"class {best['index']}"
                    mark = "&#10003;" if best["index"] == self.targets[i] else "&#10007;"
                    lines.append(f"{label} top-1: {html.escape(str(name))} ({100 * best['prob']:.1f}%) {mark}")
            cells.append(f'<div style="display:inline-block;margin:4px;vertical-align:top;font-size:12px">'
                         f'<img src="data:image/gif;base64,{gif}" style="width:112px;image-rendering:pixelated"><br>'
                         + "<br>".join(lines) + "</div>")
        summary = []
        for label in ("model", "verifier"):
            value = self.top1(label)
            if value is not None:
                summary.append(f"top-1 of the {label}: {100 * value:.1f}%")
        more = f" (first {shown} of {len(self.video)} videos shown)" if shown < len(self.video) else ""
        steps = len(self.history.get(TOTAL, []))
        header = (f"<div><b>InversionResult</b>: {len(self.video)} video(s), {steps} steps; "
                  f"{'; '.join(summary)}{more}</div>")
        return f"<div>{header}{''.join(cells)}</div>"

    @staticmethod
    def _small_gif(video: torch.Tensor) -> bytes:
        """One 3 x T x H x W video in [0, 1] as gif bytes, at most 112 px on its long side."""
        import tempfile

        from .video import write_video

        if max(video.shape[-2:]) > InversionResult.REPR_SIZE:
            scale = InversionResult.REPR_SIZE / max(video.shape[-2:])
            size = (video.shape[1], max(2, round(video.shape[2] * scale)), max(2, round(video.shape[3] * scale)))
            video = F.interpolate(video[None].float(), size=size, mode="trilinear", align_corners=False)[0].clamp(0, 1)
        with tempfile.TemporaryDirectory() as tmp:
            return write_video(video, Path(tmp) / "video.gif", fps=8).read_bytes()

    @staticmethod
    def _spec_summary(spec) -> dict | None:
        if spec is None:
            return None
        return {"name": getattr(spec, "name", None), "title": getattr(spec, "title", None),
                "frames": getattr(spec, "frames", None), "size": getattr(spec, "size", None)}

    @staticmethod
    def _config_summary(config) -> dict | None:
        import dataclasses

        return dataclasses.asdict(config) if config is not None else None

    @staticmethod
    def _environment() -> dict:
        """Versions and hardware that produced the result (for the report's environment table)."""
        import importlib.metadata
        import platform

        def version(name):
            try:
                return importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                return None

        return {
            "leaps": version("leaps"),
            "torch": torch.__version__,
            "torchvision": version("torchvision"),
            "numpy": version("numpy"),
            "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "python": platform.python_version(),
            "platform": platform.platform(),
        }


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


def _load_stimulus(item, frames: int, size: int, name: str | None = None) -> torch.Tensor:
    """One stimulus as a 3 x T x S x S tensor in [0, 1]: a path is read, a tensor checked and resized.

    ``name`` (e.g. "stimulus 2") is how errors refer to a tensor stimulus.
    """
    from .video import check_stimulus, read_video

    if isinstance(item, (str, Path)):
        return read_video(item, frames, size)
    if name is None:
        name = f"stimulus tensor of shape {tuple(item.shape)}" if isinstance(item, torch.Tensor) else "a stimulus"
    video = check_stimulus(item, name).detach().float()
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

@torch.no_grad()
def _stimulus_features(model: Network, groups, cfg, device, mirror: bool = False) -> list[torch.Tensor]:
    """Channel means of the primed layers (the first floor(priming_fraction L)) for each target's
    stimuli (mean over its stimuli): one B x C_l tensor per primed layer. ``cfg.priming_per_frame``:
    per-frame means, B x C_l T_l; ``mirror``: of the stimuli flipped left-right."""
    from .losses import channel_means, frames_as_channels

    per_target: list[list[torch.Tensor]] = []
    cache: dict[int, list[torch.Tensor]] = {}
    with FeatureTaps(model.module) as taps:
        for g, group in enumerate(groups):
            if id(group) not in cache:
                names = [f"stimulus {g}" if len(group) == 1 else f"stimulus {g}.{j}" for j in range(len(group))]
                videos = [_load_stimulus(s, cfg.frames, cfg.size, n) for s, n in zip(group, names)]
                videos = torch.stack(videos).to(device)
                if mirror:
                    videos = videos.flip(-1)
                model.module(model.fit((videos - model.mean) / model.std))
                feats, dims = taps.features(), taps.feature_dims()
                if cfg.priming_per_frame:
                    feats, dims = [frames_as_channels(z, d) for z, d in zip(feats, dims)], [1] * len(feats)
                cache[id(group)] = [channel_means(z, d).mean(0, keepdim=True) for z, d in zip(feats, dims)]
            per_target.append(cache[id(group)])
    layers = len(per_target[0])
    count = max(1, math.floor(cfg.priming_fraction * layers))
    return [torch.cat([t[l] for t in per_target]) for l in range(count)]


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

    stimulus_feats, mirror_feats = [], None
    if leaps_objective and cfg.use_priming:
        if stimulus is None:
            raise LeapsError("priming needs a stimulus video of the target class (or use_priming=False)")
        groups = _stimulus_groups(stimulus, batch)
        stimulus_feats = _stimulus_features(net, groups, cfg, device)
        if cfg.priming_mirror:
            mirror_feats = _stimulus_features(net, groups, cfg, device, mirror=True)

    extras = _extra_networks(cfg.extra_models, device)
    objective = build_objective(cfg, net, ver, targets, stimulus_feats, preset, extras, mirror_feats)
    return Inverter(cfg, net, ver, objective, targets, device)


def _extra_networks(names: Sequence[str], device) -> list[Network]:
    """The registered models of ``extra_models`` (pretrained weights), frozen, on ``device``."""
    if not names:
        return []
    from .models import build_model

    return [Network.wrap(build_model(name, pretrained=True).to(device), name, None) for name in names]


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

    ``with Inverter(...) as inv: inv.step()`` keeps the taps' hooks (and stage checkpointing)
    in place for the block; :meth:`run` does the whole loop with a progress bar; :meth:`result`
    packs the outcome. Benchmarks time :meth:`step` directly.

    One step (:meth:`_step_body`) needs nothing from the host: it reads its lr and augmentation
    through a device step counter, logs its loss terms to a device buffer and updates x* with
    the fused Adam. Eagerly it runs as is; with ``cuda_graph`` it is captured once, after a few
    warm-up steps, and replayed. The host reads the log every ``sync_every`` steps, which is
    also when NaN/inf is detected.
    """

    def __init__(self, cfg: InversionConfig, net: Network, ver: Network | None, objective: Objective, targets, device):
        cfg = engine.resolve_engine(cfg, device)
        self.cfg, self.net, self.ver, self.objective, self.targets = cfg, net, ver, objective, targets
        self.device = device
        gen = torch.Generator(device="cpu")
        if cfg.seed is not None:
            gen.manual_seed(cfg.seed)
        # what Adam updates (x* itself, or its spectrum) and how x* is made of it
        self.param = parameterization.build(cfg, net.mean, net.std, len(targets), gen, device)
        self.low, self.high = (0 - net.mean) / net.std, (1 - net.mean) / net.std
        if cfg.channels_last:
            if cfg.param == "pixel":
                self.param.leaf = self.param.leaf.contiguous(memory_format=torch.channels_last_3d)
            for network in (net, objective.verifier):
                if network is not None:
                    network.module.to(memory_format=torch.channels_last_3d)
        self._clip()
        self.param.leaf.requires_grad_(True)
        self.schedule = engine.Schedule.build(cfg, device)
        self.transforms = augment.Transforms.build(cfg, device) if augment.active(cfg) else None
        self._stage_starts = parameterization.stage_starts(cfg.steps, cfg.coarse_to_fine)
        self.lr = self.schedule.lr[0].clone()  # the tensor Adam reads; each step copies its row in
        self.optimiser = self._adam()
        self.scaler = engine.LossScaler(device) if cfg.amp == "fp16" else None
        self.term_names = list(objective.names)
        self._log = torch.full((cfg.steps, 1 + len(self.term_names)), math.nan, device=device)
        self._step_t = torch.zeros((), dtype=torch.long, device=device)
        self._forward = self._loss_terms
        if cfg.compile:
            self._forward = torch.compile(self._loss_terms, dynamic=False,
                                          backend=cfg.compile if isinstance(cfg.compile, str) else "inductor")
        self._graph = None
        self._side_stream = torch.cuda.Stream(device) if cfg.cuda_graph else None
        self.history: dict[str, list[float]] = {TOTAL: [], "lr": []}
        self.snapshots: list[tuple[int, torch.Tensor]] = []
        self.steps_done = 0
        self._synced = 0
        with torch.no_grad():
            self._last_good = self.x.detach().clone()
        self.model_taps = FeatureTaps(net.module)
        self.verifier_taps = BatchNormTaps(objective.verifier.module) if objective.verifier is not None else None
        self._stack = None

    # -- context: taps and checkpointing --------------------------------------------------------

    def __enter__(self) -> "Inverter":
        stack = contextlib.ExitStack()
        stack.enter_context(self.model_taps)
        if self.verifier_taps is not None:
            stack.enter_context(self.verifier_taps)
        if self.cfg.checkpoint:
            nets = [self.net.module] + ([self.objective.verifier.module] if self.objective.verifier is not None else [])
            stack.enter_context(engine.checkpointed(nets))
        self._stack = stack
        return self

    def __exit__(self, *exc) -> None:
        if self._stack is not None:
            self._stack.__exit__(*exc)
            self._stack = None

    def _taps(self):
        return [t for t in (self.model_taps, self.verifier_taps) if t is not None]

    # -- one step -------------------------------------------------------------------------------

    def _adam(self) -> torch.optim.Adam:
        return torch.optim.Adam(self.param.tensors, lr=self.lr, betas=self.cfg.betas, fused=True,
                                capturable=self.cfg.cuda_graph)

    @property
    def x(self) -> torch.Tensor:
        """x* in the model's normalised space, B x 3 x T x S x S: the optimised tensor itself with the
        pixel parameterisation at full resolution, else computed from the parameters (differentiably)."""
        return self.param.video()

    def _clip(self) -> None:
        self.param.project()

    def pixels(self, t: torch.Tensor | None = None) -> torch.Tensor:
        """x* (or ``t``) mapped back to the [0, 1] pixel range, on the CPU."""
        if t is None:
            with torch.no_grad():
                t = self.x
        return (t.detach() * self.net.std + self.net.mean).clamp(0, 1).cpu()

    def _loss_terms(self, x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                    step: torch.Tensor | None = None) -> torch.Tensor:
        """[total, term_1, ...] of the objective (eq. (4) or a baseline) for x* augmented by (rows, cols)
        and, when ``step`` is given and transformation robustness is on, by that step's transforms."""
        with engine.autocast(self.cfg, self.device):
            x = engine.augment(x, rows, cols)
            if step is not None and self.transforms is not None:
                x = self.transforms(x, step)
            terms = self.objective(x, self.model_taps, self.verifier_taps)
        return self.objective.stack(terms)

    @torch.no_grad()
    def inference(self) -> torch.Tensor:
        """The objective's terms for the current x* (no augmentation, no gradient, no update):
        ``[total, term_1, ...]`` in the order of :attr:`term_names`. Benchmarks time it as the
        forward pass."""
        full = torch.arange(self.cfg.size, device=self.device)
        try:
            return self._loss_terms(self.x, full, full)
        finally:
            for taps in self._taps():
                taps.clear()

    def _step_body(self) -> None:
        step = self._step_t.view(1)
        self.lr.copy_(self.schedule.lr.index_select(0, step).view(()))
        rows = self.schedule.rows.index_select(0, step).view(-1)
        cols = self.schedule.cols.index_select(0, step).view(-1)
        if self.transforms is None:
            values = self._forward(self.x, rows, cols)
        else:
            values = self._forward(self.x, rows, cols, step)
        self._log.index_copy_(0, step, values.detach().view(1, -1))
        loss = values[0]
        for taps in self._taps():
            # Autograd keeps what backward needs; dropping the taps' references now lets
            # checkpointed stages free the rest. Their hooks re-run in the recomputation: ignore.
            taps.clear()
            taps.recording = False
        try:
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale(self.param.leaf.grad)
                self.optimiser.found_inf = self.scaler.found_inf  # the fused Adam skips the update
            else:
                loss.backward()
        finally:
            for taps in self._taps():
                taps.recording = True
        self.optimiser.step()
        if self.scaler is not None:
            self.scaler.update()
        self._clip()
        self._step_t.add_(1)

    def _eager_step(self) -> None:
        self.optimiser.zero_grad(set_to_none=True)
        self._step_body()

    def _capture(self) -> None:
        """Record one step as a CUDA graph; later steps replay it (static shapes and addresses)."""
        self.optimiser.zero_grad(set_to_none=True)  # backward in the graph writes a static grad
        graph = torch.cuda.CUDAGraph()
        # relaxed: the fused kernels' first use of an address set uploads a small pointer table
        with torch.cuda.graph(graph, capture_error_mode="relaxed"):
            self._step_body()
        self._graph = graph

    def step(self) -> float | None:
        """One update of x*. Returns the loss when the host read it back this step (every
        ``sync_every`` steps and at the last one), else None (the step ran ahead on the device)."""
        cfg = self.cfg
        if self.steps_done >= cfg.steps:
            raise LeapsError(f"all {cfg.steps} steps are done")
        if self.steps_done in self._stage_starts:  # coarse to fine: the next resolution
            if self.param.next_stage():  # a new leaf: Adam starts afresh on it
                self.optimiser = self._adam()
        if self._graph is not None:
            self._graph.replay()
        elif cfg.cuda_graph and self.steps_done >= engine.GRAPH_WARMUP:
            self._capture()
            self._graph.replay()
        elif cfg.cuda_graph:  # warm-up steps run on a side stream, as capture wants
            self._side_stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self._side_stream):
                self._eager_step()
            torch.cuda.current_stream(self.device).wait_stream(self._side_stream)
        else:
            self._eager_step()
        self.steps_done += 1
        value = None
        if self.steps_done % cfg.sync_every == 0 or self.steps_done == cfg.steps:
            value = self._read_back()
        if cfg.snapshot_every and self.steps_done % cfg.snapshot_every == 0:
            self.snapshots.append((self.steps_done, self.pixels()))
        return value

    def _read_back(self) -> float:
        """Moves the logged losses of the steps since the last read to the history; raises
        :class:`NonFiniteLossError` at the first non-finite one."""
        rows = self._log[self._synced:self.steps_done].cpu().tolist()
        for offset, row in enumerate(rows):
            step = self._synced + offset
            if not all(math.isfinite(v) for v in row):
                raise NonFiniteLossError(
                    f"the loss became {row[0]} at step {step} (terms: "
                    + ", ".join(f"{k}={v:.4g}" for k, v in zip(self.term_names, row[1:]))
                    + "); try a lower lr or a smaller r",
                    step=step,
                    last_finite=self.pixels(self._last_good),
                    history=self.history,
                )
            self.history[TOTAL].append(row[0])
            self.history["lr"].append(self.schedule.lr_host[step])
            for name, v in zip(self.term_names, row[1:]):
                self.history.setdefault(name, []).append(v)
        self._synced = self.steps_done
        with torch.no_grad():
            self._last_good.copy_(self.x)
        return rows[-1][0]

    def run(self) -> InversionResult:
        from tqdm.auto import tqdm

        with self:
            bar = tqdm(range(self.cfg.steps), disable=not self.cfg.progress, desc=self.cfg.objective, unit="step",
                       leave=False)
            for _ in bar:
                value = self.step()
                if value is not None:
                    bar.set_postfix(loss=f"{value:.3f}", refresh=False)
            bar.close()
        return self.result()

    def result(self) -> InversionResult:
        if self._synced < self.steps_done:
            self._read_back()
        with torch.no_grad():
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
            model_spec=self.net.spec,
            verifier_spec=ver.spec if ver is not None else None,
        )


@torch.no_grad()
def _probs(net: Network, x: torch.Tensor) -> torch.Tensor:
    return net.module(net.fit(x)).float().softmax(1).cpu()


def _renormalise(x: torch.Tensor, src: Network, dst: Network) -> torch.Tensor:
    return x if src.same_normalisation(dst) else src.to_normalisation_of(x, dst)
