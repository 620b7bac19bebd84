"""Baseline formulations of one LEAPS step, re-implemented here so that they can be timed.

These exist for benchmarks/table4.py: they are what leaps' own engine is compared with. Each one
optimises a real x* (B x 3 x T x S x S, the inverted model's normalised space) with Adam, and
its loss backpropagates into x*; none goes through :class:`leaps.inversion.Inverter`.

* :class:`Bare` - the floor: inverted model + verifier forward/backward with cross-entropy only
  and an Adam step, with an inference pass.
* :class:`Official` - what the authors' public code (``leaps.py`` of
  alexandrosstergiou/Leaping-Into-Memories) computes per step: hooks on every BatchNorm3d /
  LayerNorm of the inverted model computing the channel mean *and* a T' x T' pairwise temporal
  coherence on every layer (the pairwise differences are materialised, B x C x T' x T' x H x W),
  of which the LAST layer's L1 priming distance and coherence reach the loss; verifier BN-moment
  hooks; the stimulus fed un-normalised; an l2 prior on x*; weight gradients of both networks;
  fp16 autocast + GradScaler (CUDA); ``loss.item()`` every step. The deviations it keeps, and
  why, are listed in its docstring.
* :class:`Naive` - the paper's equations (eq. 1-4) written plainly in eager PyTorch, fp32 (TF32
  convolutions where the caller enables them): forward pre-hooks on every norm layer, per-layer
  channel means + JVS priming with linear layer weights, temporal coherence on the last layer
  only, per-layer BatchNorm batch mean/variance against the running statistics for the verifier.
  The terms are the plain-torch references of :mod:`leaps.losses` (``backend="reference"``).

All formulations share the step skeleton of the leaps loop: random roll + flip of x*, resize to
each network's input geometry (:meth:`leaps.inversion.Network.fit`), loss, backward, Adam
(lr 0.2, betas (0.5, 0.9)), clip of x* to the valid pixel range (Official: the public clip).

    f = Official(model, verifier, targets=[0] * 16, stimulus=video, frames=8, size=224)
    with f:                      # hooks registered for the block
        f.step()                 # one optimisation step of x*
        f.inference()            # forward (no grad) of both networks with the hooks active
"""

from __future__ import annotations

import math
import random
from contextlib import nullcontext
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from leaps import losses
from leaps.inversion import DEFAULT_PRESET, Network

LR = 0.2
BETAS = (0.5, 0.9)
FORMULATIONS = ("bare", "official", "naive")


def _device_of(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def _preset(model: nn.Module) -> tuple[float, float, float]:
    p = getattr(getattr(model, "leaps_spec", None), "preset", None)
    return (p.lambda_first, p.lambda_last, p.r) if p is not None else DEFAULT_PRESET


def _stimulus_batch(stimulus: torch.Tensor | None, frames: int, size: int, device) -> torch.Tensor:
    """A 1 x 3 x T x S x S stimulus in [0, 1] (random when none is given)."""
    if stimulus is None:
        gen = torch.Generator().manual_seed(0)
        stimulus = torch.rand(3, frames, size, size, generator=gen)
    video = stimulus.detach().float()
    if video.dim() == 4:
        video = video[None]
    if tuple(video.shape[2:]) != (frames, size, size):
        video = F.interpolate(video, size=(frames, size, size), mode="trilinear", align_corners=False)
    return video.to(device)


class _Formulation:
    """x*, its optimiser, augmentation and clipping: what every formulation shares."""

    name = "?"

    def __init__(self, model: nn.Module, verifier: nn.Module | None, targets: Sequence[int], stimulus=None, *,
                 frames: int = 8, size: int = 224, seed: int = 0):
        self.device = _device_of(model)
        self.net = Network.wrap(model, None, None)
        self.ver = Network.wrap(verifier, None, None) if verifier is not None else None
        self.frames, self.size = frames, size
        self.targets = torch.as_tensor(list(targets), dtype=torch.long, device=self.device)
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(len(self.targets), 3, frames, size, size, generator=gen).to(self.device)
        self.low, self.high = (0 - self.net.mean) / self.net.std, (1 - self.net.mean) / self.net.std
        self.x = torch.max(torch.min(x, self.high), self.low).requires_grad_(True)
        self.optimiser = torch.optim.Adam([self.x], lr=LR, betas=BETAS)
        self.rng = random.Random(seed)
        self.jitter = max(1, round(0.13 * size))
        self.last_loss: float | None = None
        self._stimulus = stimulus

    # hooks ---------------------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove the hooks and drop the references to activations."""

    # the step ------------------------------------------------------------------------------
    def augment(self, x: torch.Tensor) -> torch.Tensor:
        dy, dx = self.rng.randint(-self.jitter, self.jitter), self.rng.randint(-self.jitter, self.jitter)
        x = torch.roll(x, shifts=(dy, dx), dims=(3, 4))
        if self.rng.random() < 0.5:
            x = torch.flip(x, dims=(4,))
        return x

    def clip(self) -> None:
        with torch.no_grad():
            self.x.copy_(torch.max(torch.min(self.x, self.high), self.low))

    def loss(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """The formulation's scalar loss for x* (augmented when ``x`` is None), with autograd."""
        raise NotImplementedError

    def step(self) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def inference(self) -> None:
        """Forward of both networks (no grad), hooks and loss terms included."""
        self.loss(self.x)


class Bare(_Formulation):
    """Inverted model + verifier with cross-entropy only: no augmentation, no LEAPS terms."""

    name = "bare"

    def loss(self, x=None):
        x = self.x if x is None else x
        loss = F.cross_entropy(self.net.module(self.net.fit(x)), self.targets)
        if self.ver is not None:
            loss = loss + F.cross_entropy(self.ver.module(self.ver.fit(x)), self.targets)
        return loss

    def step(self) -> None:
        self.optimiser.zero_grad(set_to_none=True)
        self.loss().backward()
        self.optimiser.step()

    @torch.no_grad()
    def inference(self) -> None:
        self.net.module(self.net.fit(self.x))
        if self.ver is not None:
            self.ver.module(self.ver.fit(self.x))


# --------------------------------------------------------------------------------------------
# official: the authors' public code
# --------------------------------------------------------------------------------------------

#: The pixel statistics the public ``utils.clip`` clamps with (ImageNet's, whatever the model).
PUBLIC_CLIP_MEAN = (0.485, 0.456, 0.406)
PUBLIC_CLIP_STD = (0.229, 0.224, 0.225)


class _OfficialModelHook:
    """Forward hook on one BatchNorm3d / LayerNorm of the inverted model (``LEAPSFeatHook``).

    A 5-D input z (B x C x T x H x W) gives the channel mean and the pairwise temporal coherence:
    consecutive-frame L1 plus the L1 of the hinge ``max(0, 1 - (z_t1 - z_t2))`` over the lower
    triangle of the materialised B x C x H x W x T' x T' frame differences. A token input
    (B x N x C) gives the mean over dim 1 and no coherence, as in the public hook.
    """

    def __init__(self, module: nn.Module, keep_coherence: bool):
        self.keep_coherence = keep_coherence
        self.mean: torch.Tensor | None = None
        self.coh: torch.Tensor | None = None
        self.handle = module.register_forward_hook(self)

    def __call__(self, module, inputs, output) -> None:
        z = inputs[0]
        if z.dim() <= 3:
            self.mean = z.mean(dim=1)
            return
        self.mean = z.mean(dim=(2, 3, 4))
        later = z[:, :, 1:].unsqueeze(2)      # B x C x 1 x T' x H x W
        earlier = z[:, :, :-1].unsqueeze(3)   # B x C x T' x 1 x H x W
        pairs = (later - earlier).permute(0, 1, 4, 5, 2, 3)  # B x C x H x W x T' x T'
        pairs = torch.tril(pairs, -1)
        hinge = 1.0 - pairs
        hinge[hinge < 0.0] = 0.0              # as the public code does (boolean-mask assignment)
        coh = torch.norm(z[:, :, 1:] - z[:, :, :-1], 1) + torch.norm(hinge, 1)
        # Only the last layer's coherence enters the loss; see Official's docstring (the leak).
        self.coh = coh if self.keep_coherence else None

    def close(self) -> None:
        self.handle.remove()
        self.mean = self.coh = None


class _OfficialVerifierHook:
    """Forward hook on one verifier BatchNorm3d (``VerFeatHook``): distance to its running moments."""

    def __init__(self, module: nn.Module):
        self.feat: torch.Tensor | None = None
        self.handle = module.register_forward_hook(self)

    def __call__(self, module, inputs, output) -> None:
        z = inputs[0]
        channels = z.shape[1]
        mean = z.mean(dim=(0, 2, 3, 4))
        var = z.permute(1, 0, 2, 3, 4).contiguous().view(channels, -1).var(1, unbiased=False)
        self.feat = torch.norm(module.running_var.data - var, 2) + torch.norm(module.running_mean.data - mean, 2)

    def close(self) -> None:
        self.handle.remove()
        self.feat = None


class Official(_Formulation):
    """What the authors' public code (``leaps.py`` of alexandrosstergiou/Leaping-Into-Memories) does.

    Loss, with the public code's constants::

        CE + reg * sum_k rescale_k feat_k + 0.005 * l2 + prompt * rescale_L |mu_L(x*) - mu_L(v)|_1 - 1e-4 coh_L / B

    * ``rescale = [10] + [1 + 10 / (s + 1) for s in range(n - 1)]`` = [10, 11, 6, 4.33, ...]
      (per list: n verifier layers for ``feat``, n hooked model layers for the priming term);
    * priming: the public loop over the hooked layers resets its list of per-layer terms inside
      the loop (``prompt_feats_layer_loss = []``), so every layer's term is computed but only the
      LAST hooked layer's L1 distance, times its rescale weight, reaches the loss; here too;
    * coherence: every hooked layer computes the pairwise coherence, the last one enters the loss;
    * the stimulus v is fed un-normalised, in [0, 1] (``vids / 255.``), while x* lives in the
      model's normalised space;
    * hooks on every BatchNorm3d and LayerNorm of the inverted model (``LEAPSFeatHook``; a token
      LayerNorm gives a mean over dim 1 and no coherence), BN-moment hooks on the verifier
      (``VerFeatHook``, ``permute().contiguous().view(C, -1).var()``);
    * the networks' parameters require grad (the public code never freezes them; it zeroes their
      gradients every step), so backward also computes every weight gradient; restored by
      :meth:`close`;
    * fp16 autocast + GradScaler on CUDA (``amp``: "fp16" default on CUDA, "bf16", or None =
      fp32, the default on a CPU, without loss scaling); ``loss.item()`` every step and a copy of
      x* whenever the loss improves (``best_inputs``);
    * the public ``utils.clip``: ``x[..., c]`` clamped to ImageNet's ``[-m_c / s_c, (1 - m_c) / s_c]``
      for c = 0, 1, 2, i.e. the first three columns of the width axis, not the colour channels.

    ``prompt`` and ``reg`` are the model's lambda_1 and r (Table S1). Deviations kept, and why:

    * the verifier is a separate network (X3D-S in Table 4, like every other row), fed x* resized
      to its geometry. The public ``run.py`` passes the inverted network as the verifier and
      ``LEAPS.__init__`` wraps ``net`` as ``net_verifier`` anyway, so there the "verifier" pass is
      a second forward of the inverted model with the BN-moment hooks on its own layers. Keeping
      the shared verifier makes the rows differ in formulation only.
    * verifier hooks only on BatchNorm3d with running statistics: the public ``VerFeatHook``
      would raise on a LayerNorm (no ``running_var``).
    * the public code keeps every layer's coherence (and so its autograd graph) referenced until
      the next step, although only the last layer's enters the loss; here the other layers'
      coherence is computed and dropped, so the baseline is charged the compute but not that
      leak (which would not fit 16 x 224^2, B = 16 on one 80 GB GPU).
    * ``prompt`` and ``reg`` from the model's preset rather than ``run.py``'s fixed 1e-2 and
      0.05; constant lr instead of the cosine policy (a host-side assignment per step); one
      device, no ``DataParallel``. None of these changes what a step computes beyond scalars.
    """

    name = "official"
    FIRST_BN_MULTIPLIER = 10.0
    L2_SCALE = 0.005
    COH_SCALE = 1e-4
    HOOKED = (nn.BatchNorm3d, nn.LayerNorm)

    def __init__(self, model, verifier, targets, stimulus=None, *, frames=8, size=224, seed=0,
                 amp: str | None = "auto"):
        super().__init__(model, verifier, targets, stimulus, frames=frames, size=size, seed=seed)
        if amp == "auto":
            amp = "fp16" if self.device.type == "cuda" else None
        self.amp_dtype = {None: None, "fp16": torch.float16, "bf16": torch.bfloat16}[amp]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16
                                           and self.device.type == "cuda")
        self.networks = [m for m in (model, verifier) if m is not None]
        self._requires_grad = [(p, p.requires_grad) for m in self.networks for p in m.parameters()]
        for m in self.networks:
            m.requires_grad_(True)
        norms = [m for m in model.modules() if isinstance(m, self.HOOKED)]
        self.model_hooks = [_OfficialModelHook(m, keep_coherence=i == len(norms) - 1) for i, m in enumerate(norms)]
        self.verifier_hooks = []
        if verifier is not None:
            self.verifier_hooks = [_OfficialVerifierHook(m) for m in verifier.modules()
                                   if isinstance(m, nn.BatchNorm3d) and m.running_var is not None]
        self.prompt_coef, _, self.reg = _preset(model)
        self.rescale_model = self.rescale(len(self.model_hooks))
        self.rescale_verifier = self.rescale(len(self.verifier_hooks))
        clip_mean = torch.tensor(PUBLIC_CLIP_MEAN)
        clip_std = torch.tensor(PUBLIC_CLIP_STD)
        self.clip_low, self.clip_high = (-clip_mean / clip_std).tolist(), ((1 - clip_mean) / clip_std).tolist()
        self.best_loss, self.best_x = math.inf, None
        with torch.no_grad(), self._autocast():
            video = _stimulus_batch(stimulus, frames, size, self.device)
            self.net.module(self.net.fit(video))  # un-normalised, as the public code feeds it
            self.prompt_feats = [h.mean.clone() for h in self.model_hooks]
        self._drop()

    @classmethod
    def rescale(cls, n: int) -> list[float]:
        """The public code's per-layer weights: [10, 1 + 10/1, 1 + 10/2, ...] for n layers."""
        return [cls.FIRST_BN_MULTIPLIER] + [1.0 + cls.FIRST_BN_MULTIPLIER / (s + 1) for s in range(n - 1)]

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _drop(self) -> None:
        for h in self.model_hooks:
            h.mean = h.coh = None
        for h in self.verifier_hooks:
            h.feat = None

    def close(self) -> None:
        for h in self.model_hooks + self.verifier_hooks:
            h.close()
        for p, flag in self._requires_grad:
            p.requires_grad_(flag)

    def clip(self) -> None:
        with torch.no_grad():
            for c in range(3):  # the public clip's last-axis indexing, kept (class docstring)
                self.x[..., c].clamp_(self.clip_low[c], self.clip_high[c])

    def loss(self, x=None):
        x_jit = self.augment(self.x) if x is None else x
        batch = x_jit.shape[0]
        with self._autocast():
            logits = self.net.module(self.net.fit(x_jit))
            if self.ver is not None:
                self.ver.module(self.ver.fit(x_jit))
            loss = F.cross_entropy(logits, self.targets)
            diversity = sum(h.feat * s for h, s in zip(self.verifier_hooks, self.rescale_verifier))
            for h, p, s in zip(self.model_hooks, self.prompt_feats, self.rescale_model):
                prompt_terms = [(h.mean - p).abs() * s]  # reset per layer, as in the public loop
            prompt = torch.sum(sum(prompt_terms))
            last = self.model_hooks[-1].coh
            coh = last / batch if last is not None else 0.0
            l2 = torch.norm(x_jit.reshape(batch, -1), dim=1).mean()
            loss = loss + self.reg * diversity + self.L2_SCALE * l2 + self.prompt_coef * prompt - self.COH_SCALE * coh
        return loss

    def step(self) -> None:
        self.optimiser.zero_grad(set_to_none=True)
        for m in self.networks:
            m.zero_grad(set_to_none=True)
        loss = self.loss()
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimiser)
        self.scaler.update()
        self.clip()
        self.last_loss = loss.item()   # the public code reads the loss back every step
        if self.last_loss < self.best_loss:
            self.best_loss, self.best_x = self.last_loss, self.x.detach().clone()
        self._drop()

    @torch.no_grad()
    def inference(self) -> None:
        self.loss(self.x)
        self._drop()


# --------------------------------------------------------------------------------------------
# naive: the paper's equations, plainly
# --------------------------------------------------------------------------------------------

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.InstanceNorm3d, nn.LayerNorm)


class _InputTaps:
    """Forward pre-hooks that keep a reference to the input of each given layer."""

    def __init__(self, modules: Sequence[nn.Module]):
        self.modules = list(modules)
        self.inputs: list[torch.Tensor | None] = [None] * len(self.modules)
        self.handles = [m.register_forward_pre_hook(self._record(i)) for i, m in enumerate(self.modules)]

    def _record(self, index: int):
        def hook(_module, args):
            self.inputs[index] = args[0]
        return hook

    def ran(self) -> list[int]:
        return [i for i, z in enumerate(self.inputs) if z is not None]

    def clear(self) -> None:
        self.inputs = [None] * len(self.modules)

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
        self.clear()


class Naive(_Formulation):
    """eq. (4) written plainly: CE + L_prim (JVS, every norm layer) + r (R_coh(last) + R_feat), fp32."""

    name = "naive"

    def __init__(self, model, verifier, targets, stimulus=None, *, frames=8, size=224, seed=0, margin: float = 1.0):
        super().__init__(model, verifier, targets, stimulus, frames=frames, size=size, seed=seed)
        self.margin = margin
        norms = [m for m in model.modules() if isinstance(m, _NORMS)]
        self.model_taps = _InputTaps(norms)
        self.channel_dims = [-1 if isinstance(m, nn.LayerNorm) else 1 for m in norms]
        self.verifier_taps = None
        if verifier is not None:
            bns = [m for m in verifier.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d))
                   and m.track_running_stats and m.running_mean is not None]
            self.verifier_taps = _InputTaps(bns)
        lam_first, lam_last, self.r = _preset(model)
        with torch.no_grad():
            video = _stimulus_batch(stimulus, frames, size, self.device)
            self.net.module(self.net.fit((video - self.net.mean) / self.net.std))
            self.stimulus_means = [losses.channel_means(self.model_taps.inputs[i], self.channel_dims[i])
                                   for i in self.model_taps.ran()]
        self.model_taps.clear()
        self.weights = losses.linear_layer_weights(len(self.stimulus_means), lam_first, lam_last)

    def close(self) -> None:
        self.model_taps.close()
        if self.verifier_taps is not None:
            self.verifier_taps.close()

    def _to_verifier(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.net.std + self.net.mean - self.ver.mean) / self.ver.std

    def loss(self, x=None):
        x = self.augment(self.x) if x is None else x
        taps = self.model_taps
        logits = self.net.module(self.net.fit(x))
        ran = taps.ran()
        acts = [taps.inputs[i] for i in ran]
        feats = [losses.channel_means(a, self.channel_dims[i]) for a, i in zip(acts, ran)]
        loss = F.cross_entropy(logits, self.targets)
        loss = loss + losses.priming_loss(feats, self.stimulus_means, self.weights, "jvs", backend="reference")
        loss = loss + self.r * losses.temporal_coherence_loss(acts[-1], self.margin, backend="reference")
        if self.ver is not None:
            vtaps = self.verifier_taps
            self.ver.module(self.ver.fit(self._to_verifier(x)))
            vran = vtaps.ran()
            mods = [vtaps.modules[i] for i in vran]
            loss = loss + self.r * losses.bn_statistics_loss(
                [vtaps.inputs[i] for i in vran], [m.running_mean for m in mods], [m.running_var for m in mods],
                backend="reference",
            )
        taps.clear()
        if self.verifier_taps is not None:
            self.verifier_taps.clear()
        return loss

    def step(self) -> None:
        self.optimiser.zero_grad(set_to_none=True)
        loss = self.loss()
        loss.backward()
        self.optimiser.step()
        self.clip()
        self.last_loss = loss.item()
        if not math.isfinite(self.last_loss):
            raise FloatingPointError(f"naive loss became {self.last_loss}")


def build(name: str, model, verifier, targets, stimulus=None, **kwargs) -> _Formulation:
    """The formulation called ``name`` ("bare", "official" or "naive")."""
    cls = {"bare": Bare, "official": Official, "naive": Naive}[name]
    return cls(model, verifier, targets, stimulus, **kwargs)
