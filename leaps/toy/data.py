"""A procedural "toy world" of short action videos, deterministic given a seed.

Ten classes, each a shape doing something; telling them apart needs both appearance and motion:

* every shape appears in at least two classes and every motion but growing / shrinking in at
  least two, so neither the shape nor (mostly) the motion alone gives the class away;
* all classes of one shape render *the same first frame* for the same seed: the per-video
  parameters are drawn in a fixed order whatever the label, and every motion starts from the
  drawn state. Frame 0 therefore only tells the shape, never the class;
* every class maps to itself under a horizontal mirror (vertical motions, either rotation
  direction, blinking, growing, shrinking), because the LEAPS inversion randomly flips x*
  left-right at every step (DeepInversion augmentation) — a "moving left" class would be
  pushed towards "moving right" half of the time;
* time reversal swaps "moving up" with "moving down" and "growing" with "shrinking".

Per video, random: position, size, orientation, speed / rate, rotation direction, blink
period, background colour, gradient and low-frequency texture, object colour (always on the
other side of mid-grey from the background, so the object stays visible) and additive pixel
noise. Videos are ``3 x T x S x S`` floats in ``[0, 1]``; rendering is vectorised over a batch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "TOY_CLASSES",
    "TOY_MEAN",
    "SPLITS",
    "TOY_STD",
    "ToyVideos",
    "generate",
    "generate_batch",
    "stimulus_name",
    "write_stimuli",
]

#: (shape, motion) per class, in label order.
_CLASS_DEFS: tuple[tuple[str, str], ...] = (
    ("square", "moving up"),
    ("square", "moving down"),
    ("square", "rotating"),
    ("square", "blinking"),
    ("ring", "moving up"),
    ("ring", "moving down"),
    ("ring", "growing"),
    ("ring", "shrinking"),
    ("bar", "rotating"),
    ("bar", "blinking"),
)
#: Human names of the ten classes, index = label.
TOY_CLASSES: list[str] = [f"{shape} {motion}" for shape, motion in _CLASS_DEFS]

#: Frames and side of the clips every shipped toy network and judge was trained on.
CLIP_FRAMES, CLIP_SIZE = 8, 64
#: Input normalisation of the toy networks (pixels in [0, 1]).
TOY_MEAN = (0.5, 0.5, 0.5)
TOY_STD = (0.25, 0.25, 0.25)

_SHAPES = ("square", "ring", "bar")
_SHAPE_ID = torch.tensor([_SHAPES.index(s) for s, _ in _CLASS_DEFS])
_MOTION_NAMES = ("moving up", "moving down", "rotating", "blinking", "growing", "shrinking")
_MOTION_ID = torch.tensor([_MOTION_NAMES.index(m) for _, m in _CLASS_DEFS])

_N_UNIFORM = 22  # uniforms drawn per video, always all of them (see _draw)
_CHUNK = 64  # videos rendered at once by generate_batch
_TEXTURE_GRID = 4  # the background texture is a 4 x 4 random grid, upsampled

#: Seed ranges of the dataset splits (item seeds never collide with small user seeds). The judge
#: splits train and test the judges (leaps.toy.judges) on videos no other network ever sees.
_SPLIT_BASE = {"train": 1 << 48, "val": 2 << 48, "test": 3 << 48, "stimulus": 4 << 48,
               "judge_train": 5 << 48, "judge_val": 6 << 48, "judge_test": 7 << 48}
#: The splits ToyVideos serves (every seed range but the stimuli's).
SPLITS = ("train", "val", "test", "judge_train", "judge_val", "judge_test")


# --------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------


def _lerp(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * u


def _draw(seeds: Sequence[int], frames: int, size: int):
    """Per-video random draws, each video from its own generator (so batching changes nothing).

    Returns uniforms ``N x 22``, texture grids ``N x 3 x 4 x 4`` and noise ``N x 3 x T x S x S``
    (standard normal). The draw order never depends on the label: classes of one shape then
    share the first frame for one seed.
    """
    n = len(seeds)
    uniforms = np.empty((n, _N_UNIFORM), dtype=np.float32)
    texture = np.empty((n, 3, _TEXTURE_GRID, _TEXTURE_GRID), dtype=np.float32)
    noise = np.empty((n, 3, frames, size, size), dtype=np.float32)
    for i, seed in enumerate(seeds):
        # numpy's SeedSequence uses every bit of the seed. torch.Generator.manual_seed does
        # not: its Mersenne Twister keeps only the low 32 bits, which made the splits'
        # 64-bit seed ranges (_SPLIT_BASE) render identical videos.
        rng = np.random.default_rng(_check_seed(seed))
        rng.random(out=uniforms[i], dtype=np.float32)
        rng.standard_normal(out=texture[i], dtype=np.float32)
        rng.standard_normal(out=noise[i], dtype=np.float32)
    return torch.from_numpy(uniforms), torch.from_numpy(texture), torch.from_numpy(noise)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"toy seeds are non-negative integers, got {seed!r}")
    return int(seed)


def _colours(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Background and object colours ``N x 3``: luminances on opposite sides of mid-grey.

    The background luminance (channel mean) is in [0.15, 0.35] or [0.65, 0.85]; the object's
    is mirrored around 0.5 (+-0.1), so they differ by at least 0.2. Each colour gets a random
    tint that leaves its luminance unchanged (up to clamping at 0 and 1).
    """
    dark = u[:, 8] < 0.5
    lum_bg = torch.where(dark, _lerp(u[:, 9], 0.15, 0.35), _lerp(u[:, 9], 0.65, 0.85))
    lum_obj = 1.0 - lum_bg + _lerp(u[:, 10], -0.1, 0.1)

    def tinted(lum, tint):
        tint = (tint - 0.5) * 0.3
        return (lum[:, None] + tint - tint.mean(1, keepdim=True)).clamp(0, 1)

    return tinted(lum_bg, u[:, 16:19]), tinted(lum_obj, u[:, 19:22])


def _trajectories(labels: torch.Tensor, u: torch.Tensor, frames: int):
    """Per-frame object state ``N x T``: centre x, y, scale, angle, visibility (fractions of S).

    Every motion starts from the drawn frame-0 state (position, size, angle) and ``tau`` runs
    from 0 (first frame) to 1 (last), so the clip covers the same motion for any ``frames``.
    """
    n = len(labels)
    motion = _MOTION_ID[labels]
    shape = _SHAPE_ID[labels]
    tau = torch.arange(frames, dtype=torch.float32) / max(frames - 1, 1)  # T
    t_idx = torch.arange(frames)

    x0, y0 = _lerp(u[:, 0], 0.3, 0.7), _lerp(u[:, 1], 0.3, 0.7)
    # Bars at any orientation; squares only tilted by up to 15 degrees (rings look the same
    # at any angle).
    angle0 = torch.where(shape == 2, u[:, 3] * math.pi, (u[:, 3] - 0.5) * (math.pi / 6))
    cx = x0[:, None].expand(n, frames)
    shift = _lerp(u[:, 4], 0.18, 0.32)[:, None] * tau  # total vertical travel 18-32% of S
    cy = y0[:, None] + torch.where(motion == 0, -1.0, torch.where(motion == 1, 1.0, 0.0))[:, None] * shift

    # Growing / shrinking: the scale changes by a factor 1.7-2.4 over the clip.
    log_rate = _lerp(u[:, 4], math.log(1.7), math.log(2.4))[:, None] * tau
    sign = torch.where(motion == 4, 1.0, torch.where(motion == 5, -1.0, 0.0))[:, None]
    scale = torch.exp(sign * log_rate)

    # Rotation, either direction: total angle kept below the shape's ambiguity per frame
    # (a square repeats every 90 degrees, a bar every 180) for clips of 4+ frames.
    turn = torch.where(shape == 0, _lerp(u[:, 4], 1.0, 2.0), _lerp(u[:, 4], 1.5, 2.8))
    direction = torch.where(u[:, 5] < 0.5, 1.0, -1.0)
    rotating = (motion == 2).float()
    angle = angle0[:, None] + (rotating * direction * turn)[:, None] * tau

    # Blinking: on for k frames, off for k frames, k = 1 or 2 at 8 frames (scaled with T).
    half_period = torch.where(u[:, 6] < 0.5, 1.0, 2.0) * frames / 8
    half_period = half_period.round().clamp(min=1).long()[:, None]
    on = ((t_idx[None, :] // half_period) % 2 == 0).float()
    visible = torch.where((motion == 3)[:, None], on, torch.ones(n, frames))
    return cx, cy, scale, angle, visible


def _coverage(labels: torch.Tensor, u: torch.Tensor, state, size: int) -> torch.Tensor:
    """Anti-aliased object coverage ``N x T x S x S`` in [0, 1] (one-pixel soft edge)."""
    cx, cy, scale, angle, visible = (s[..., None, None] for s in state)  # N x T x 1 x 1
    shape = _SHAPE_ID[labels][:, None, None, None]
    grid = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    x, y = grid[None, None, None, :], grid[None, None, :, None]
    cos, sin = torch.cos(angle), torch.sin(angle)
    du, dv = (x - cx) * cos + (y - cy) * sin, -(x - cx) * sin + (y - cy) * cos

    size_u = u[:, 2, None, None, None]
    dist = torch.empty_like(du)  # signed distance to the shape's edge, in units of S
    # Each signed distance only for the videos of that shape (a third of the work).
    for sid, sdf in enumerate((_square_sdf, _ring_sdf, _bar_sdf)):
        rows = (shape.view(-1) == sid).nonzero().view(-1)
        if len(rows):
            dist[rows] = sdf(du[rows], dv[rows], size_u[rows], u[rows, 7, None, None, None], scale[rows])
    return (0.5 - dist * size).clamp_(0, 1).mul_(visible)


def _square_sdf(du, dv, size_u, _width_u, scale):
    half = _lerp(size_u, 0.09, 0.16) * scale  # half-side
    return torch.maximum(du.abs(), dv.abs()) - half


def _ring_sdf(du, dv, size_u, _width_u, scale):
    # An annulus from 0.4 to 1.0 times the outer radius. (A filled disc differs from a square
    # only at the corners: the small networks took several times longer to learn that.)
    radius = 1.1 * _lerp(size_u, 0.09, 0.16) * scale
    return (torch.sqrt(du * du + dv * dv) - 0.7 * radius).abs() - 0.3 * radius


def _bar_sdf(du, dv, size_u, width_u, scale):
    half_len = _lerp(size_u, 0.18, 0.28) * scale
    half_wid = _lerp(width_u, 0.035, 0.055) * scale
    return torch.maximum(du.abs() - half_len, dv.abs() - half_wid)


def _background(u: torch.Tensor, texture: torch.Tensor, colour: torch.Tensor, size: int) -> torch.Tensor:
    """Static background ``N x 3 x S x S``: colour + linear gradient + low-frequency texture."""
    grid = torch.linspace(-0.5, 0.5, size)
    phi = u[:, 13] * 2 * math.pi
    ramp = torch.cos(phi)[:, None, None] * grid[None, None, :] + torch.sin(phi)[:, None, None] * grid[None, :, None]
    gradient = _lerp(u[:, 14], 0.0, 0.2)[:, None, None] * ramp  # N x S x S
    smooth = F.interpolate(texture, size=(size, size), mode="bicubic", align_corners=False)
    return colour[:, :, None, None] + gradient[:, None] + 0.04 * smooth


def generate_batch(labels: Sequence[int], seeds: Sequence[int], frames: int = 8, size: int = 64) -> torch.Tensor:
    """Render ``N x 3 x T x S x S`` videos in [0, 1]; video i is ``generate(labels[i], seeds[i])``."""
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if len(labels) != len(seeds):
        raise ValueError(f"got {len(labels)} labels but {len(seeds)} seeds")
    if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < len(TOY_CLASSES)):
        raise ValueError(f"toy labels are 0..{len(TOY_CLASSES) - 1}, got {labels.tolist()}")
    if frames < 1 or size < 8:
        raise ValueError(f"need frames >= 1 and size >= 8, got frames={frames}, size={size}")
    if len(labels) > _CHUNK:  # bounded temporaries: big batches are slower, not faster
        return torch.cat([generate_batch(labels[i:i + _CHUNK], seeds[i:i + _CHUNK], frames, size)
                          for i in range(0, len(labels), _CHUNK)])
    u, texture, noise = _draw(seeds, frames, size)
    bg_colour, obj_colour = _colours(u)
    background = _background(u, texture, bg_colour, size)[:, :, None]  # N x 3 x 1 x S x S
    alpha = _coverage(labels, u, _trajectories(labels, u, frames), size)[:, None]  # N x 1 x T x S x S
    sigma = _lerp(u[:, 15], 0.01, 0.05)[:, None, None, None, None]
    video = background * (1 - alpha) + obj_colour[:, :, None, None, None] * alpha + sigma * noise
    return video.clamp_(0, 1)


def generate(label: int, seed: int, frames: int = 8, size: int = 64) -> torch.Tensor:
    """One ``3 x frames x size x size`` video of class ``label``: a pure function of its arguments."""
    return generate_batch([label], [seed], frames, size)[0]


# --------------------------------------------------------------------------------------------
# dataset
# --------------------------------------------------------------------------------------------


class ToyVideos(torch.utils.data.Dataset):
    """A deterministic, balanced split of the toy world, rendered on demand.

    Item ``i`` has label ``i % 10`` and seed ``base(split) + seed * 2**32 + i``: the splits
    ('train', 'val', 'test', and the judges' 'judge_train', 'judge_val', 'judge_test') never
    share a video (for ``seed < 2**16``), and every item is the same on every call.
    Items are ``(video normalised with TOY_MEAN / TOY_STD, label)``; ``normalize=False`` gives
    pixels in [0, 1].
    """

    def __init__(self, split: str = "train", length: int = 1000, *, frames: int = 8, size: int = 64,
                 seed: int = 0, normalize: bool = True):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(repr(s) for s in SPLITS)}, not {split!r}")
        self.split, self.length, self.frames, self.size = split, int(length), frames, size
        self.seed, self.normalize = int(seed), normalize

    def __len__(self) -> int:
        return self.length

    def label(self, index: int) -> int:
        return index % len(TOY_CLASSES)

    def item_seed(self, index: int) -> int:
        return _SPLIT_BASE[self.split] + self.seed * (1 << 32) + index

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Items ``indices`` at once (vectorised): ``(N x 3 x T x S x S, N labels)``."""
        indices = [self._check(i) for i in indices]
        labels = torch.tensor([self.label(i) for i in indices], dtype=torch.long)
        video = generate_batch(labels, [self.item_seed(i) for i in indices], self.frames, self.size)
        if self.normalize:
            video = (video - _stat(TOY_MEAN)) / _stat(TOY_STD)
        return video, labels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        video, labels = self.batch([index])
        return video[0], int(labels[0])

    def _check(self, index: int) -> int:
        index = int(index)
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        return index


def _stat(values) -> torch.Tensor:
    return torch.tensor(values).view(1, 3, 1, 1, 1)


# --------------------------------------------------------------------------------------------
# stimuli on disk
# --------------------------------------------------------------------------------------------


def stimulus_name(label: int, k: int = 0) -> str:
    """File stem of the k-th stimulus of a class, e.g. ``00_square_moving_up_0``."""
    return f"{label:02d}_{TOY_CLASSES[label].replace(' ', '_')}_{k}"


def write_stimuli(out_dir, per_class: int = 1, seed: int = 0, frames: int = 8, size: int = 64,
                  fps: float = 8) -> list[Path]:
    """Write ``per_class`` videos of every class as mp4 (``00_square_moving_up_0.mp4``, ...).

    Stimuli come from their own seed range (never a train/val/test item). Returns the paths in
    label order, then k.
    """
    from leaps.video import write_video

    out = Path(out_dir)
    labels = [c for c in range(len(TOY_CLASSES)) for _ in range(per_class)]
    ks = [k for _ in range(len(TOY_CLASSES)) for k in range(per_class)]
    seeds = [_SPLIT_BASE["stimulus"] + seed * (1 << 32) + c * per_class + k for c, k in zip(labels, ks)]
    videos = generate_batch(labels, seeds, frames, size)
    return [write_video(v, out / f"{stimulus_name(c, k)}.mp4", fps=fps) for v, c, k in zip(videos, labels, ks)]
