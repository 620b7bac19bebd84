"""Tests for leaps.video: PyAV round trips, sampling, geometry, errors and atomic writes."""

import os
import struct
import zlib

import av
import numpy as np
import pytest
import torch

from leaps import video as V
from leaps.errors import LeapsError, ShapeError, VideoError
from leaps.video import (
    denormalize,
    make_test_video,
    normalize,
    read_video,
    sample_indices,
    save_outputs,
    synthetic_clip,
    write_contact_sheet,
    write_video,
)


def square_column(video):
    """Column centroid of the moving square per frame: the only pixels with green > 0.55."""
    mask = (video[1] > 0.55).float()  # T x H x W; background green is 0.2
    columns = torch.arange(video.shape[-1], dtype=torch.float32)
    return (mask.sum(dim=1) * columns).sum(dim=-1) / mask.sum(dim=(1, 2)).clamp_min(1)


def leftover_temp_files(directory):
    return [p.name for p in directory.iterdir() if ".tmp-" in p.name]


# --------------------------------------------------------------------------------------------
# sample_indices
# --------------------------------------------------------------------------------------------


def test_sample_indices_centred_bins():
    assert sample_indices(100, 4) == [12, 37, 62, 87]
    assert sample_indices(10, 10) == list(range(10))
    assert sample_indices(1, 5) == [0] * 5


@pytest.mark.parametrize("total,n", [(7, 3), (16, 16), (300, 8), (5, 16), (3, 1), (1000, 7)])
def test_sample_indices_properties(total, n):
    idx = sample_indices(total, n)
    assert len(idx) == n
    assert all(0 <= i < total for i in idx)
    assert idx == sorted(idx)
    steps = np.diff(idx)
    if total >= n:
        assert len(set(idx)) == n  # no repeats when the clip is long enough
        # evenly spaced: consecutive gaps differ by at most one frame
        if n > 1:
            assert steps.max() - steps.min() <= 1
    else:
        assert len(set(idx)) == total  # every frame used, some repeated
        assert max(idx.count(i) for i in set(idx)) == -(-n // total)


def test_sample_indices_rejects_bad_counts():
    with pytest.raises(ShapeError):
        sample_indices(0, 4)
    with pytest.raises(ShapeError):
        sample_indices(10, 0)


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


def test_mp4_round_trip_shape_and_content(tmp_path):
    path = make_test_video(tmp_path / "clip.mp4", frames=16, size=64)
    assert path.exists() and path.stat().st_size > 0
    video = read_video(path, 16, 64)
    assert video.shape == (3, 16, 64, 64) and video.dtype == torch.float32
    assert 0.0 <= video.min() and video.max() <= 1.0
    reference = synthetic_clip(16, 64)
    # Lossy codec: per-channel mean colour and average error stay small.
    assert torch.allclose(video.mean(dim=(1, 2, 3)), reference.mean(dim=(1, 2, 3)), atol=0.02)
    assert (video - reference).abs().mean() < 0.03
    # The square moves left to right and is found where it was drawn.
    cols = square_column(video)
    assert (cols - square_column(reference)).abs().max() <= 1.0
    assert cols[-1] - cols[0] > 40


def test_mp4_stream_metadata(tmp_path):
    path = write_video(torch.rand(3, 5, 32, 48), tmp_path / "meta.mp4", fps=12)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (48, 32)
        assert stream.average_rate == 12
        assert stream.codec_context.name in ("h264", "mpeg4")
        assert sum(1 for _ in container.decode(stream)) == 5


def test_odd_size_is_padded_to_even(tmp_path):
    clip = torch.rand(3, 3, 31, 45)
    path = write_video(clip, tmp_path / "odd.mp4")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (46, 32)


def test_gif_round_trip(tmp_path):
    path = make_test_video(tmp_path / "clip.gif", frames=12, size=48)
    assert path.read_bytes()[:6] == b"GIF89a"
    assert b"NETSCAPE2.0" in path.read_bytes()  # loop extension present
    video = read_video(path, 12, 48)
    reference = synthetic_clip(12, 48)
    assert video.shape == (3, 12, 48, 48)
    assert (video - reference).abs().mean() < 0.03  # 256-colour palette error only
    assert (square_column(video) - square_column(reference)).abs().max() <= 1


@pytest.mark.parametrize("ext", [".webm", ".avi", ".mkv"])
def test_other_containers_round_trip(tmp_path, ext):
    path = make_test_video(tmp_path / f"clip{ext}", frames=8, size=32)
    video = read_video(path, 8, 32)
    assert video.shape == (3, 8, 32, 32)
    assert (video - synthetic_clip(8, 32)).abs().mean() < 0.05


def test_read_samples_evenly_from_longer_clip(tmp_path):
    # Each frame is a flat grey level encoding its index, so we can tell which ones came back.
    total = 30
    levels = torch.linspace(0.05, 0.95, total)
    clip = levels.view(1, total, 1, 1).expand(3, total, 16, 16).clone()
    path = write_video(clip, tmp_path / "ramp.avi")
    video = read_video(path, 5, 16)
    got = video.mean(dim=(0, 2, 3))
    expected = levels[sample_indices(total, 5)]
    assert torch.allclose(got, expected, atol=0.02)


def test_read_repeats_frames_of_short_clip(tmp_path):
    clip = torch.stack([torch.full((3, 16, 16), v) for v in (0.1, 0.5, 0.9)], dim=1)
    path = write_video(clip, tmp_path / "short.mp4")
    video = read_video(path, 7, 16)
    assert video.shape == (3, 7, 16, 16)
    got = video.mean(dim=(0, 2, 3))
    expected = torch.tensor([0.1, 0.5, 0.9])[sample_indices(3, 7)]
    assert torch.allclose(got, expected, atol=0.02)


def test_centre_crop_of_non_square_input(tmp_path):
    # 32 x 96 frame: left third red, middle third green, right third blue.
    frame = torch.zeros(3, 1, 32, 96)
    frame[0, :, :, :32] = 1
    frame[1, :, :, 32:64] = 1
    frame[2, :, :, 64:] = 1
    path = write_video(frame.repeat(1, 2, 1, 1), tmp_path / "wide.avi")
    video = read_video(path, 1, 16)  # short side 32 -> 16, width 96 -> 48, centre crop 16
    assert video.shape == (3, 1, 16, 16)
    centre = video[:, 0, :, 4:12].mean(dim=(1, 2))
    assert centre[1] > 0.8 and centre[0] < 0.2 and centre[2] < 0.2  # only the green middle

    # Tall input: the crop keeps the middle rows.
    tall = frame.transpose(2, 3).contiguous()  # 96 x 32, red top, green middle, blue bottom
    path = write_video(tall.repeat(1, 2, 1, 1), tmp_path / "tall.avi")
    video = read_video(path, 1, 8)
    middle = video[:, 0, 2:6, :].mean(dim=(1, 2))
    assert middle[1] > 0.8 and middle[0] < 0.2 and middle[2] < 0.2


def test_resize_helper_downscales_with_antialias():
    image = torch.zeros(3, 40, 80)
    image[:, :, ::2] = 1.0  # 1-pixel stripes average to grey when downscaled properly
    out = V._resize_short_side_and_crop(image, 10)
    assert out.shape == (3, 10, 10)
    assert torch.allclose(out, torch.full_like(out, 0.5), atol=0.05)


def test_read_with_normalisation(tmp_path):
    path = make_test_video(tmp_path / "clip.mp4", frames=4, size=32)
    mean, std = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
    raw = read_video(path, 4, 32)
    normed = read_video(path, 4, 32, mean=mean, std=std)
    assert torch.allclose(normed, (raw - 0.45) / 0.225, atol=1e-5)
    assert torch.allclose(denormalize(normed, mean, std), raw, atol=1e-5)


def test_normalize_broadcasts_over_channel_axis():
    batch = torch.rand(2, 3, 4, 5, 6)
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 2.0]
    out = normalize(batch, mean, std)
    for c in range(3):
        assert torch.allclose(out[:, c], (batch[:, c] - mean[c]) / std[c])
    assert torch.allclose(denormalize(out, mean, std), batch, atol=1e-6)
    with pytest.raises(ShapeError):
        normalize(torch.rand(4, 4, 5, 6), mean, std)  # 4 channels
    with pytest.raises(ShapeError):
        normalize(batch, [0.1, 0.2], std)
    with pytest.raises(ShapeError):
        normalize(batch, mean, [1.0, 0.0, 1.0])


# --------------------------------------------------------------------------------------------
# Reading errors
# --------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.mp4"
    with pytest.raises(VideoError, match="video not found") as info:
        read_video(path, 4, 32)
    assert str(path) in str(info.value)


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match="cannot decode video") as info:
        read_video(path, 4, 32)
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, av.FFmpegError)  # wrapped, not swallowed


def test_text_file_is_not_a_video(tmp_path):
    path = tmp_path / "notes.avi"
    path.write_text("hello, this is not a video\n" * 20)
    with pytest.raises(VideoError, match="cannot decode video"):
        read_video(path, 4, 32)


def test_directory_is_not_a_video(tmp_path):
    with pytest.raises(VideoError, match="cannot decode video"):
        read_video(tmp_path, 4, 32)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(VideoError, match="has no frames") as info:
        read_video(path, 4, 32)
    assert str(path) in str(info.value)


def test_container_with_zero_frames(tmp_path):
    # A valid AVI header with a video stream but no frames at all.
    path = tmp_path / "zero.avi"
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()
    with pytest.raises(VideoError, match="has no frames"):
        read_video(path, 4, 32)


@pytest.mark.parametrize("frames,size", [(0, 32), (4, 0), (-1, 32), (2.5, 32), (True, 32)])
def test_bad_frames_or_size(tmp_path, frames, size):
    path = make_test_video(tmp_path / "clip.mp4", frames=2, size=16)
    with pytest.raises(ShapeError):
        read_video(path, frames, size)


# --------------------------------------------------------------------------------------------
# Writing errors and atomicity
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 16, 16), (4, 2, 16, 16), (1, 3, 2, 16, 16), (3, 0, 16, 16)])
def test_write_wrong_shape(tmp_path, shape):
    with pytest.raises(ShapeError, match="3 x T x H x W"):
        write_video(torch.rand(shape), tmp_path / "bad.mp4")
    assert list(tmp_path.iterdir()) == []


def test_write_rejects_nan_and_unknown_extension(tmp_path):
    bad = torch.rand(3, 2, 8, 8)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(VideoError, match="NaN"):
        write_video(bad, tmp_path / "nan.mp4")
    with pytest.raises(VideoError, match="unsupported extension"):
        write_video(torch.rand(3, 2, 8, 8), tmp_path / "clip.xyz")
    with pytest.raises(VideoError, match="fps"):
        write_video(torch.rand(3, 2, 8, 8), tmp_path / "clip.mp4", fps=0)
    assert list(tmp_path.iterdir()) == []


def test_write_clamps_out_of_range_values(tmp_path):
    clip = torch.full((3, 2, 16, 16), 2.0)
    clip[:, :, :, :8] = -1.0
    video = read_video(write_video(clip, tmp_path / "clamp.avi"), 2, 16)
    assert video[:, :, :, :6].mean() < 0.05 and video[:, :, :, 10:].mean() > 0.95


def test_successful_write_leaves_no_temp_files(tmp_path):
    write_video(torch.rand(3, 2, 16, 16), tmp_path / "a.mp4")
    write_video(torch.rand(3, 2, 16, 16), tmp_path / "a.gif")
    write_contact_sheet(torch.rand(3, 2, 16, 16), tmp_path / "a.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif", "a.mp4", "a.png"]


def test_failed_write_keeps_existing_file(tmp_path, monkeypatch):
    target = tmp_path / "good.mp4"
    make_test_video(target, frames=4, size=32)
    before = target.read_bytes()

    def broken_encode(*args, **kwargs):
        # Write some bytes first, as a real encoder would before failing.
        with open(args[0], "wb") as handle:
            handle.write(b"partial")
        raise av.error.FFmpegError(22, "encoder exploded")

    monkeypatch.setattr(V, "_encode", broken_encode)
    with pytest.raises(VideoError, match="cannot write") as info:
        write_video(torch.rand(3, 4, 32, 32), target)
    assert str(target) in str(info.value)
    assert target.read_bytes() == before  # not clobbered
    assert leftover_temp_files(tmp_path) == []
    assert read_video(target, 4, 32).shape == (3, 4, 32, 32)


def test_failed_png_write_keeps_existing_file(tmp_path, monkeypatch):
    target = tmp_path / "sheet.png"
    write_contact_sheet(torch.rand(3, 2, 8, 8), target)
    before = target.read_bytes()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("leaps._atomic.os.replace", failing_replace)
    with pytest.raises(VideoError, match="disk full"):
        write_contact_sheet(torch.rand(3, 2, 8, 8), target)
    assert target.read_bytes() == before
    assert leftover_temp_files(tmp_path) == []


def test_temp_file_keeps_extension(tmp_path, monkeypatch):
    seen = []
    real_encode = V._encode

    def spy(tmp, *args):
        seen.append(tmp)
        return real_encode(tmp, *args)

    monkeypatch.setattr(V, "_encode", spy)
    write_video(torch.rand(3, 2, 8, 8), tmp_path / "x.mp4")
    assert seen[0].parent == tmp_path
    assert seen[0].name.startswith(".x.tmp-") and seen[0].suffix == ".mp4"


def test_mpeg4_fallback_when_libx264_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(V._VIDEO_FORMATS, ".mp4", ("mp4", ("no-such-codec", "mpeg4"), "yuv420p"))
    path = write_video(synthetic_clip(4, 32), tmp_path / "fallback.mp4")
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "mpeg4"
    assert (read_video(path, 4, 32) - synthetic_clip(4, 32)).abs().mean() < 0.05


# --------------------------------------------------------------------------------------------
# Contact sheet and save_outputs
# --------------------------------------------------------------------------------------------


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def decode_png(path):
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def test_contact_sheet_single_row(tmp_path):
    clip = synthetic_clip(5, 20)
    path = write_contact_sheet(clip, tmp_path / "sheet.png", gap=3)
    width, height = png_size(path.read_bytes())
    assert (width, height) == (5 * 20 + 4 * 3, 20)
    image = decode_png(path)
    assert image.shape == (20, 112, 3)
    # Frame 2 sits at x = 2 * (20 + 3); PNG is lossless up to uint8 rounding.
    expected = (clip[:, 2].permute(1, 2, 0) * 255).round().byte().numpy()
    assert np.array_equal(image[:, 46:66], expected)
    assert (image[:, 20:23] == 255).all()  # white gap


def test_contact_sheet_batch_rows(tmp_path):
    batch = torch.rand(3, 3, 4, 10, 12)
    path = write_contact_sheet(batch, tmp_path / "grid.png")
    assert png_size(path.read_bytes()) == (4 * 12 + 3 * 2, 3 * 10 + 2 * 2)
    image = decode_png(path)
    expected = (batch[2, :, 1].permute(1, 2, 0) * 255).round().byte().numpy()
    assert np.array_equal(image[24:34, 14:26], expected)


def test_pure_python_png_fallback_is_valid(tmp_path):
    image = (np.random.default_rng(1).random((7, 9, 3)) * 255).astype(np.uint8)
    data = V._encode_png_python(image)
    assert png_size(data) == (9, 7)
    # IDAT decompresses to filter byte + RGB per row.
    length = struct.unpack(">I", data[33:37])[0]
    raw = zlib.decompress(data[41 : 41 + length])
    assert len(raw) == 7 * (1 + 9 * 3)
    path = tmp_path / "py.png"
    path.write_bytes(data)
    assert np.array_equal(decode_png(path), image)


def test_contact_sheet_errors(tmp_path):
    with pytest.raises(ShapeError):
        write_contact_sheet(torch.rand(3, 8, 8), tmp_path / "s.png")
    with pytest.raises(ShapeError):
        write_contact_sheet(torch.rand(3, 2, 8, 8), tmp_path / "s.png", gap=-1)


def test_save_outputs_single(tmp_path):
    out = tmp_path / "nested" / "out"
    paths = save_outputs(synthetic_clip(4, 32), out, stem="demo")
    assert set(paths) == {"mp4", "gif", "png"}
    assert paths["mp4"] == out / "demo.mp4" and paths["gif"] == out / "demo.gif"
    assert all(p.exists() and p.stat().st_size > 0 for p in paths.values())
    assert png_size(paths["png"].read_bytes()) == (4 * 32 + 3 * 2, 32)
    assert read_video(paths["gif"], 4, 32).shape == (3, 4, 32, 32)


def test_save_outputs_batch(tmp_path):
    batch = torch.stack([synthetic_clip(3, 16), 1 - synthetic_clip(3, 16)])
    paths = save_outputs(batch, tmp_path, stem="b", fps=4)
    assert set(paths) == {"mp4", "gif", "png", "mp4_0", "gif_0", "mp4_1", "gif_1"}
    assert paths["mp4_1"] == tmp_path / "b_1.mp4"
    assert png_size(paths["png"].read_bytes()) == (3 * 16 + 2 * 2, 2 * 16 + 2)
    second = read_video(paths["mp4_1"], 3, 16)
    assert (second - batch[1]).abs().mean() < 0.05
    assert leftover_temp_files(tmp_path) == []


def test_save_outputs_rejects_bad_input(tmp_path):
    with pytest.raises(ShapeError):
        save_outputs(torch.rand(2, 16, 16), tmp_path)
    with pytest.raises(VideoError):
        save_outputs(torch.rand(3, 2, 8, 8), tmp_path, stem="../escape")


def test_errors_are_leaps_errors():
    assert issubclass(VideoError, LeapsError) and issubclass(ShapeError, LeapsError)


def test_module_does_not_import_pillow():
    source = open(V.__file__, encoding="utf-8").read()
    assert "import PIL" not in source and "from PIL" not in source
    assert os.path.basename(V.__file__) == "video.py"


# --------------------------------------------------------------------------------------------
# Stimulus checks
# --------------------------------------------------------------------------------------------


def test_check_stimulus_accepts_a_valid_clip_unchanged():
    clip = synthetic_clip(4, 16)
    assert V.check_stimulus(clip, "stimulus 0") is clip
    assert V.check_stimulus(clip.half()) is not None and V.check_stimulus(torch.ones(3, 1, 1, 1)) is not None


@pytest.mark.parametrize("bad,error,needles", [
    (synthetic_clip(4, 16) * 255, VideoError, ["stimulus 3", "[0, 1]", "divide by 255"]),
    (synthetic_clip(4, 16) * 2 - 1, VideoError, ["stimulus 3", "[0, 1]", "denormalize"]),
    (synthetic_clip(4, 16) * 1000, VideoError, ["stimulus 3", "[0, 1]"]),
    (torch.full((3, 2, 8, 8), float("nan")), VideoError, ["stimulus 3", "NaN"]),
    (torch.full((3, 2, 8, 8), float("inf")), VideoError, ["stimulus 3", "inf"]),
    ((synthetic_clip(4, 16) * 255).to(torch.uint8), ShapeError, ["stimulus 3", "uint8", "/ 255"]),
    (torch.zeros(3, 2, 8, 8, dtype=torch.int64), ShapeError, ["stimulus 3", "int64"]),
    (torch.rand(2, 8, 8), ShapeError, ["stimulus 3", "3 x T x H x W"]),
    (torch.rand(1, 3, 2, 8, 8), ShapeError, ["stimulus 3", "(1, 3, 2, 8, 8)"]),
    (torch.rand(4, 2, 8, 8), ShapeError, ["stimulus 3", "RGB"]),
    (torch.rand(3, 0, 8, 8), ShapeError, ["stimulus 3", "T >= 1"]),
    (np.zeros((3, 2, 8, 8), dtype=np.float32), ShapeError, ["stimulus 3", "ndarray"]),
])
def test_check_stimulus_rejects_bad_tensors_naming_them(bad, error, needles):
    with pytest.raises(error) as info:
        V.check_stimulus(bad, "stimulus 3")
    assert isinstance(info.value, LeapsError)
    for needle in needles:
        assert needle in str(info.value)


def test_check_stimulus_allows_float_rounding_at_the_range_edges():
    clip = synthetic_clip(2, 8)
    clip[0, 0, 0, 0], clip[0, 0, 0, 1] = 1 + 1e-6, -1e-6
    assert V.check_stimulus(clip) is clip


def test_invert_refuses_a_nan_stimulus_before_optimising(tiny_net):
    import leaps
    from leaps.errors import NonFiniteLossError

    stimulus = torch.rand(3, 4, 16, 16)
    stimulus[0, 1, 2, 3] = float("nan")
    with pytest.raises(VideoError, match="stimulus 0 contains NaN") as info:
        leaps.invert(tiny_net, 0, stimulus, steps=2, frames=4, size=16, progress=False)
    assert not isinstance(info.value, NonFiniteLossError)


def test_invert_refuses_a_0_255_stimulus(tiny_net):
    import leaps

    with pytest.raises(VideoError, match="divide by 255"):
        leaps.invert(tiny_net, 0, torch.rand(3, 4, 16, 16) * 255, steps=2, frames=4, size=16, progress=False)
    with pytest.raises(ShapeError, match="uint8"):
        leaps.invert(tiny_net, 0, (torch.rand(3, 4, 16, 16) * 255).byte(), steps=2, frames=4, size=16,
                     progress=False)


# --------------------------------------------------------------------------------------------
# Still images and absurd sizes
# --------------------------------------------------------------------------------------------


def write_still_image(path, codec, pix_fmt):
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream(codec, rate=1)
        stream.width = stream.height = 32
        stream.pix_fmt = pix_fmt
        frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 128, np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


@pytest.mark.parametrize("name,codec,pix_fmt", [("still.png", "png", "rgb24"), ("still.jpg", "mjpeg", "yuvj420p"),
                                                ("png_named.mp4", "png", "rgb24")])
def test_still_images_are_refused(tmp_path, name, codec, pix_fmt):
    path = write_still_image(tmp_path / name, codec, pix_fmt)
    with pytest.raises(VideoError, match="is a still image") as info:
        read_video(path, 4, 16)
    assert str(path) in str(info.value) and "space-time" in str(info.value)


def test_still_image_stimulus_is_refused_by_invert(tiny_net, tmp_path):
    import leaps

    path = write_still_image(tmp_path / "still.png", "png", "rgb24")
    with pytest.raises(VideoError, match="still image"):
        leaps.invert(tiny_net, 0, str(path), steps=1, frames=4, size=16, progress=False)


def test_a_one_frame_video_is_still_a_video(tmp_path):
    path = write_video(synthetic_clip(1, 16), tmp_path / "one.mp4")
    assert read_video(path, 3, 16).shape == (3, 3, 16, 16)


def gif_declaring(tmp_path, width, height):
    """A valid 4-frame 16 x 16 GIF whose logical screen (bytes 6-9) claims width x height."""
    data = bytearray(make_test_video(tmp_path / "small.gif", frames=4, size=16).read_bytes())
    data[6:10] = struct.pack("<HH", width, height)
    path = tmp_path / f"declares_{width}x{height}.gif"
    path.write_bytes(data)
    return path


def test_gif_declaring_a_huge_canvas_is_refused_before_decoding(tmp_path, monkeypatch):
    # The decoder would allocate the 16000^2 canvas for every frame: gigabytes for 200 bytes.
    path = gif_declaring(tmp_path, 16000, 16000)
    decoded = []
    monkeypatch.setattr(V, "_decode_selected", lambda *a: decoded.append(a) or ({}, 0))
    with pytest.raises(VideoError, match="16000 x 16000 pixels, more than the limit") as info:
        read_video(path, 4, 16)
    assert str(path) in str(info.value) and decoded == []


def test_a_file_that_would_decode_too_many_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    # a GIF of a few kB can hold 100,000 unchanged 8K frames, each decoded in full: bounded by a pixel budget
    path = gif_declaring(tmp_path, 4000, 4000)  # 4 frames of a 4000^2 canvas: 64 M pixels
    assert read_video(path, 2, 16).shape == (3, 2, 16, 16)
    monkeypatch.setattr(V, "MAX_DECODED_PIXELS", 50_000_000)
    decoded = []
    monkeypatch.setattr(V, "_decode_selected", lambda *a: decoded.append(a) or ({}, 0))
    with pytest.raises(VideoError, match="declares 4 frames: more than 50,000,000 pixels to decode") as info:
        read_video(path, 2, 16)
    assert str(path) in str(info.value) and "ffmpeg" in str(info.value) and decoded == []


def test_decoding_stops_at_the_pixel_budget_even_if_the_frame_count_lies(tmp_path, monkeypatch):
    path = make_test_video(tmp_path / "clip.mp4", frames=16, size=32)
    monkeypatch.setattr(V, "_estimate_frame_count", lambda p: (1, 1))  # a header claiming one tiny frame
    monkeypatch.setattr(V, "MAX_DECODED_PIXELS", 5 * 32 * 32)
    seen = []
    real = V._refuse_long_decodes
    monkeypatch.setattr(V, "_refuse_long_decodes", lambda pixels, *a: seen.append(pixels) or real(pixels, *a))
    with pytest.raises(VideoError, match="holds more than 5,120 pixels to decode"):
        read_video(path, 2, 16)
    assert seen[-1] == 6 * 32 * 32  # stopped at the sixth frame, not after all 16


def test_decoder_refuses_frames_above_the_limit_even_if_the_header_lies(tmp_path, monkeypatch):
    path = gif_declaring(tmp_path, 4000, 4000)  # 16 M pixels: below the real limit
    assert read_video(path, 2, 16).shape == (3, 2, 16, 16)
    monkeypatch.setattr(V, "MAX_FRAME_PIXELS", 1000 * 1000)
    with pytest.raises(VideoError, match="4000 x 4000"):
        read_video(path, 2, 16)
    # the header passes, the decoded frame does not: max_pixels stops FFmpeg, or our frame check does
    monkeypatch.setattr(V, "_refuse_huge_frames", lambda w, h, path, verb: None)
    with pytest.raises(VideoError):
        read_video(path, 2, 16)


def test_a_header_declaring_a_million_frames_keeps_only_the_sampled_frames(tmp_path, monkeypatch):
    truth = make_test_video(tmp_path / "clip.avi", frames=16, size=32)
    data = bytearray(truth.read_bytes())
    avih, strh = data.find(b"avih"), data.find(b"strh")
    data[avih + 24 : avih + 28] = struct.pack("<I", 10**6)  # dwTotalFrames
    data[strh + 40 : strh + 44] = struct.pack("<I", 10**6)  # dwLength
    liar = tmp_path / "liar.avi"
    liar.write_bytes(data)
    with av.open(str(liar)) as container:
        assert container.streams.video[0].frames == 10**6
    kept_sizes = []
    real = V._decode_selected

    def spy(path, wanted, size):
        kept, count = real(path, wanted, size)
        kept_sizes.append(len(kept))
        return kept, count

    monkeypatch.setattr(V, "_decode_selected", spy)
    video = read_video(liar, 4, 32)
    assert torch.equal(video, read_video(truth, 4, 32))
    assert max(kept_sizes) <= 4


# --------------------------------------------------------------------------------------------
# Deterministic writes, labelled sheets, run metadata
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["mp4", "gif", "mkv", "avi"])
def test_writing_the_same_tensor_twice_gives_the_same_bytes(tmp_path, ext):
    video = torch.rand(3, 8, 34, 34, generator=torch.Generator().manual_seed(0))
    first = write_video(video, tmp_path / f"a.{ext}").read_bytes()
    for _ in range(3):  # the x264 run-to-run differences showed up in about half the runs
        assert write_video(video, tmp_path / f"b.{ext}").read_bytes() == first


def test_contact_sheet_labels_add_a_column_of_text(tmp_path):
    batch = torch.rand(2, 3, 3, 20, 16, generator=torch.Generator().manual_seed(0))
    plain = decode_png(write_contact_sheet(batch, tmp_path / "plain.png"))
    labels = ["ring growing\nmodel 0.98", "x"]
    labelled = decode_png(write_contact_sheet(batch, tmp_path / "labelled.png", labels=labels))
    column = labelled.shape[1] - plain.shape[1]
    assert labelled.shape[0] == plain.shape[0] and column == len("ring growing") * 6 - 1 + 2 * 4
    assert np.array_equal(labelled[:, column:], plain)  # frames unchanged, to the right of the labels
    text = (labelled[:, :column] == 0).all(axis=2)
    assert text[:20].sum() > 50 and 0 < text[22:].sum() < text[:20].sum()  # row 0: two lines, row 1: "x"
    assert ((labelled[:, :column] == 0) | (labelled[:, :column] == 255)).all()  # black on white


def test_contact_sheet_label_errors(tmp_path):
    with pytest.raises(ShapeError, match="2 labels for 1 rows"):
        write_contact_sheet(torch.rand(3, 2, 8, 8), tmp_path / "s.png", labels=["a", "b"])
    path = write_contact_sheet(torch.rand(3, 2, 8, 8), tmp_path / "s.png", labels="one row")
    assert png_size(path.read_bytes())[0] > 2 * 8 + 2


def test_save_outputs_writes_labels_and_run_metadata(tmp_path):
    from leaps.config import InversionConfig

    meta = V.run_metadata(InversionConfig(seed=11, steps=5), model="toy_r3d")
    paths = save_outputs(synthetic_clip(3, 16), tmp_path, labels=["clip"], metadata=meta)
    import json

    run = json.loads(paths["run"].read_text())
    assert paths["run"] == tmp_path / "leaps_run.json"
    assert run["seed"] == 11 and run["config"]["steps"] == 5 and run["model"] == "toy_r3d"
    assert run["torch_version"] == torch.__version__ and run["av_version"] == av.__version__
    assert png_size(paths["png"].read_bytes())[0] > 3 * 16 + 2 * 2
    assert "run" not in save_outputs(synthetic_clip(3, 16), tmp_path / "plain")
