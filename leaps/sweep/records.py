"""The record of one video: what the tables need, JSON-ready (finite floats only)."""

from __future__ import annotations

import math
import time

import torch

from .jobs import Job
from .manifest import FAILED, OK

TOP_K = 5
PROB_DIGITS = 6


def base_record(job: Job, attempt: str, attempt_size: int, worker: int, inversion_seed: int) -> dict:
    stim = job.stimulus
    return {
        "job_id": job.job_id,
        "attempt": attempt,
        "attempt_size": attempt_size,
        "worker": worker,
        "model": job.model,
        "verifier": job.verifier,
        "method": job.method,
        "config_tag": job.config_tag,
        "target": job.target,
        "class_name": job.class_name,
        "stimulus": (stim.path or stim.identity) if stim is not None else None,
        "stimulus_identity": stim.identity if stim is not None else None,
        "run": job.run,
        "seed": job.seed,
        "inversion_seed": inversion_seed,
        "finished": time.time(),
    }


def failed_record(base: dict, reason: str) -> dict:
    return {**base, "status": FAILED, "reason": " ".join(str(reason).split())}


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def prediction(probs: torch.Tensor | None, target: int) -> dict:
    """Top-1, whether it is the target, the top-5 and the full (rounded) probabilities."""
    if probs is None:
        return {}
    p = probs.double()
    top = p.topk(min(TOP_K, len(p)))
    return {
        "top1": int(top.indices[0]),
        "correct": int(top.indices[0]) == target,
        "top5": [[int(i), round(float(v), PROB_DIGITS)] for v, i in zip(top.values, top.indices, strict=True)],
        "probs": [round(float(v), PROB_DIGITS) for v in p],
    }


def frame_similarity(video: torch.Tensor) -> dict:
    """Mean SSIM and PSNR of consecutive frames (Fig. 7); PSNR of identical frames (inf) is left out."""
    from leaps.metrics import frame_psnr, frame_ssim

    if video.shape[1] < 2:
        return {"frame_ssim": None, "frame_psnr": None}
    psnr = frame_psnr(video)
    psnr = psnr[torch.isfinite(psnr)]
    return {"frame_ssim": _finite(frame_ssim(video).mean()),
            "frame_psnr": _finite(psnr.mean()) if len(psnr) else None}


def ok_record(base: dict, *, video: torch.Tensor, video_path: str, losses: dict, model_probs, verifier_probs,
              wall_s: float, batch_size: int) -> dict:
    target = base["target"]
    return {
        **base,
        "status": OK,
        "video": video_path,
        "losses": {k: _finite(v) for k, v in losses.items()},
        "model_pred": prediction(model_probs, target),
        "verifier_pred": prediction(verifier_probs, target),
        **frame_similarity(video),
        "batch_size": batch_size,
        "wall_s": round(wall_s / batch_size, 4),  # the batch's time shared among its videos
        "batch_wall_s": round(wall_s, 4),
    }
