"""How x* is parameterised: the tensor Adam updates and the video the networks see.

* ``"pixel"`` (the paper's, the default): Adam updates x* itself, in the model's normalised
  space, clipped to the valid pixel range after each step.
* ``"fourier"`` (Olah et al. 2017, lucid's ``fft_image`` + ``to_valid_rgb`` generalised to
  video): Adam updates the 3D (t, y, x) spectrum of a decorrelated colour space; each step the
  spectrum is scaled by 1/f, inverted with ``irfftn`` over (T, H, W), mapped to RGB through
  lucid's colour correlation matrix and squashed into [0, 1] by a sigmoid. Equal steps in every
  frequency give an image whose power falls like that of natural images, so high-frequency
  noise, which the networks barely resist, is not what the optimiser finds first.

* ``"rigid"`` (a layered, sprite-like video): one image per video, moved in every frame by a
  similarity transform of its own (rotation, scale, translation), plus a small per-frame residual.
  Motion then comes first from moving one picture, so an object stays in one piece from frame to
  frame, and the residual is left for what a rigid motion cannot do (blinking, a static
  background under a moving object). Adam updates all three through one flat tensor; each part is
  scaled so that lr 0.2 moves a frame by a few degrees or pixels per step.

Pixel and Fourier x* may run coarse to fine (``coarse_to_fine=n``): the video is first optimised at reduced
resolution (H, W and T halved per earlier stage) and refined in later stages. A pixel x* is
optimised at low resolution and upsampled (trilinear) into the networks' geometry; at a stage
change the parameters are upsampled and Adam starts afresh. A spectrum keeps its full size and
only its low frequencies are free in an early stage (the others are masked out of the video).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .constants import PARAMS  # noqa: F401  (the choices of InversionConfig.param)
from .errors import LeapsError

#: lucid's colour correlation (square root of the ImageNet colour covariance, by SVD), columns
#: normalised to at most unit norm: decorrelated -> RGB.
COLOR_CORRELATION_SVD_SQRT = ((0.26, 0.09, 0.02),
                              (0.27, 0.00, -0.05),
                              (0.27, -0.09, 0.03))
#: lucid's spectrum initialisation (standard deviation) and its output divisor ("magic" 4).
FOURIER_INIT_SD = 0.01
FOURIER_MAGIC = 4.0


def color_correlation(device=None) -> torch.Tensor:
    m = torch.tensor(COLOR_CORRELATION_SVD_SQRT, dtype=torch.float32, device=device)
    return m / m.norm(dim=0).max()


def stage_shape(frames: int, size: int, stage: int, stages: int) -> tuple[int, int, int]:
    """(T, H, W) of coarse-to-fine stage ``stage`` (0-based) of ``stages``: halved per later stage."""
    factor = 2 ** (stages - 1 - stage)
    s = max(1, math.ceil(size / factor))
    return max(1, math.ceil(frames / factor)), s, s


def stage_starts(steps: int, stages: int) -> list[int]:
    """The first step of every stage after the first: the steps split evenly."""
    return [round(k * steps / stages) for k in range(1, stages)]


def check_coarse_to_fine(stages, steps: int, size: int) -> None:
    if isinstance(stages, bool) or not isinstance(stages, int) or stages < 1:
        raise LeapsError(f"coarse_to_fine must be a whole number of stages >= 1 (1: off), got {stages!r}")
    if stages > steps:
        raise LeapsError(f"coarse_to_fine={stages} stages need at least as many steps, got {steps}")
    if size / 2 ** (stages - 1) < 2:
        raise LeapsError(f"coarse_to_fine={stages} halves x* of {size}^2 below 2 pixels; use fewer stages")


class PixelParam:
    """x* itself (normalised space), clipped to [low, high]; at reduced resolution in early stages."""

    def __init__(self, x: torch.Tensor, low: torch.Tensor, high: torch.Tensor, clip: bool, stages: int = 1):
        self.full_shape = tuple(x.shape[2:])
        self.low, self.high, self.clip, self.stages, self.stage = low, high, clip, stages, 0
        if stages > 1:  # the same noise as a one-stage run, averaged down to the first stage
            x = F.adaptive_avg_pool3d(x, stage_shape(*self.full_shape[:2], 0, stages))
        self.leaf = x

    @property
    def tensors(self) -> list[torch.Tensor]:
        return [self.leaf]

    def video(self) -> torch.Tensor:
        """x* at full resolution (the leaf itself when it is at full resolution)."""
        if tuple(self.leaf.shape[2:]) == self.full_shape:
            return self.leaf
        return F.interpolate(self.leaf, size=self.full_shape, mode="trilinear", align_corners=False)

    def project(self) -> None:
        if self.clip:
            with torch.no_grad():
                torch.maximum(torch.minimum(self.leaf, self.high), self.low, out=self.leaf)

    def next_stage(self) -> bool:
        """Upsample the leaf to the next stage's resolution; True: the optimiser needs the new leaf."""
        self.stage += 1
        shape = stage_shape(*self.full_shape[:2], self.stage, self.stages)
        with torch.no_grad():
            leaf = F.interpolate(self.leaf.detach(), size=shape, mode="trilinear", align_corners=False)
        self.leaf = leaf.contiguous().requires_grad_(True)
        return True


class FourierParam:
    """A decorrelated-colour 3D spectrum of x* with 1/f scaling, squashed to [0, 1] by a sigmoid."""

    def __init__(self, batch: int, frames: int, size: int, mean: torch.Tensor, std: torch.Tensor,
                 generator: torch.Generator, init_scale: float, device, stages: int = 1, decay_power: float = 1.0):
        self.full_shape = (frames, size, size)
        self.mean, self.std, self.stages, self.stage = mean, std, stages, 0
        ft = torch.fft.fftfreq(frames)[:, None, None]
        fy = torch.fft.fftfreq(size)[None, :, None]
        fx = torch.fft.rfftfreq(size)[None, None, :]
        freqs = (ft ** 2 + fy ** 2 + fx ** 2).sqrt()
        scale = 1.0 / freqs.clamp_min(1.0 / max(frames, size)) ** decay_power
        self.scale = scale[None, None, ..., None].to(device)  # 1 x 1 x T x H x W/2+1 x (re, im)
        self.freqs = (ft.abs(), fy.abs(), fx.abs())
        self.mask = None
        spectrum = torch.randn(batch, 3, *freqs.shape, 2, generator=generator) * (FOURIER_INIT_SD * init_scale)
        self.leaf = spectrum.to(device)
        self.colors = color_correlation(device)
        self._set_mask()

    @property
    def tensors(self) -> list[torch.Tensor]:
        return [self.leaf]

    def _set_mask(self) -> None:
        """Only the frequencies a video of this stage's resolution holds are free (all in the last)."""
        if self.stage == self.stages - 1:
            self.mask = None
            return
        frames, size = self.full_shape[:2]
        t, s, _ = stage_shape(frames, size, self.stage, self.stages)
        ft, fy, fx = self.freqs
        keep = (ft <= 0.5 * t / frames + 1e-9) & (fy <= 0.5 * s / size + 1e-9) & (fx <= 0.5 * s / size + 1e-9)
        self.mask = keep[None, None, ..., None].to(self.scale.dtype).to(self.scale.device)

    def pixels01(self) -> torch.Tensor:
        """The video in [0, 1], B x 3 x T x H x W (differentiable)."""
        spectrum = self.scale * self.leaf if self.mask is None else self.scale * self.mask * self.leaf
        decorrelated = torch.fft.irfftn(torch.view_as_complex(spectrum.contiguous()), s=self.full_shape,
                                        dim=(-3, -2, -1), norm="ortho") / FOURIER_MAGIC
        rgb = torch.einsum("bcthw,dc->bdthw", decorrelated, self.colors)
        return torch.sigmoid(rgb)

    def video(self) -> torch.Tensor:
        """x* in the model's normalised space."""
        return (self.pixels01() - self.mean) / self.std

    def project(self) -> None:
        """Nothing to clip: the sigmoid keeps every pixel in (0, 1)."""

    def next_stage(self) -> bool:
        self.stage += 1
        self._set_mask()
        return False


#: Per unit of the flat parameter: radians of rotation, log-scale, translation (fractions of the
#: half-width, affine_grid's units) and residual (normalised space). Adam moves each by about lr x this.
RIGID_MOTION_SCALE = 0.05
RIGID_RESIDUAL_SCALE = 0.1


class RigidParam:
    """x*_t = warp(A, rotation, scale, shift of frame t) + residual_t, all from one flat leaf."""

    def __init__(self, image: torch.Tensor, frames: int, low: torch.Tensor, high: torch.Tensor, clip: bool):
        b, c, h, w = image.shape
        self.shape = (b, c, frames, h, w)
        self.low, self.high, self.clip = low, high, clip
        self._sizes = (c * h * w, frames * 4, c * frames * h * w)  # image, motion, residual
        self.leaf = torch.cat([image.reshape(b, -1), image.new_zeros(b, sum(self._sizes[1:]))], dim=1)

    @property
    def tensors(self) -> list[torch.Tensor]:
        return [self.leaf]

    def parts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(image B x C x H x W, motion B x T x 4: angle, log-scale, dx, dy; residual B x C x T x H x W)."""
        b, c, t, h, w = self.shape
        image, motion, residual = torch.split(self.leaf, self._sizes, dim=1)
        return (image.view(b, c, h, w), motion.view(b, t, 4) * RIGID_MOTION_SCALE,
                residual.view(b, c, t, h, w) * RIGID_RESIDUAL_SCALE)

    def video(self) -> torch.Tensor:
        b, c, t, h, w = self.shape
        image, motion, residual = self.parts()
        angle, log_scale, dx, dy = motion.unbind(-1)  # B x T each
        zoom = torch.exp(-log_scale)  # sampling grid shrinks as the picture grows
        cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
        theta = torch.stack([torch.stack([cos, -sin, -dx], -1), torch.stack([sin, cos, -dy], -1)], -2)
        grid = F.affine_grid(theta.reshape(b * t, 2, 3), [b * t, c, h, w], align_corners=False)
        frames = image.unsqueeze(1).expand(b, t, c, h, w).reshape(b * t, c, h, w)
        warped = F.grid_sample(frames, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        x = warped.view(b, t, c, h, w).transpose(1, 2) + residual
        if self.clip:  # the leaf is no video to clip: clamp what the networks see instead
            x = torch.maximum(torch.minimum(x, self.high), self.low)
        return x

    def project(self) -> None:
        """Nothing to clip in place: :meth:`video` clamps."""

    def next_stage(self) -> bool:
        raise LeapsError("param='rigid' does not run coarse to fine")


def build(cfg, mean: torch.Tensor, std: torch.Tensor, batch: int, generator: torch.Generator, device):
    """The parameterisation ``cfg.param`` names, initialised from ``generator`` (the run's seed)."""
    low, high = (0 - mean) / std, (1 - mean) / std  # the valid pixel range [0, 1], normalised
    if cfg.param == "pixel":
        x = torch.randn(batch, 3, cfg.frames, cfg.size, cfg.size, generator=generator) * cfg.init_scale
        return PixelParam(x.to(device), low, high, cfg.clip, cfg.coarse_to_fine)
    if cfg.param == "rigid":
        image = torch.randn(batch, 3, cfg.size, cfg.size, generator=generator) * cfg.init_scale
        return RigidParam(image.to(device), cfg.frames, low, high, cfg.clip)
    return FourierParam(batch, cfg.frames, cfg.size, mean, std, generator, cfg.init_scale, device,
                        stages=cfg.coarse_to_fine)
