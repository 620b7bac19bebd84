"""Evaluation metrics for inverted videos (plain torch).

* :func:`top1` - accuracy of a classifier on the synthesised videos.
* :func:`top_k_predictions` - per video, the k most probable classes with their names.
* :func:`inception_score` - IS of Salimans et al. (2016) from class probabilities.
* :func:`ssim` / :func:`psnr` - image similarity (Wang et al. 2004) and peak signal-to-noise.
* :func:`frame_ssim` / :func:`frame_psnr` - the same between consecutive frames, a measure of
  temporal smoothness (Fig. 7 of the LEAPS paper).
* :func:`classify` - softmax probabilities of a video model, batched.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from leaps.errors import ShapeError

__all__ = ["top1", "top_k_predictions", "inception_score", "ssim", "psnr", "frame_ssim", "frame_psnr", "classify"]

_EPS = 1e-12


# --------------------------------------------------------------------------------------------
# Classification metrics
# --------------------------------------------------------------------------------------------


def top1(logits, targets) -> float:
    """Top-1 accuracy: ``mean_i [argmax_k logits[i, k] == targets[i]]``, in ``[0, 1]``.

    ``logits`` is ``N x K`` (logits or probabilities: argmax is the same); ``targets`` is an
    integer tensor or list of length ``N``.
    """
    logits = torch.as_tensor(logits)
    targets = torch.as_tensor(targets).reshape(-1)
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise ShapeError(f"top1 expects logits N x K with N >= 1, got shape {tuple(logits.shape)}")
    if targets.numel() != logits.shape[0]:
        raise ShapeError(f"top1 got {logits.shape[0]} rows of logits but {targets.numel()} targets")
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise ShapeError(f"top1 targets must be integer class indices, got dtype {targets.dtype}")
    predicted = logits.argmax(dim=1).cpu()
    return (predicted == targets.cpu().long()).double().mean().item()


def top_k_predictions(probs: torch.Tensor, names=None, k: int = 5) -> list[list[dict]]:
    """Per row of ``probs`` (N x K), its ``k`` most probable classes, most probable first, as
    ``{"index", "name", "prob"}`` (``name`` None where ``names`` does not cover the index)."""
    values, indices = probs.float().topk(min(k, probs.shape[-1]), dim=-1)
    return [[{"index": int(i), "name": names[int(i)] if names and int(i) < len(names) else None, "prob": float(p)}
             for p, i in zip(row_p.tolist(), row_i.tolist())]
            for row_p, row_i in zip(values, indices)]


def inception_score(probs, splits: int = 1) -> tuple[float, float]:
    """Inception score ``IS = exp(E_x KL(p(y|x) || p(y)))`` with ``p(y) = E_x p(y|x)``.

    ``probs`` is ``N x K`` (each row a softmax distribution). The rows are cut into ``splits``
    consecutive chunks; IS is computed per chunk (its own marginal ``p(y)``) and the mean and
    population standard deviation over chunks are returned. Computed in float64 with
    ``KL = sum_k p_k (log(p_k + eps) - log(q_k + eps))``, ``eps = 1e-12``.
    Ranges from 1 (all rows equal) to K (confident and evenly spread over K classes).
    """
    p = torch.as_tensor(probs).detach().cpu().double()
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise ShapeError(f"inception_score expects probabilities N x K, got shape {tuple(p.shape)}")
    if isinstance(splits, bool) or not isinstance(splits, int) or not 1 <= splits <= p.shape[0]:
        raise ShapeError(f"splits must be an integer in [1, N={p.shape[0]}], got {splits!r}")
    if not bool(torch.isfinite(p).all()) or bool((p < 0).any()):
        raise ShapeError("inception_score expects finite non-negative probabilities")
    if not torch.allclose(p.sum(dim=1), torch.ones(p.shape[0], dtype=p.dtype), atol=1e-3):
        raise ShapeError("inception_score expects rows that sum to 1 (apply softmax to logits first)")
    scores = []
    for chunk in torch.tensor_split(p, splits, dim=0):
        marginal = chunk.mean(dim=0, keepdim=True)
        kl = (chunk * (torch.log(chunk + _EPS) - torch.log(marginal + _EPS))).sum(dim=1)
        scores.append(math.exp(kl.mean().item()))
    scores_t = torch.tensor(scores, dtype=torch.float64)
    return scores_t.mean().item(), scores_t.std(unbiased=False).item()


# --------------------------------------------------------------------------------------------
# Image similarity
# --------------------------------------------------------------------------------------------


def _gaussian_window(size: int, sigma: float = 1.5) -> torch.Tensor:
    """1-D Gaussian ``g_i ∝ exp(-(i - c)^2 / (2 sigma^2))``, normalised to sum 1."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _check_pair(a: torch.Tensor, b: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.ndim != 3 or a.shape != b.shape or min(a.shape) < 1:
        raise ShapeError(
            f"{name} expects two images C x H x W of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return a.detach().double(), b.detach().double().to(a.device)


def _ssim_batch(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """SSIM of ``N x C x H x W`` pairs, one value per pair (mean over channels and pixels).

    Wang et al. (2004): with local Gaussian-weighted statistics (window 11, sigma 1.5, 'valid'
    convolution; the window shrinks to the image when H or W < 11),
    ``SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))``
    with ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, ``L = data_range``.
    """
    n, c, h, w = x.shape
    gy = _gaussian_window(min(11, h)).to(x.device)
    gx = _gaussian_window(min(11, w)).to(x.device)
    # Separable depthwise filter: one Gaussian per channel.
    kernel = (gy[:, None] * gx[None, :]).expand(c, 1, -1, -1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).mean(dim=(1, 2, 3))


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity of two images ``C x H x W`` (0-dim float32 tensor; 1 iff equal).

    See :func:`_ssim_batch` for the formula (Gaussian window 11, sigma 1.5, K1=0.01, K2=0.03).
    """
    a, b = _check_pair(a, b, "ssim")
    return _ssim_batch(a[None], b[None], float(data_range))[0].float()


def _psnr_from_mse(mse: torch.Tensor, data_range: float) -> torch.Tensor:
    """``PSNR = 10 log10(L^2 / MSE)``; ``inf`` where ``MSE == 0``."""
    return torch.where(
        mse > 0, 10 * torch.log10(data_range**2 / mse.clamp_min(1e-300)), torch.full_like(mse, math.inf)
    )


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio ``10 log10(L^2 / mean((a - b)^2))`` in dB (``inf`` if equal).

    E.g. a constant offset of 0.1 with ``L = 1`` gives ``10 log10(1 / 0.01) = 20`` dB.
    """
    a, b = _check_pair(a, b, "psnr")
    mse = ((a - b) ** 2).mean()
    return _psnr_from_mse(mse, float(data_range)).item()


def _consecutive_pairs(video: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``3 x T x H x W`` into frame pairs ``(t, t+1)`` as two ``(T-1) x 3 x H x W`` batches."""
    video = torch.as_tensor(video)
    if video.ndim != 4 or video.shape[0] != 3:
        raise ShapeError(f"{name} expects a video 3 x T x H x W, got shape {tuple(video.shape)}")
    if video.shape[1] < 2:
        raise ShapeError(f"{name} needs at least 2 frames, got T={video.shape[1]}")
    if video.shape[2] < 1 or video.shape[3] < 1:
        raise ShapeError(f"{name} got empty frames of shape {tuple(video.shape[2:])}")
    frames = video.detach().double().transpose(0, 1)  # T x 3 x H x W
    return frames[:-1], frames[1:]


def frame_ssim(video: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM between consecutive frames of ``3 x T x H x W``: tensor of length ``T-1`` (float32)."""
    x, y = _consecutive_pairs(video, "frame_ssim")
    return _ssim_batch(x, y, float(data_range)).float()


def frame_psnr(video: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR between consecutive frames of ``3 x T x H x W``: tensor of length ``T-1`` (float32, inf if equal)."""
    x, y = _consecutive_pairs(video, "frame_psnr")
    mse = ((x - y) ** 2).mean(dim=(1, 2, 3))
    return _psnr_from_mse(mse, float(data_range)).float()


# --------------------------------------------------------------------------------------------
# Running a classifier
# --------------------------------------------------------------------------------------------


def _model_device(model: torch.nn.Module, fallback: torch.device) -> torch.device:
    """Device of the model's first parameter or buffer (``fallback`` for stateless models)."""
    first = next(iter(model.parameters()), None)
    if first is None:
        first = next(iter(model.buffers()), None)
    return fallback if first is None else first.device


@torch.no_grad()
def classify(model: torch.nn.Module, videos: torch.Tensor, *, size=None, batch_size: int = 8) -> torch.Tensor:
    """Softmax probabilities ``B x K`` (float32, on the CPU) of ``model`` on normalised videos.

    ``videos`` is ``B x 3 x T x H x W``, already normalised for the model. With
    ``size=(T', H', W')`` each batch is first resized with trilinear interpolation. The model
    runs in eval mode (its previous mode is restored afterwards) in chunks of ``batch_size``.
    """
    videos = torch.as_tensor(videos)
    if videos.ndim != 5 or videos.shape[1] != 3 or videos.shape[0] == 0:
        raise ShapeError(f"classify expects videos B x 3 x T x H x W, got shape {tuple(videos.shape)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ShapeError(f"batch_size must be a positive integer, got {batch_size!r}")
    if size is not None:
        size = tuple(int(s) for s in size) if isinstance(size, (tuple, list)) else size
        if not isinstance(size, tuple) or len(size) != 3 or min(size) < 1:
            raise ShapeError(f"size must be (T, H, W) with positive entries, got {size!r}")
    device = _model_device(model, videos.device)
    was_training = model.training
    model.eval()
    try:
        outputs = [_classify_chunk(model, chunk.to(device), size) for chunk in videos.split(batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(outputs)


def _classify_chunk(model: torch.nn.Module, chunk: torch.Tensor, size) -> torch.Tensor:
    chunk = chunk.float()
    if size is not None and tuple(chunk.shape[2:]) != size:
        chunk = F.interpolate(chunk, size=size, mode="trilinear", align_corners=False)
    logits = model(chunk)
    if isinstance(logits, (tuple, list)):  # some models also return features
        logits = logits[0]
    if logits.ndim != 2 or logits.shape[0] != chunk.shape[0]:
        raise ShapeError(
            f"classify expects the model to return logits {chunk.shape[0]} x K, got shape {tuple(logits.shape)}"
        )
    return F.softmax(logits.float(), dim=1).cpu()
