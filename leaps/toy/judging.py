"""Scoring synthesised toy videos with the judges: networks that take no part in any objective.

    from leaps.toy import judge_scores
    judge_scores(result.video, result.targets)
    # {"toy_judge_2d": {"top1": 0.9, "p_target": 0.84}, "toy_judge_attn": {...}}

The judges (:mod:`leaps.toy.judges`) were trained apart from the networks LEAPS inverts and
verifies with (other families, other clips, other augmentation), so their top-1 on a batch of
inversions says how recognisable the videos are to a classifier that shares fewer blind spots.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import torch
import torch.nn.functional as F

from leaps.errors import ShapeError, UnknownModelError
from leaps.video import normalize

#: Registry names of the judges, in the order they are reported.
JUDGES: tuple[str, ...] = ("toy_judge_2d", "toy_judge_attn")


@lru_cache(maxsize=None)
def _judge(name: str, device: str):
    from leaps.models import build_model, get_spec

    if not get_spec(name).judge:
        raise UnknownModelError(f"{name} is not a judge; judges are {', '.join(JUDGES)}")
    return build_model(name, pretrained=True).to(device)


def _check_videos(videos) -> None:
    if not isinstance(videos, torch.Tensor) or videos.ndim != 5 or videos.shape[1] != 3:
        shape = tuple(videos.shape) if isinstance(videos, torch.Tensor) else type(videos).__name__
        raise ShapeError(f"judges score N x 3 x T x H x W videos in [0, 1], got {shape}")


@torch.no_grad()
def judge_probs(videos: torch.Tensor, judges: Sequence[str] = JUDGES) -> dict[str, torch.Tensor]:
    """Softmax outputs ``N x 10`` of every judge on ``videos`` (``N x 3 x T x S x S``, pixels in [0, 1]).

    Videos of another geometry are resized (trilinear) to the judge's 8 x 64^2 first; the
    judge's own normalisation (TOY_MEAN / TOY_STD) is applied here.
    """
    _check_videos(videos)
    out = {}
    for name in judges:
        model = _judge(name, str(videos.device))
        spec = model.leaps_spec
        x = videos.float()
        if tuple(x.shape[2:]) != spec.input_geometry:
            x = F.interpolate(x, size=spec.input_geometry, mode="trilinear", align_corners=False)
        out[name] = model(normalize(x, spec.mean, spec.std)).softmax(1).cpu()
    return out


def judge_scores(videos: torch.Tensor, targets: Sequence[int], judges: Sequence[str] = JUDGES, *,
                 top5: bool = False) -> dict[str, dict]:
    """Per judge: ``top1`` (fraction of videos whose argmax is the target) and ``p_target`` (mean
    probability of the target) over the batch ``videos`` (``N x 3 x T x S x S`` in [0, 1]).

    ``top5=True`` adds, per video, the judge's five most probable classes as ``top5``: a list of
    ``{"index", "name", "prob"}`` per video (the report shows them beside the networks' top-5).
    """
    from leaps.metrics import top_k_predictions

    from .data import TOY_CLASSES

    _check_videos(videos)
    targets = torch.as_tensor(list(targets), dtype=torch.long)
    if len(targets) != len(videos):
        raise ShapeError(f"got {len(videos)} videos but {len(targets)} targets")
    scores = {}
    for name, probs in judge_probs(videos, judges).items():
        scores[name] = scores_from_probs(probs, targets)
        if top5:
            scores[name]["top5"] = top_k_predictions(probs, TOY_CLASSES)
    return scores


def target_hits_and_probs(probs: torch.Tensor, targets) -> tuple[torch.Tensor, torch.Tensor]:
    """Per video of softmax outputs ``N x classes``: is the top-1 its target (bool), and p(target)."""
    targets = torch.as_tensor(list(targets), dtype=torch.long)
    return probs.argmax(1) == targets, probs[torch.arange(len(targets)), targets]


def scores_from_probs(probs: torch.Tensor, targets) -> dict[str, float]:
    """``top1`` and ``p_target`` of softmax outputs ``N x classes`` against ``targets`` (N class indices)."""
    hits, p_target = target_hits_and_probs(probs, targets)
    return {"top1": float(hits.float().mean()), "p_target": float(p_target.mean())}


def format_judge_scores(scores: dict[str, dict]) -> list[str]:
    """One printable line per judge: its top-1 and mean p(target)."""
    width = max(len(name) for name in scores)
    return [f"judge {name:<{width}}  top-1 {100 * s['top1']:5.1f}%  mean p(target) {s['p_target']:.3f}"
            for name, s in scores.items()]
