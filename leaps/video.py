"""Reading, writing and previewing videos with PyAV.

Tensors follow the library convention: a video is ``3 x T x H x W`` (channels first, then
time), a batch is ``B x 3 x T x H x W``; pixel values are floats in ``[0, 1]`` unless they
were normalised with :func:`normalize`.

Every write is atomic: the file is encoded into a hidden temporary file in the target
directory and moved over the target with :func:`os.replace` only once it is complete, so a
failing write never leaves a half-written file nor clobbers an existing good one.
"""

from __future__ import annotations

import contextlib
import json
import math
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from leaps._atomic import atomic_path
from leaps.errors import LeapsError, ShapeError, VideoError

__all__ = [
    "MAX_DECODED_PIXELS",
    "MAX_FRAME_PIXELS",
    "check_stimulus",
    "sample_indices",
    "read_video",
    "write_video",
    "write_contact_sheet",
    "save_outputs",
    "run_metadata",
    "write_json",
    "normalize",
    "denormalize",
    "synthetic_clip",
    "make_test_video",
]

# Extension -> (container format, codec candidates in order of preference, pixel format).
_VIDEO_FORMATS = {
    ".mp4": ("mp4", ("libx264", "mpeg4"), "yuv420p"),
    ".mkv": ("matroska", ("libx264", "mpeg4"), "yuv420p"),
    ".webm": ("webm", ("libvpx", "libvpx-vp9"), "yuv420p"),
    ".avi": ("avi", ("mpeg4", "mjpeg"), "yuv420p"),
    ".gif": ("gif", ("gif",), "pal8"),
}

# Quality settings per codec: visualisations are small, so spend bits on fidelity.
# libx264 is made bit-reproducible (the same tensor gives the same bytes): one thread, and no
# macroblock tree, whose SIMD code gives run-to-run differences even with one thread.
_CODEC_OPTIONS = {
    "libx264": {"crf": "17", "preset": "medium", "threads": "1", "x264-params": "mbtree=0"},
    "libvpx": {"crf": "10", "b": "4M"},
    "libvpx-vp9": {"crf": "20", "b": "0", "deadline": "realtime", "cpu-used": "8"},
}
_CODEC_BIT_RATE = {"mpeg4": 8_000_000, "mjpeg": 8_000_000, "libvpx": 4_000_000}

#: Largest frame (width x height) read_video decodes: 8K UHD. A 200-byte GIF can declare a
#: 16000 x 16000 canvas, which the decoder would allocate for every frame (gigabytes).
MAX_FRAME_PIXELS = 7680 * 4320

#: Most pixels read_video decodes from one file (frames x width x height): 20 minutes of 1080p at
#: 30 fps. A GIF of a few kilobytes can hold 100,000 "unchanged" 8K frames, each decoded in full:
#: hours of work for a file that looks harmless. Every frame is decoded (the true frame count
#: decides which are sampled), so the budget is checked against the demuxed frame count before
#: decoding and again while decoding.
MAX_DECODED_PIXELS = 36_000 * 1920 * 1080

# Demuxers of single images: FFmpeg's image2 family ("png_pipe", "jpeg_pipe", ...).
_IMAGE_DEMUXERS = ("image2", "image2pipe")


# --------------------------------------------------------------------------------------------
# Sampling and geometry
# --------------------------------------------------------------------------------------------


def sample_indices(total: int, n: int) -> list[int]:
    """Return ``n`` frame indices spread evenly over a clip of ``total`` frames.

    The clip is cut into ``n`` equal bins and the centre of each bin is taken:
    ``idx_i = floor((i + 0.5) * total / n)`` for ``i = 0 .. n-1``. Indices are non-decreasing,
    lie in ``[0, total)``, and repeat when the clip is shorter than ``n``.
    """
    total, n = int(total), int(n)
    if total < 1:
        raise ShapeError(f"cannot sample from a clip with {total} frames (need at least 1)")
    if n < 1:
        raise ShapeError(f"number of frames to sample must be >= 1, got {n}")
    # Integer arithmetic avoids float rounding at bin edges.
    return [((2 * i + 1) * total) // (2 * n) for i in range(n)]


def _resize_short_side_and_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a ``3 x H x W`` float image so its short side is ``size``, then centre-crop.

    Bilinear with ``antialias=True`` so that downscaling large frames does not alias.
    """
    _, h, w = image.shape
    scale = size / min(h, w)
    new_h = max(size, round(h * scale))
    new_w = max(size, round(w * scale))
    if (new_h, new_w) != (h, w):
        image = F.interpolate(
            image[None], size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True
        )[0]
    top = (new_h - size) // 2
    left = (new_w - size) // 2
    return image[:, top : top + size, left : left + size]


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ShapeError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------


def _channel_stats(video: torch.Tensor, values, name: str) -> torch.Tensor:
    """Turn a 3-sequence into a tensor broadcastable over the channel axis (-4) of ``video``."""
    if video.ndim < 4 or video.shape[-4] != 3:
        raise ShapeError(
            f"expected a video 3 x T x H x W or B x 3 x T x H x W, got shape {tuple(video.shape)}"
        )
    t = torch.as_tensor(values, dtype=video.dtype if video.is_floating_point() else torch.float32)
    if t.numel() != 3:
        raise ShapeError(f"{name} must have 3 values (one per RGB channel), got {t.numel()}")
    return t.to(video.device).reshape(3, 1, 1, 1)


def normalize(video01: torch.Tensor, mean, std) -> torch.Tensor:
    """Normalise a ``[0, 1]`` video per channel: ``(x - mean) / std`` (channel axis -4)."""
    m = _channel_stats(video01, mean, "mean")
    s = _channel_stats(video01, std, "std")
    if bool((s == 0).any()):
        raise ShapeError(f"std must be non-zero, got {s.flatten().tolist()}")
    return (video01 - m) / s


def denormalize(video: torch.Tensor, mean, std) -> torch.Tensor:
    """Invert :func:`normalize`: ``x * std + mean`` (channel axis -4)."""
    m = _channel_stats(video, mean, "mean")
    s = _channel_stats(video, std, "std")
    return video * s + m


# --------------------------------------------------------------------------------------------
# Stimulus checks
# --------------------------------------------------------------------------------------------

# Slack on the [0, 1] range for float rounding (e.g. a clip resized or converted elsewhere).
_RANGE_SLACK = 1e-3


def check_stimulus(video, name: str = "stimulus") -> torch.Tensor:
    """Check that ``video`` can prime an inversion; return it unchanged.

    A stimulus is a floating-point tensor ``3 x T x H x W`` (``T, H, W >= 1``) of finite pixel
    values in ``[0, 1]``. Raises :class:`ShapeError` for a wrong type, dtype or shape and
    :class:`VideoError` for NaN/inf or out-of-range values, each naming ``name`` (e.g.
    ``"stimulus 2"`` or a path), so that a bad input is reported where it enters rather than
    as a NaN loss many steps later.
    """
    if not isinstance(video, torch.Tensor):
        raise ShapeError(f"{name} must be a video path or a 3 x T x H x W tensor, got {type(video).__name__}")
    if not video.is_floating_point():
        hint = " (pixel values 0-255? use video.float() / 255)" if video.dtype == torch.uint8 else ""
        raise ShapeError(f"{name} has dtype {video.dtype}: expected floats in [0, 1]{hint}")
    if video.ndim != 4 or video.shape[0] != 3 or min(video.shape) < 1:
        raise ShapeError(f"{name} must be 3 x T x H x W (RGB, T >= 1 frames), got shape {tuple(video.shape)}")
    values = video.detach()
    if not bool(torch.isfinite(values).all()):
        raise VideoError(f"{name} contains NaN or inf values")
    lo, hi = (float(v) for v in torch.aminmax(values.float()))
    if lo < -_RANGE_SLACK or hi > 1 + _RANGE_SLACK:
        if lo >= 0 and hi <= 255:
            hint = " (pixel values 0-255? divide by 255)"
        elif lo < 0:
            hint = " (normalised? give pixels in [0, 1], e.g. leaps.video.denormalize(video, mean, std))"
        else:
            hint = ""
        raise VideoError(f"{name} has values in [{lo:.4g}, {hi:.4g}], expected pixels in [0, 1]{hint}")
    return video


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_for_reading(path: Path):
    """Open ``path`` with PyAV and yield ``(container, first video stream)``.

    Any PyAV/FFmpeg failure is turned into a :class:`VideoError` naming the file.
    """
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"cannot decode video {path}: {exc}") from exc
    try:
        if not container.streams.video:
            raise VideoError(f"cannot decode video {path}: the file contains no video stream")
        stream = container.streams.video[0]
        _refuse_still_image(container, path)
        if stream.codec_context is None:  # PyAV found no decoder for the stream's codec id
            raise VideoError(f"cannot decode video {path}: no decoder for its video codec")
        _refuse_huge_frames(stream.codec_context.width, stream.codec_context.height, path, "declares")
        stream.thread_type = "AUTO"  # frame-level threading: decoding dominates read time
        # Backstop for headers that lie about the size: the decoder refuses bigger frames.
        stream.codec_context.options = {"max_pixels": str(MAX_FRAME_PIXELS)}
        yield container, stream
    except LeapsError:
        raise
    except (av.FFmpegError, OSError, ValueError, RuntimeError) as exc:
        raise VideoError(f"cannot decode video {path}: {exc}") from exc
    finally:
        container.close()


def _is_still_image(container) -> bool:
    names = container.format.name.split(",")
    return any(n in _IMAGE_DEMUXERS or (n.endswith("_pipe") and n != "gif_pipe") for n in names)


def _refuse_still_image(container, path: Path) -> None:
    if _is_still_image(container):
        raise VideoError(
            f"{path} is a still image ({container.format.name}); LEAPS primes space-time features and "
            f"coherence from a video: give a clip (mp4, gif, webm, ...)"
        )


def _refuse_huge_frames(width: int, height: int, path: Path, verb: str) -> None:
    if width * height > MAX_FRAME_PIXELS:
        raise VideoError(
            f"video {path} {verb} frames of {width} x {height} pixels, more than the limit of "
            f"{MAX_FRAME_PIXELS:,} (8K UHD); downscale it first, e.g. ffmpeg -i IN -vf scale=-2:720 OUT.mp4"
        )


def _estimate_frame_count(path: Path) -> tuple[int, int]:
    """Frame count from the container header, else by counting packets (no decoding), and the
    declared pixels of a frame.

    Only an estimate: :func:`read_video` checks it against the frames actually decoded.
    """
    with _open_for_reading(path) as (container, stream):
        pixels = stream.codec_context.width * stream.codec_context.height
        if stream.frames and stream.frames > 0:
            return int(stream.frames), pixels
        # Demuxing is much cheaper than decoding; one packet carries one video frame for
        # all common codecs.
        return sum(1 for packet in container.demux(stream) if packet.size > 0), pixels


def _refuse_long_decodes(pixels: int, path: Path, what: str) -> None:
    if pixels > MAX_DECODED_PIXELS:
        raise VideoError(
            f"video {path} {what} more than {MAX_DECODED_PIXELS:,} pixels to decode (20 minutes of 1080p); "
            f"trim or downscale it first, e.g. ffmpeg -i IN -t 30 -vf scale=-2:360 OUT.mp4"
        )


def _decode_selected(path: Path, wanted: set[int], size: int) -> tuple[dict[int, torch.Tensor], int]:
    """Decode ``path`` once, keeping only frames whose index is in ``wanted``.

    Kept frames are resized and cropped immediately so that memory stays
    ``O(len(wanted) * size^2)`` however long or large the video is. Returns the kept frames
    by index and the number of frames decoded. Stops with a VideoError once more than
    :data:`MAX_DECODED_PIXELS` were decoded.
    """
    kept: dict[int, torch.Tensor] = {}
    count = decoded = 0
    with _open_for_reading(path) as (container, stream):
        for index, frame in enumerate(container.decode(stream)):
            count = index + 1
            decoded += frame.width * frame.height
            _refuse_long_decodes(decoded, path, "holds")
            if index in wanted:
                _refuse_huge_frames(frame.width, frame.height, path, "has")
                rgb = torch.from_numpy(frame.to_ndarray(format="rgb24"))
                image = rgb.permute(2, 0, 1).float().div_(255.0)
                kept[index] = _resize_short_side_and_crop(image, size).clamp_(0.0, 1.0)
    return kept, count


def read_video(path, frames: int, size: int, *, mean=None, std=None) -> torch.Tensor:
    """Read a video file as a float tensor ``3 x frames x size x size``.

    ``frames`` indices are sampled evenly over the whole clip (:func:`sample_indices`), each
    frame's short side is resized to ``size`` (bilinear, antialiased) and the centre
    ``size x size`` square is cropped. Values are in ``[0, 1]``; when ``mean`` and ``std``
    (3 values each) are given the result is normalised as ``(x - mean) / std``.
    Any container PyAV can demux works (mp4, avi, webm, mkv, gif, ...). Still images (png,
    jpeg, ...) are refused, as are frames larger than :data:`MAX_FRAME_PIXELS` and files that
    would decode more than :data:`MAX_DECODED_PIXELS` in all; only the sampled frames are kept,
    so memory does not grow with the length of the clip.
    """
    frames = _check_positive_int("frames", frames)
    size = _check_positive_int("size", size)
    if (mean is None) != (std is None):
        raise ShapeError("give both mean and std, or neither")
    path = Path(path)
    if not path.exists():
        raise VideoError(f"video not found: {path}")
    if not path.is_file():
        raise VideoError(f"cannot decode video {path}: not a regular file")
    if path.stat().st_size == 0:
        raise VideoError(f"video {path} has no frames (the file is empty)")

    estimate, pixels = _estimate_frame_count(path)
    _refuse_long_decodes(estimate * pixels, path, f"declares {estimate:,} frames:")
    indices = sample_indices(estimate, frames) if estimate > 0 else []
    kept, actual = _decode_selected(path, set(indices), size)
    if actual == 0:
        raise VideoError(f"video {path} has no frames")
    if actual != estimate:
        # The header/packet count was wrong: resample with the true count, and decode a
        # second time only if frames we now need were not kept.
        indices = sample_indices(actual, frames)
        missing = set(indices) - kept.keys()
        if missing:
            more, _ = _decode_selected(path, missing, size)
            kept.update(more)
        if set(indices) - kept.keys():  # a second decode gave fewer frames than the first
            raise VideoError(f"cannot decode video {path}: the frames decoded differ from one read to the next")
    video = torch.stack([kept[i] for i in indices], dim=1)  # 3 x T x S x S
    if mean is not None:
        video = normalize(video, mean, std)
    return video.contiguous()


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _atomic_target(path: Path):
    """:func:`leaps._atomic.atomic_path`, with every failure reported as a VideoError."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            yield tmp
    except LeapsError:
        raise
    except Exception as exc:  # av errors, OSError, anything from the encoder
        raise VideoError(f"cannot write {path}: {exc}") from exc


def _check_video_tensor(video, path, *, batch_ok: bool = False) -> torch.Tensor:
    """Validate a ``3 x T x H x W`` (or ``B x 3 x T x H x W``) tensor; return it float in [0, 1]."""
    expected = "3 x T x H x W" + (" or B x 3 x T x H x W" if batch_ok else "")
    if not isinstance(video, torch.Tensor):
        raise ShapeError(f"cannot write {path}: expected a tensor {expected}, got {type(video).__name__}")
    ok_ndim = video.ndim == 4 or (batch_ok and video.ndim == 5)
    if not ok_ndim or video.shape[-4] != 3 or any(d < 1 for d in video.shape):
        raise ShapeError(
            f"cannot write {path}: expected a tensor {expected} with 3 colour channels, "
            f"got shape {tuple(video.shape)}"
        )
    video = video.detach().cpu()
    if video.dtype == torch.uint8:
        video = video.float() / 255.0
    video = video.float()
    if not bool(torch.isfinite(video).all()):
        raise VideoError(f"cannot write {path}: the video contains NaN or inf values")
    return video.clamp(0.0, 1.0)


def _to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """``3 x T x H x W`` floats in [0, 1] -> ``T x H x W x 3`` uint8 (rounded)."""
    return (video.permute(1, 2, 3, 0) * 255.0).round().to(torch.uint8).numpy()


def _pad_to_even(frames: np.ndarray) -> np.ndarray:
    """Pad ``T x H x W x 3`` by repeating the last row/column so H and W are even.

    yuv420p stores chroma at half resolution, so most encoders reject odd sizes; padding
    (rather than cropping) keeps every pixel of the original.
    """
    _, h, w, _ = frames.shape
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _gif_palette(frames: np.ndarray, colours: int = 256, iters: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Quantise ``T x H x W x 3`` uint8 frames to one shared palette (no flicker between frames).

    Pixels are binned to 5 bits per channel; the ``colours`` most populated bins seed a
    weighted k-means (Lloyd) on the bin means, and each bin maps to its nearest palette
    colour. Returns ``(indices T x H x W uint8, palette colours x 3 uint8)``.
    """
    px = frames.reshape(-1, 3).astype(np.int64)
    bins = ((px[:, 0] >> 3) << 10) | ((px[:, 1] >> 3) << 5) | (px[:, 2] >> 3)
    occupied, inverse, counts = np.unique(bins, return_inverse=True, return_counts=True)
    sums = np.stack([np.bincount(inverse, weights=px[:, c]) for c in range(3)], axis=1)
    points = torch.from_numpy(sums / counts[:, None])  # mean colour of each occupied bin
    weights = torch.from_numpy(counts.astype(np.float64))
    centres = points[torch.argsort(weights, descending=True)[:colours]].clone()
    for _ in range(iters):
        assign = torch.cdist(points, centres).argmin(dim=1)
        total = torch.zeros(len(centres), dtype=torch.float64).index_add_(0, assign, weights)
        moved = torch.zeros_like(centres).index_add_(0, assign, points * weights[:, None])
        used = total > 0
        centres[used] = moved[used] / total[used, None]
    assign = torch.cdist(points, centres).argmin(dim=1).numpy()
    palette = centres.round().clamp(0, 255).to(torch.uint8).numpy()
    indices = assign[inverse].astype(np.uint8).reshape(frames.shape[:3])
    return indices, palette


def _gif_frames(frames: np.ndarray) -> list[av.VideoFrame]:
    """Build ``pal8`` frames sharing one adaptive palette (the gif encoder keeps it as is)."""
    indices, palette = _gif_palette(frames)
    argb = np.zeros((256, 4), dtype=np.uint8)
    argb[:, 0] = 255  # opaque; PyAV expects the palette as ARGB rows
    argb[: len(palette), 1:] = palette
    return [av.VideoFrame.from_ndarray((idx, argb), format="pal8") for idx in indices]


def _add_stream(container, codecs: tuple[str, ...], rate: Fraction):
    """Add a video stream with the first available codec in ``codecs`` (e.g. libx264 -> mpeg4)."""
    errors = []
    for name in codecs:
        try:
            stream = container.add_stream(name, rate=rate, options=_CODEC_OPTIONS.get(name, {}))
        except (av.FFmpegError, ValueError) as exc:  # codec not built into this FFmpeg
            errors.append(f"{name}: {exc}")
            continue
        if name in _CODEC_BIT_RATE:
            stream.bit_rate = _CODEC_BIT_RATE[name]
        stream.thread_count = 1  # threaded encoders may split work differently from run to run
        return stream
    raise VideoError(f"no usable encoder among {', '.join(codecs)} ({'; '.join(errors)})")


def _encode(tmp: Path, fmt: str, codecs, pix_fmt: str, frames: np.ndarray, rate: Fraction) -> None:
    """Encode ``T x H x W x 3`` uint8 frames into ``tmp`` with the given container format."""
    # bitexact: no random ids (Matroska's SegmentUID) nor library versions in the file, so the
    # same frames give the same bytes. gif: loop forever.
    options = {"fflags": "+bitexact", **({"loop": "0"} if fmt == "gif" else {})}
    with av.open(str(tmp), mode="w", format=fmt, options=options) as container:
        stream = _add_stream(container, codecs, rate)
        if pix_fmt == "pal8":
            av_frames = _gif_frames(frames)
        else:
            frames = _pad_to_even(frames)
            av_frames = [av.VideoFrame.from_ndarray(f, format="rgb24") for f in frames]
        stream.width, stream.height = av_frames[0].width, av_frames[0].height
        stream.pix_fmt = pix_fmt
        for i, frame in enumerate(av_frames):
            frame.pts = i
            frame.time_base = Fraction(1) / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))  # flush delayed frames


def _frame_rate(fps, path) -> Fraction:
    try:
        rate = Fraction(fps).limit_denominator(1001)
    except (TypeError, ValueError) as exc:
        raise VideoError(f"cannot write {path}: fps must be a number, got {fps!r}") from exc
    if rate <= 0:
        raise VideoError(f"cannot write {path}: fps must be positive, got {fps!r}")
    return rate


def write_video(video: torch.Tensor, path, fps: float = 8) -> Path:
    """Write a ``3 x T x H x W`` video with values in ``[0, 1]`` (clamped) to ``path``.

    The format follows the extension: ``.mp4``/``.mkv`` (H.264 via libx264, falling back to
    MPEG-4 part 2; yuv420p, odd sizes padded by one edge pixel), ``.gif`` (one adaptive
    256-colour palette, loops forever), ``.webm`` (VP8) or ``.avi`` (MPEG-4 part 2).
    The write is atomic. Returns the path.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _VIDEO_FORMATS:
        raise VideoError(
            f"cannot write {path}: unsupported extension {path.suffix!r} "
            f"(use one of {', '.join(sorted(_VIDEO_FORMATS))})"
        )
    video = _check_video_tensor(video, path)
    rate = _frame_rate(fps, path)
    fmt, codecs, pix_fmt = _VIDEO_FORMATS[suffix]
    frames = _to_uint8_frames(video)
    with _atomic_target(path) as tmp:
        _encode(tmp, fmt, codecs, pix_fmt, frames, rate)
    return path


# --------------------------------------------------------------------------------------------
# Contact sheet (PNG)
# --------------------------------------------------------------------------------------------


# A 5 x 7 bitmap font (upper case, digits, punctuation): each glyph is 7 rows of 5 bits, as hex.
# Labels are drawn upper case; characters without a glyph are drawn as "?".
_GLYPHS = {
    " ": "00000000000000", "A": "0e1111111f1111", "B": "1e11111e11111e", "C": "0e11101010110e",
    "D": "1c12111111121c", "E": "1f10101e10101f", "F": "1f10101e101010", "G": "0e11101711110f",
    "H": "1111111f111111", "I": "0e04040404040e", "J": "0702020202120c", "K": "11121418141211",
    "L": "1010101010101f", "M": "111b1515111111", "N": "11111915131111", "O": "0e11111111110e",
    "P": "1e11111e101010", "Q": "0e11111115120d", "R": "1e11111e141211", "S": "0f10100e01011e",
    "T": "1f040404040404", "U": "1111111111110e", "V": "11111111110a04", "W": "1111111515150a",
    "X": "11110a040a1111", "Y": "1111110a040404", "Z": "1f01020408101f", "0": "0e11131519110e",
    "1": "040c040404040e", "2": "0e11010204081f", "3": "1f02040201110e", "4": "02060a121f0202",
    "5": "1f101e0101110e", "6": "0608101e11110e", "7": "1f010204080808", "8": "0e11110e11110e",
    "9": "0e11110f01020c", ".": "00000000000c0c", ",": "000000000c0408", ":": "000c0c000c0c00",
    ";": "000c0c000c0408", "%": "18190204081303", "-": "0000001f000000", "_": "0000000000001f",
    "/": "00010204081000", "(": "02040808080402", ")": "08040202020408", "'": "0c040800000000",
    '"': "0a0a0a00000000", "=": "00001f001f0000", "+": "0004041f040400", "?": "0e110102040004",
    "!": "04040404000004", "#": "0a0a1f0a1f0a0a", "*": "0004150e150400", "<": "02040810080402",
    ">": "08040201020408", "[": "0e08080808080e", "]": "0e02020202020e", "&": "0c12140815120d",
}
_GLYPH_W, _GLYPH_H = 5, 7
_CHAR_PITCH, _LINE_PITCH = _GLYPH_W + 1, _GLYPH_H + 2  # one column / two rows of spacing
_LABEL_MARGIN = 4  # white pixels around the label column's text


def _glyph(char: str) -> np.ndarray:
    """``7 x 5`` bool mask of one character."""
    code = _GLYPHS.get(char.upper(), _GLYPHS["?"])
    rows = [int(code[i : i + 2], 16) for i in range(0, 2 * _GLYPH_H, 2)]
    return np.array([[(r >> (_GLYPH_W - 1 - c)) & 1 for c in range(_GLYPH_W)] for r in rows], dtype=bool)


def _text_mask(text: str) -> np.ndarray:
    """Bool mask ``lines * 9 - 2 x longest * 6 - 1`` of ``text`` (lines split at newlines)."""
    lines = text.split("\n")
    width = max(1, max(len(line) for line in lines) * _CHAR_PITCH - 1)
    mask = np.zeros((len(lines) * _LINE_PITCH - 2, width), dtype=bool)
    for i, line in enumerate(lines):
        for j, char in enumerate(line):
            y, x = i * _LINE_PITCH, j * _CHAR_PITCH
            mask[y : y + _GLYPH_H, x : x + _GLYPH_W] = _glyph(char)
    return mask


def _label_column(labels: list[str], row_height: int, gap: int) -> np.ndarray:
    """``H' x W_label x 3`` uint8: each row's label in black on white, top-aligned with its row.

    Text taller than the row is cut at the row's bottom edge.
    """
    masks = [_text_mask(str(label)) for label in labels]
    width = max(m.shape[1] for m in masks) + 2 * _LABEL_MARGIN
    height = len(labels) * row_height + (len(labels) - 1) * gap
    column = np.full((height, width, 3), 255, dtype=np.uint8)
    for i, mask in enumerate(masks):
        top = i * (row_height + gap) + min(_LABEL_MARGIN, max(0, row_height - _GLYPH_H) // 2)
        visible = mask[: max(0, (i + 1) * (row_height + gap) - gap - top)]
        column[top : top + visible.shape[0], _LABEL_MARGIN : _LABEL_MARGIN + visible.shape[1]][visible] = 0
    return column


def _sheet_image(video: torch.Tensor, gap: int) -> np.ndarray:
    """Tile frames into an ``H' x W' x 3`` uint8 image: one row per video, frames left to right.

    ``W' = T*W + (T-1)*gap`` and ``H' = B*H + (B-1)*gap``; gaps are white.
    """
    batch = video if video.ndim == 5 else video[None]
    b, _, t, h, w = batch.shape
    sheet = torch.ones(3, b * h + (b - 1) * gap, t * w + (t - 1) * gap)
    for i in range(b):
        for j in range(t):
            y, x = i * (h + gap), j * (w + gap)
            sheet[:, y : y + h, x : x + w] = batch[i, :, j]
    return (sheet.permute(1, 2, 0) * 255.0).round().to(torch.uint8).numpy()


def _encode_png_av(image: np.ndarray) -> bytes:
    """Encode an ``H x W x 3`` uint8 image with FFmpeg's png encoder (no muxer needed)."""
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height = image.shape[1], image.shape[0]
    codec.pix_fmt = "rgb24"
    codec.time_base = Fraction(1, 1)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    frame.pts = 0
    packets = codec.encode(frame) + codec.encode(None)
    return b"".join(bytes(p) for p in packets)


def _encode_png_python(image: np.ndarray) -> bytes:
    """Minimal PNG writer (8-bit RGB, filter 0, zlib) used if FFmpeg lacks the png encoder."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w, _ = image.shape
    raw = b"".join(b"\x00" + image[y].tobytes() for y in range(h))
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def write_contact_sheet(video: torch.Tensor, path, *, gap: int = 2, labels=None) -> Path:
    """Write a PNG showing all frames side by side (one row per video for a batch).

    ``video`` is ``3 x T x H x W`` or ``B x 3 x T x H x W`` in ``[0, 1]``. The image is
    ``T*W + (T-1)*gap`` wide and ``B*H + (B-1)*gap`` high. With ``labels`` (one string per
    row, newlines allowed) a white column on the left shows each row's label in a 5 x 7 pixel
    font (upper case), top-aligned with its row; the image is wider by that column. The write is
    atomic.
    """
    path = Path(path)
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 0:
        raise ShapeError(f"cannot write {path}: gap must be a non-negative integer, got {gap!r}")
    video = _check_video_tensor(video, path, batch_ok=True)
    image = _sheet_image(video, gap)
    if labels is not None:
        rows = video.shape[0] if video.ndim == 5 else 1
        labels = [labels] if isinstance(labels, str) else list(labels)
        if len(labels) != rows:
            raise ShapeError(f"cannot write {path}: got {len(labels)} labels for {rows} rows")
        image = np.concatenate([_label_column(labels, video.shape[-2], gap), image], axis=1)
    try:
        data = _encode_png_av(image)
    except (av.FFmpegError, ValueError):  # FFmpeg built without the png encoder
        data = _encode_png_python(image)
    with _atomic_target(path) as tmp:
        tmp.write_bytes(data)
    return path


# --------------------------------------------------------------------------------------------
# Bundled outputs
# --------------------------------------------------------------------------------------------


def _grid(batch: torch.Tensor, gap: int = 2) -> torch.Tensor:
    """Tile ``B x 3 x T x H x W`` into one ``3 x T x H' x W'`` video on a near-square grid."""
    b, _, t, h, w = batch.shape
    cols = math.ceil(math.sqrt(b))
    rows = math.ceil(b / cols)
    out = torch.ones(3, t, rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap)
    for i in range(b):
        y, x = (i // cols) * (h + gap), (i % cols) * (w + gap)
        out[:, :, y : y + h, x : x + w] = batch[i]
    return out


def run_metadata(config=None, **extra) -> dict:
    """What produced a set of outputs: library versions, the seed and every option of ``config``.

    ``config`` is an :class:`~leaps.config.InversionConfig` (or any dataclass); ``extra`` entries
    (model names, targets, ...) are added as given. Values must be JSON-serialisable or are
    written as ``str``.
    """
    import dataclasses
    import platform

    import leaps

    meta = {
        "leaps_version": leaps.__version__,
        "torch_version": torch.__version__,
        "av_version": av.__version__,
        "python_version": platform.python_version(),
    }
    if config is not None:
        options = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
        meta["seed"] = options.get("seed")
        meta["config"] = options
    meta.update(extra)
    return meta


def save_outputs(video: torch.Tensor, out_dir, stem: str = "leaps", fps: float = 8, *, labels=None,
                 metadata: dict | None = None) -> dict[str, Path]:
    """Write a video (``3 x T x H x W``) or batch (``B x 3 x T x H x W``) in ``[0, 1]`` to ``out_dir``.

    Always writes ``{stem}.mp4``, ``{stem}.gif`` and the contact sheet ``{stem}.png`` (one row
    per sample, labelled with ``labels`` when given, see :func:`write_contact_sheet`). For
    ``B > 1`` the mp4/gif show all samples tiled on a grid, and each sample is also written as
    ``{stem}_{i}.mp4`` / ``{stem}_{i}.gif``. With ``metadata`` (e.g. :func:`run_metadata`) it
    is written as JSON to ``{stem}_run.json``. Returns the paths keyed ``'mp4'``, ``'gif'``,
    ``'png'``, ``'run'`` (with metadata) and, for ``B > 1``, ``'mp4_0'``, ``'gif_0'``, ...
    """
    out_dir = Path(out_dir)
    if not stem or Path(stem).name != stem:
        raise VideoError(f"cannot write to {out_dir}: stem must be a plain file name, got {stem!r}")
    video = _check_video_tensor(video, out_dir / stem, batch_ok=True)
    batch = video if video.ndim == 5 else video[None]
    paths: dict[str, Path] = {}
    combined = batch[0] if len(batch) == 1 else _grid(batch)
    for ext in ("mp4", "gif"):
        paths[ext] = write_video(combined, out_dir / f"{stem}.{ext}", fps=fps)
    paths["png"] = write_contact_sheet(batch, out_dir / f"{stem}.png", labels=labels)
    if len(batch) > 1:
        for i, sample in enumerate(batch):
            for ext in ("mp4", "gif"):
                paths[f"{ext}_{i}"] = write_video(sample, out_dir / f"{stem}_{i}.{ext}", fps=fps)
    if metadata is not None:
        paths["run"] = write_json(metadata, out_dir / f"{stem}_run.json")
    return paths


def write_json(data: dict, path) -> Path:
    """Write ``data`` as indented JSON (non-JSON values as ``str``), atomically; return the path."""
    path = Path(path)
    text = json.dumps(data, indent=1, default=str)
    with _atomic_target(path) as tmp:
        tmp.write_text(text + "\n")
    return path


# --------------------------------------------------------------------------------------------
# Synthetic stimulus
# --------------------------------------------------------------------------------------------


def synthetic_clip(frames: int = 16, size: int = 64) -> torch.Tensor:
    """A deterministic ``3 x frames x size x size`` clip in ``[0, 1]``.

    Background: red rises left to right, blue top to bottom, green is 0.2. A green-yellow
    square of side ``max(1, size // 4)`` (RGB 0.9, 0.9, 0.1) moves from the left edge
    (frame 0) to the right edge (last frame), vertically centred.
    """
    frames = _check_positive_int("frames", frames)
    size = _check_positive_int("size", size)
    ramp = torch.linspace(0.0, 1.0, size)
    background = torch.stack(
        [ramp[None, :].expand(size, size), torch.full((size, size), 0.2), ramp[:, None].expand(size, size)]
    )
    clip = background[:, None].repeat(1, frames, 1, 1)
    side = max(1, size // 4)
    top = (size - side) // 2
    for t in range(frames):
        left = round(t * (size - side) / max(frames - 1, 1))
        clip[:, t, top : top + side, left : left + side] = torch.tensor([0.9, 0.9, 0.1])[:, None, None]
    return clip


def make_test_video(path, frames: int = 16, size: int = 64, fps: float = 8) -> Path:
    """Write :func:`synthetic_clip` to ``path`` (format from the extension); return the path."""
    return write_video(synthetic_clip(frames, size), path, fps=fps)
