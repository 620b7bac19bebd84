"""The terms of the LEAPS objective, eq. (4): each a short dispatcher beside its plain-torch reference.

Every public loss that reads activations resolves its ``backend`` (:func:`leaps.ops.resolve_backend`)
and calls either its ``_..._reference`` function below (plain torch: the ground truth every fused
backend is tested against) or the function of the same name in :mod:`leaps.fused_terms`, which
finishes the term from the per-row statistics of the fused primitives in :mod:`leaps.ops`.
``backend="reference"`` runs the reference, ``"triton"`` / ``"cuda"`` the fused kernels, and
``"auto"`` the fastest one available for the tensors given. The objective that weighs and sums
the terms is :mod:`leaps.objective`.

Equation -> function -> backends (paths from the repository root):

* eq. (1) L_prim: :func:`priming_loss_from_activations` (:func:`priming_loss` on channel means);
  options beyond the paper: per-frame means (:func:`frames_as_channels`) and the nearer of the
  stimulus and its mirror image (:func:`mirrored_priming_loss`, plain torch on channel means).
  Reference: ``_priming_loss_reference`` in leaps/losses.py. Fused: leaps/fused_terms.py ->
  leaps/ops.py ``channel_stats`` -> kernels/channel_stats.py (Triton) | csrc/channel_stats.cpp +
  csrc/cuda/channel_stats.cu (C++/CUDA extension).
* eq. (2) R_coh: :func:`temporal_coherence_loss`. Reference: ``_temporal_coherence_loss_reference``
  in leaps/losses.py. Fused: leaps/fused_terms.py -> leaps/ops.py ``frame_l1`` ->
  kernels/frame_l1.py | csrc/frame_l1.cpp + csrc/cuda/frame_l1.cu.
* eq. (3) R_feat: :func:`bn_statistics_loss`. Reference: ``_bn_statistics_loss_reference`` in
  leaps/losses.py. Fused: leaps/fused_terms.py -> leaps/ops.py ``channel_stats`` (with M2) ->
  kernels/channel_stats.py | csrc/channel_stats.cpp + csrc/cuda/channel_stats.cu.
* eq. (4) CE + L_prim + r (R_coh + R_feat): :class:`leaps.objective.LeapsObjective` in
  leaps/objective.py (with the baselines' objectives beside it).

Conventions
-----------
* A *channel-mean vector* mu(z) is the C-length mean of an activation over every axis but batch
  and channel (space-time for B x C x T x H x W, tokens for B x N x C). :func:`channel_means`
  computes it.
* Distances are averaged over the batch, so a batch of B videos costs as much as one video.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from . import fused_terms, ops
from .constants import BACKENDS, DISTANCES, JVS_EPS, SQRT_FLOOR
from .errors import LeapsError, ShapeError


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise LeapsError(f"unknown loss backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def channel_means(z: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
    """Mean over every axis except batch (0) and ``channel_dim``: B x C (fp32 or wider)."""
    if z.dim() < 3:
        raise ShapeError(f"channel_means expects at least 3 dims (B, C, ...), got {tuple(z.shape)}")
    channel_dim = channel_dim % z.dim()
    if channel_dim == 0:
        raise ShapeError("channel_dim cannot be the batch axis 0")
    dims = [d for d in range(1, z.dim()) if d != channel_dim]
    return z.float().mean(dim=dims) if z.dtype in (torch.float16, torch.bfloat16) else z.mean(dim=dims)


# --------------------------------------------------------------------------------------------
# L_prim, eq. (1)
# --------------------------------------------------------------------------------------------

def jvs(a: torch.Tensor, b: torch.Tensor, eps: float = JVS_EPS) -> torch.Tensor:
    """Jaccard vector similarity of the rows of ``a`` and ``b`` (extended Jaccard / Tanimoto).

        JVS(a, b) = a.b / (||a||^2 + ||b||^2 - a.b + eps),   eps = 1e-8

    It is 1 for a == b, and it is sensitive to both angle and magnitude (unlike cosine).
    ``a``, ``b``: ... x C (broadcastable); returns the leading shape.
    """
    dot = (a * b).sum(-1)
    denom = (a * a).sum(-1) + (b * b).sum(-1) - dot
    return dot / (denom + eps)


def feature_distance(a: torch.Tensor, b: torch.Tensor, distance: str = "jvs") -> torch.Tensor:
    """Per-row distance between channel-mean vectors ``a`` and ``b`` (... x C).

    * ``jvs``: 1 - JVS(a, b)
    * ``cos``: 1 - cos(a, b)
    * ``l1``:  ||a - b||_1 / C      (mean absolute difference, so layers of any width weigh alike)
    * ``l2``:  ||a - b||_2 / sqrt(C) (root-mean-square difference, likewise)
    """
    if distance == "jvs":
        return 1.0 - jvs(a, b)
    if distance == "cos":
        return 1.0 - F.cosine_similarity(a, b.expand_as(a), dim=-1, eps=JVS_EPS)
    if distance == "l1":
        return (a - b).abs().mean(-1)
    if distance == "l2":
        return (a - b).pow(2).mean(-1).clamp_min(SQRT_FLOOR).sqrt()
    raise LeapsError(f"unknown priming distance {distance!r}; choose one of {', '.join(DISTANCES)}")


def linear_layer_weights(num_layers: int, lambda_first: float, lambda_last: float) -> list[float]:
    """Priming weights lambda_l, linear from lambda_1 to lambda_L (Section S2)."""
    if num_layers < 1:
        raise LeapsError("priming needs at least one layer")
    if num_layers == 1:
        return [float(lambda_first)]
    step = (lambda_last - lambda_first) / (num_layers - 1)
    return [float(lambda_first + i * step) for i in range(num_layers)]


def priming_loss(
    feats_x: Sequence[torch.Tensor],
    feats_v: Sequence[torch.Tensor],
    weights: Sequence[float],
    distance: str = "jvs",
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Model priming, eq. (1): ``(1/L) sum_l lambda_l d(mu_l(x*), mu_l(v))``, averaged over batch.

    ``feats_x[l]``: B x C_l channel means of the synthesised videos at layer l;
    ``feats_v[l]``: B x C_l or 1 x C_l channel means of the stimulus (or the mean over several
    stimuli, Section S5); ``weights``: the L priming weights lambda_l.

    This works on channel-mean vectors, which are too small for kernels to matter: every
    backend runs the code below. The fused path starts from the activations:
    :func:`priming_loss_from_activations`.
    """
    _check_backend(backend)
    return _nearest_priming(feats_x, {"stimulus": feats_v}, weights, distance)


def _nearest_priming(feats_x, references: dict, weights, distance: str) -> torch.Tensor:
    """``(1/L) sum_l lambda_l mean_b min_r d(mu_l(x*_b), mu_l(r)_b)`` over the named feature lists
    ``references`` (name -> per-layer features): eq. (1) against the nearest of them (one: the
    paper's term, bit for bit)."""
    if len(feats_x) == 0 or any(len(f) != len(feats_x) for f in (*references.values(), weights)):
        raise ShapeError(
            f"priming needs as many features of the {' and '.join(references)} and weights as layers (got "
            f"{len(feats_x)} / " + " / ".join(str(len(f)) for f in references.values())
            + f" / {len(weights)}, at least 1)"
        )
    total = feats_x[0].new_zeros((), dtype=torch.float32 if feats_x[0].dtype != torch.float64 else torch.float64)
    for l, (fx, lam) in enumerate(zip(feats_x, weights)):
        refs = [f[l] for f in references.values()]
        if fx.dim() != 2 or any(fv.dim() != 2 or fv.shape != refs[0].shape or fx.shape[1] != fv.shape[1]
                                for fv in refs):
            raise ShapeError(
                f"priming layer {l}: expected B x C features for x* and the {' and '.join(references)}, got "
                + ", ".join(str(tuple(t.shape)) for t in (fx, *refs))
            )
        fx = fx.to(total.dtype)
        near = functools.reduce(torch.minimum, [feature_distance(fx, fv.to(total.dtype), distance) for fv in refs])
        total = total + lam * near.mean()
    return total / len(feats_x)


def priming_loss_from_activations(
    acts: Sequence[torch.Tensor],
    stimulus_means: Sequence[torch.Tensor],
    weights: Sequence[float],
    distance: str = "jvs",
    *,
    channel_dims: Sequence[int] | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """eq. (1) straight from the primed layers' activations ``acts`` (B x C x ... each).

    Same value as ``priming_loss([channel_means(a, d) for a, d in ...], ...)``; the fused
    backends compute every layer's channel means in one launch and write every layer's
    gradient (a per-channel constant over space-time) in one launch on the way back.
    ``channel_dims[l]``: the channel axis of ``acts[l]`` (1, or -1 for B x N x C tokens).
    """
    if distance not in DISTANCES:
        raise LeapsError(f"unknown priming distance {distance!r}; choose one of {', '.join(DISTANCES)}")
    dims = list(channel_dims) if channel_dims is not None else [1] * len(acts)
    if not (len(acts) == len(stimulus_means) == len(weights) == len(dims)) or len(acts) == 0:
        raise ShapeError(
            f"priming needs as many stimulus features, weights and channel axes as layers "
            f"(got {len(acts)} / {len(stimulus_means)} / {len(weights)} / {len(dims)}, at least 1)"
        )
    which = ops.resolve_backend(backend, acts[0])
    if which == "reference":
        return _priming_loss_reference(acts, stimulus_means, weights, distance, dims)
    return fused_terms.priming_loss(acts, stimulus_means, weights, distance, dims, which)


def _priming_loss_reference(acts, stimulus_means, weights, distance: str, channel_dims) -> torch.Tensor:
    """eq. (1) in plain torch: each layer's channel means, then :func:`priming_loss`."""
    return priming_loss([channel_means(a, d) for a, d in zip(acts, channel_dims)], stimulus_means, weights, distance)


def frames_as_channels(z: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
    """A B x C x T x H x W activation (B x T x H x W x C with ``channel_dim`` -1) as B x (C T) x H x W.

    Each (channel, frame) pair becomes a channel, so the :func:`channel_means` of the result are
    the per-frame channel means (entry c T + t): time-resolved priming compares x* and the
    stimulus frame by frame instead of over the whole clip. A view for a contiguous channel-first z.
    """
    if z.dim() != 5:
        raise ShapeError(f"time-resolved priming needs 5-D activations (B x C x T x H x W), got {tuple(z.shape)}: "
                         "a transformer's tokens have no frame axis here")
    d = channel_dim % 5
    if d == 4:
        z = z.permute(0, 4, 1, 2, 3)
    elif d != 1:
        raise ShapeError(f"time-resolved priming needs the channel axis at 1 or -1, got {channel_dim}")
    b, c, t, h, w = z.shape
    return z.reshape(b, c * t, h, w)


def mirrored_priming_loss(
    feats_x: Sequence[torch.Tensor],
    feats_v: Sequence[torch.Tensor],
    feats_mirror: Sequence[torch.Tensor],
    weights: Sequence[float],
    distance: str = "jvs",
) -> torch.Tensor:
    """eq. (1) with each video primed by the stimulus or by its mirror image, whichever is nearer:

        (1/L) sum_l lambda_l mean_b min(d(mu_l(x*_b), mu_l(v_b)), d(mu_l(x*_b), mu_l(flip_W v_b)))

    x* is flipped at random every step; with per-frame features (:func:`frames_as_channels`) a
    flipped view of a clockwise turn is an anticlockwise one, so a fixed stimulus would pull the
    two views of x* to opposite motions. ``feats_mirror[l]`` holds the mirrored stimulus's
    features, shaped as ``feats_v[l]``. Not in the paper (an option, ``priming_mirror``).
    """
    return _nearest_priming(feats_x, {"stimulus": feats_v, "mirror image": feats_mirror}, weights, distance)


# --------------------------------------------------------------------------------------------
# R_coh, eq. (2)
# --------------------------------------------------------------------------------------------

def frames_view(z: torch.Tensor, token_grid: tuple[int, int] | None = None,
                channels_last: bool = False) -> torch.Tensor:
    """Reshape a last-layer activation to per-frame slices B x T' x F (F = features per frame).

    * B x C x T x H x W (CNNs): frame t is z[:, :, t].
    * B x T x H x W x C with ``channels_last=True`` (e.g. Swin3D norm inputs).
    * B x N x C tokens with ``token_grid=(T', H'W')`` (transformers): the tokens are
      C x T' x H'W' after the reshape of Section 3.2; leading extra tokens (class token,
      N - T'H'W' of them) are dropped.
    """
    if token_grid is not None:
        if z.dim() != 3:
            raise ShapeError(f"token_grid given, expected B x N x C tokens, got {tuple(z.shape)}")
        t, hw = token_grid
        extra = z.shape[1] - t * hw
        if extra < 0:
            raise ShapeError(f"{z.shape[1]} tokens cannot hold a {t} x {hw} grid")
        return z[:, extra:, :].reshape(z.shape[0], t, hw * z.shape[2])
    if z.dim() != 5:
        raise ShapeError(
            f"temporal coherence expects B x C x T x H x W (or tokens with token_grid), got {tuple(z.shape)}"
        )
    if channels_last:
        return z.reshape(z.shape[0], z.shape[1], -1)
    return z.transpose(1, 2).reshape(z.shape[0], z.shape[2], -1)


def frames_view_4d(z: torch.Tensor, token_grid: tuple[int, int] | None = None,
                   channels_last: bool = False) -> torch.Tensor:
    """Like :func:`frames_view`, as B x T' x P x Q with P*Q = F, a view wherever the layout allows.

    The fused kernels index frames through strides, so NCDHW (P = C, Q = H*W), channels_last_3d
    and tokens (P = H'W', Q = C) need no copy, where the 3-D frames_view may have to gather.
    """
    if token_grid is not None:
        if z.dim() != 3:
            raise ShapeError(f"token_grid given, expected B x N x C tokens, got {tuple(z.shape)}")
        t, hw = token_grid
        if z.shape[1] < t * hw:
            raise ShapeError(f"{z.shape[1]} tokens cannot hold a {t} x {hw} grid")
        return z[:, z.shape[1] - t * hw:, :].unflatten(1, (t, hw))
    if z.dim() != 5:
        raise ShapeError(
            f"temporal coherence expects B x C x T x H x W (or tokens with token_grid), got {tuple(z.shape)}"
        )
    frames = z if channels_last else z.transpose(1, 2)  # B x T x (H x W x C | C x H x W)
    return frames.flatten(3)  # a view unless the last two axes cannot merge


def temporal_coherence_loss(
    z: torch.Tensor,
    margin: float = 1.0,
    *,
    token_grid: tuple[int, int] | None = None,
    channels_last: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """Temporal coherence, eq. (2), on the last layer's per-frame slices z_t.

    For every frame pair t1 < t2 with D = ||z_t1 - z_t2||_1 / F (mean absolute difference over
    the F features of a frame, so that the margin delta is on the scale of one activation):

        consecutive (t2 = t1 + 1):  D
        otherwise:                  max(0, delta - D)

    averaged over all T'(T'-1)/2 pairs and the batch. A single frame gives 0.
    """
    which = ops.resolve_backend(backend, z)
    if which != "reference":
        frames = frames_view_4d(z, token_grid, channels_last)
        which = ops.frame_backend(which, backend, frames)  # "auto" leaves the CUDA kernel beyond 64 frames
        if which != "reference":
            return fused_terms.temporal_coherence_loss(frames, margin, which)
    return _temporal_coherence_loss_reference(z, margin, token_grid, channels_last)


def _temporal_coherence_loss_reference(z: torch.Tensor, margin: float, token_grid, channels_last: bool) -> torch.Tensor:
    """eq. (2) in plain torch: every frame pair's L1 distance from one cdist."""
    frames = frames_view(z, token_grid, channels_last)
    t = frames.shape[1]
    if t < 2:
        return frames.sum() * 0.0
    acc = frames.float() if frames.dtype in (torch.float16, torch.bfloat16) else frames
    # B x T x T L1 distances without materialising the B x T x T x F differences.
    dist = torch.cdist(acc, acc, p=1.0) / acc.shape[-1]
    i, j = torch.triu_indices(t, t, offset=1, device=z.device)
    pair = dist[:, i, j]
    consecutive = (j - i) == 1
    per_pair = torch.where(consecutive, pair, (margin - pair).clamp_min(0.0))
    return per_pair.mean()


# --------------------------------------------------------------------------------------------
# R_feat, eq. (3)
# --------------------------------------------------------------------------------------------

def batch_moments(a: torch.Tensor, channel_dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance over every axis but ``channel_dim`` (batch included)."""
    channel_dim = channel_dim % a.dim()
    dims = [d for d in range(a.dim()) if d != channel_dim]
    acc = a.float() if a.dtype in (torch.float16, torch.bfloat16) else a
    var, mean = torch.var_mean(acc, dim=dims, unbiased=False)
    return mean, var


def bn_statistics_loss(
    acts: Sequence[torch.Tensor],
    running_means: Sequence[torch.Tensor],
    running_vars: Sequence[torch.Tensor],
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Feature diversity, eq. (3), with BatchNorm running statistics as the expectations:

        sum_k ||mu_k(a) - running_mean_k||_2 + ||sigma^2_k(a) - running_var_k||_2

    ``acts[k]``: the input of BN layer k, B x C x ... (channel axis 1); mean and biased
    variance are taken over every other axis, batch included (as BatchNorm does in training).
    """
    if not (len(acts) == len(running_means) == len(running_vars)) or len(acts) == 0:
        raise ShapeError("bn_statistics_loss needs one running mean and variance per activation (at least 1)")
    for k, (a, rm, rv) in enumerate(zip(acts, running_means, running_vars)):
        if a.dim() < 2 or a.shape[1] != rm.numel() or rm.numel() != rv.numel():
            raise ShapeError(
                f"BN layer {k}: activation {tuple(a.shape)} does not match running stats of size {rm.numel()}"
            )
    which = ops.resolve_backend(backend, acts[0])
    if which == "reference":
        return _bn_statistics_loss_reference(acts, running_means, running_vars)
    return fused_terms.bn_statistics_loss(acts, running_means, running_vars, which)


def _bn_statistics_loss_reference(acts, running_means, running_vars) -> torch.Tensor:
    """eq. (3) in plain torch: each layer's batch moments, then the two L2 distances."""
    total = None
    for a, rm, rv in zip(acts, running_means, running_vars):
        mean, var = batch_moments(a, 1)
        term = torch.linalg.vector_norm(mean - rm.to(mean.dtype)) + torch.linalg.vector_norm(var - rv.to(var.dtype))
        total = term if total is None else total + term
    return total


# --------------------------------------------------------------------------------------------
# Baseline terms (Section 4.2)
# --------------------------------------------------------------------------------------------

def total_variation(x: torch.Tensor, time_weight: float = 1.0) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels along T, H and W of B x C x T x H x W, the
    T term times ``time_weight`` (0: smooth in space only, so that motion costs nothing)."""
    if x.dim() != 5:
        raise ShapeError(f"total_variation expects B x C x T x H x W, got {tuple(x.shape)}")
    tv = x.new_zeros(())
    for dim, weight in ((2, time_weight), (3, 1.0), (4, 1.0)):
        if x.shape[dim] > 1 and weight:
            tv = tv + weight * x.diff(dim=dim).abs().mean()
    return tv
