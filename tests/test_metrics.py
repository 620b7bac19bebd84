"""Tests for leaps.metrics: hand-computed values, limits and errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from leaps.errors import ShapeError
from leaps.metrics import classify, frame_psnr, frame_ssim, inception_score, psnr, ssim, top1

# --------------------------------------------------------------------------------------------
# top1
# --------------------------------------------------------------------------------------------


def test_top1_by_hand():
    logits = torch.tensor([[0.1, 2.0, 0.3], [5.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 3.0, 2.0]])
    # argmax: 1, 0, 2, 1
    assert top1(logits, torch.tensor([1, 0, 0, 1])) == pytest.approx(0.75)
    assert top1(logits, [1, 0, 2, 1]) == pytest.approx(1.0)
    assert top1(logits, [0, 1, 0, 0]) == pytest.approx(0.0)
    assert isinstance(top1(logits, [1, 0, 2, 1]), float)


def test_top1_errors():
    with pytest.raises(ShapeError):
        top1(torch.rand(4, 3), [0, 1])  # length mismatch
    with pytest.raises(ShapeError):
        top1(torch.rand(4), [0, 1, 2, 3])  # not N x K
    with pytest.raises(ShapeError):
        top1(torch.rand(2, 3), torch.tensor([0.0, 1.0]))  # float targets


# --------------------------------------------------------------------------------------------
# Inception score
# --------------------------------------------------------------------------------------------


def test_is_identical_rows_is_one():
    row = torch.softmax(torch.randn(10), dim=0)
    mean, std = inception_score(row.repeat(8, 1))
    assert mean == pytest.approx(1.0, abs=1e-9)
    assert std == 0.0


@pytest.mark.parametrize("k", [2, 5, 10])
def test_is_distinct_one_hot_is_k(k):
    mean, _ = inception_score(torch.eye(k))
    assert mean == pytest.approx(k, rel=1e-6)


def test_is_by_hand_two_classes():
    # p(y|x) rows (0.9, 0.1) and (0.5, 0.5): marginal (0.7, 0.3).
    probs = torch.tensor([[0.9, 0.1], [0.5, 0.5]], dtype=torch.float64)
    kl1 = 0.9 * math.log(0.9 / 0.7) + 0.1 * math.log(0.1 / 0.3)
    kl2 = 0.5 * math.log(0.5 / 0.7) + 0.5 * math.log(0.5 / 0.3)
    mean, _ = inception_score(probs)
    assert mean == pytest.approx(math.exp((kl1 + kl2) / 2), rel=1e-9)


def test_is_splits_mean_and_std():
    # Split 1: distinct one-hot over 4 classes (IS 4); split 2: identical rows (IS 1).
    probs = torch.cat([torch.eye(4), torch.full((4, 4), 0.25)])
    mean, std = inception_score(probs, splits=2)
    assert mean == pytest.approx(2.5, rel=1e-6)
    assert std == pytest.approx(1.5, rel=1e-6)
    single, _ = inception_score(probs, splits=1)
    assert single != pytest.approx(mean)


def test_is_errors():
    with pytest.raises(ShapeError):
        inception_score(torch.rand(5))
    with pytest.raises(ShapeError):
        inception_score(torch.randn(4, 3))  # not probabilities
    with pytest.raises(ShapeError):
        inception_score(torch.eye(3), splits=4)
    with pytest.raises(ShapeError):
        inception_score(torch.eye(3), splits=0)


# --------------------------------------------------------------------------------------------
# SSIM / PSNR
# --------------------------------------------------------------------------------------------


def test_ssim_identity_is_one():
    x = torch.rand(3, 32, 40)
    value = ssim(x, x)
    assert value.ndim == 0
    assert value.item() == pytest.approx(1.0, abs=1e-6)


def test_ssim_decreases_with_noise():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 48, 48, generator=gen)
    values = []
    for sigma in (0.02, 0.1, 0.3):
        noisy = (x + sigma * torch.randn(x.shape, generator=gen)).clamp(0, 1)
        values.append(ssim(x, noisy).item())
    assert 1.0 > values[0] > values[1] > values[2]
    assert ssim(x, torch.rand(3, 48, 48, generator=gen)).item() < 0.1  # unrelated images


def test_ssim_constant_images_by_hand():
    # Flat images: all variances are zero, so SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 0.2, 0.6
    c1 = (0.01) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    got = ssim(torch.full((3, 16, 16), a), torch.full((3, 16, 16), b)).item()
    assert got == pytest.approx(expected, rel=1e-5)


def test_ssim_is_symmetric_and_works_on_small_images():
    x, y = torch.rand(1, 5, 7), torch.rand(1, 5, 7)  # window shrinks to 5 x 7
    assert ssim(x, y).item() == pytest.approx(ssim(y, x).item(), abs=1e-6)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)


def test_ssim_data_range_matters():
    x = torch.rand(3, 20, 20)
    y = x + 0.05
    assert ssim(x * 255, y * 255, data_range=255.0).item() == pytest.approx(ssim(x, y).item(), abs=1e-4)


def test_psnr_constant_offset_by_hand():
    x = torch.rand(3, 16, 16) * 0.8
    assert psnr(x, x + 0.1) == pytest.approx(20.0, abs=1e-4)  # 10 log10(1 / 0.01)
    assert psnr(x, x + 0.01) == pytest.approx(40.0, abs=1e-3)
    assert psnr(x * 255, (x + 0.1) * 255, data_range=255.0) == pytest.approx(20.0, abs=1e-4)


def test_psnr_identical_is_inf():
    x = torch.rand(3, 8, 8)
    assert psnr(x, x) == float("inf")


def test_image_metric_errors():
    with pytest.raises(ShapeError):
        ssim(torch.rand(3, 8, 8), torch.rand(3, 8, 9))
    with pytest.raises(ShapeError):
        ssim(torch.rand(8, 8), torch.rand(8, 8))
    with pytest.raises(ShapeError):
        psnr(torch.rand(3, 8, 8), torch.rand(1, 8, 8))


# --------------------------------------------------------------------------------------------
# Frame-to-frame metrics
# --------------------------------------------------------------------------------------------


def test_frame_metrics_lengths_and_values():
    video = torch.rand(3, 6, 24, 24)
    video[:, 3] = video[:, 2]  # frames 2 and 3 identical
    s, p = frame_ssim(video), frame_psnr(video)
    assert s.shape == (5,) and p.shape == (5,)
    assert s[2].item() == pytest.approx(1.0, abs=1e-6)
    assert math.isinf(p[2].item())
    for t in (0, 4):
        assert s[t].item() == pytest.approx(ssim(video[:, t], video[:, t + 1]).item(), abs=1e-6)
        assert p[t].item() == pytest.approx(psnr(video[:, t], video[:, t + 1]), abs=1e-4)


def test_smooth_video_scores_higher_than_noise():
    base = torch.rand(3, 1, 32, 32)
    smooth = (base + 0.01 * torch.arange(5).view(1, 5, 1, 1)).clamp(0, 1)
    noise = torch.rand(3, 5, 32, 32)
    assert frame_ssim(smooth).min() > frame_ssim(noise).max()
    assert frame_psnr(smooth).min() > frame_psnr(noise).max()


@pytest.mark.parametrize("fn", [frame_ssim, frame_psnr])
def test_frame_metric_errors(fn):
    with pytest.raises(ShapeError, match="at least 2 frames"):
        fn(torch.rand(3, 1, 16, 16))
    with pytest.raises(ShapeError):
        fn(torch.rand(3, 16, 16))
    with pytest.raises(ShapeError):
        fn(torch.rand(2, 3, 4, 16, 16))


# --------------------------------------------------------------------------------------------
# classify
# --------------------------------------------------------------------------------------------


class MeanColourNet(torch.nn.Module):
    """Logits = per-channel mean colour (K = 3); records input shapes and mode."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(10.0))
        self.seen = []

    def forward(self, x):
        self.seen.append((tuple(x.shape), self.training, torch.is_grad_enabled()))
        return self.scale * x.mean(dim=(2, 3, 4))


def test_classify_probabilities_and_batching():
    model = MeanColourNet().train()
    videos = torch.rand(5, 3, 4, 8, 8)
    videos[:, 2] += 1.0  # channel 2 wins for every video
    probs = classify(model, videos, batch_size=2)
    assert probs.shape == (5, 3) and probs.dtype == torch.float32
    assert torch.allclose(probs.sum(dim=1), torch.ones(5), atol=1e-6)
    assert torch.allclose(probs, F.softmax(10.0 * videos.mean(dim=(2, 3, 4)), dim=1), atol=1e-6)
    assert top1(probs, [2] * 5) == 1.0
    assert [s[0][0] for s in model.seen] == [2, 2, 1]  # chunks of batch_size
    assert all(not training and not grad for _, training, grad in model.seen)
    assert model.training  # previous mode restored


def test_classify_resizes_to_size():
    model = MeanColourNet()
    classify(model, torch.rand(2, 3, 4, 8, 8), size=(8, 16, 12))
    assert model.seen[0][0] == (2, 3, 8, 16, 12)


def test_classify_errors():
    model = MeanColourNet()
    with pytest.raises(ShapeError):
        classify(model, torch.rand(3, 4, 8, 8))
    with pytest.raises(ShapeError):
        classify(model, torch.rand(1, 3, 4, 8, 8), size=(8, 8))
    with pytest.raises(ShapeError):
        classify(model, torch.rand(1, 3, 4, 8, 8), batch_size=0)
    with pytest.raises(ShapeError):
        classify(torch.nn.Identity(), torch.rand(1, 3, 4, 8, 8))  # output is not B x K
