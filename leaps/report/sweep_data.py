"""A sweep folder: ``manifests/rank-*.jsonl`` with one JSON record per synthesised video.

The record schema is not final; this reads the plausible one below and tolerates missing or oddly
typed fields (a record with NaN, a missing video: the page says so)::

    {"job_id": "...", "model": "slow_r50", "method": "leaps", "target": 17, "class_name": "...",
     "stimulus": "...", "seed": 0, "video": "videos/x.gif" (relative to the sweep folder),
     "thumbnail": optional image, "model_top1": 17 or "name", "model_prob": 0.93,
     "verifier_top1": ..., "verifier_prob": ..., "losses": {"loss": ..., ...},
     "frame_ssim": float or per-pair list, "frame_psnr": ..., "status": "ok" | "failed", "reason": "..."}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .files import as_dict, as_float, inside, read_jsonl

MANIFESTS = "manifests"
PATTERN = "rank-*.jsonl"


@dataclass
class Record:
    job_id: str
    model: str
    method: str
    target: int | None
    class_name: str
    stimulus: str
    seed: object
    video: Path | None
    thumbnail: Path | None
    model_top1: str
    model_prob: float | None
    verifier_top1: str
    verifier_prob: float | None
    model_correct: bool | None
    verifier_correct: bool | None
    losses: dict
    frame_ssim: float | None
    frame_psnr: float | None
    ok: bool
    reason: str


@dataclass
class SweepData:
    root: Path
    manifests: list[Path] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def detect(root: Path) -> bool:
    return any((root / MANIFESTS).glob(PATTERN)) if (root / MANIFESTS).is_dir() else False


def collect(root: Path) -> SweepData:
    data = SweepData(root, sorted((root / MANIFESTS).glob(PATTERN)) if (root / MANIFESTS).is_dir() else [])
    if not data.manifests:
        data.problems.append(f"no {MANIFESTS}/{PATTERN} in {root}")
    for path in data.manifests:
        for raw in read_jsonl(path, data.problems, root):
            data.records.append(_record(raw, root))
    if data.manifests and not data.records:
        data.problems.append("the manifests hold no records")
    missing = [r for r in data.records if r.ok and (r.video is None or not r.video.is_file())]
    if missing:
        data.problems.append(f"{len(missing)} video file(s) of successful records are missing, e.g. "
                             f"{_shown(missing[0].video, root)} ({missing[0].job_id})")
    return data


def _shown(path: Path | None, root: Path) -> str:
    if path is None:
        return "no path recorded"
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _text(value, default: str = "") -> str:
    return default if value is None else str(value)


def _mean(value) -> float | None:
    """A per-pair list is averaged (finite entries); a number is taken as it is (NaN kept)."""
    if isinstance(value, list):
        numbers = [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
        return sum(numbers) / len(numbers) if numbers else None
    return as_float(value)


def _prediction(raw: dict, prefix: str) -> tuple[str, float | None]:
    top1 = raw.get(f"{prefix}_top1", raw.get(f"top1_{prefix}"))
    prob = raw.get(f"{prefix}_prob", raw.get(f"{prefix}_top1_prob"))
    return _text(top1, "–"), as_float(prob)


def _correct(top1, raw: dict, target, class_name: str) -> bool | None:
    flag = raw.get(f"{top1}_correct")
    if isinstance(flag, bool):
        return flag
    value = raw.get(f"{top1}_top1", raw.get(f"top1_{top1}"))
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return target is not None and value == target
    return str(value) == class_name


def _class_name(model, index) -> object:
    """A class index as its name where the model is registered (leaps sweep records store indices)."""
    if not isinstance(index, int) or isinstance(index, bool):
        return index
    try:
        from leaps.classes import kinetics400_classes
        from leaps.models import get_spec

        names = get_spec(str(model)).class_names or kinetics400_classes()
        return names[index] if 0 <= index < len(names) else index
    except Exception:  # noqa: BLE001 - an unknown model or class list: show the index
        return index


def _flatten_predictions(raw: dict, verifier: object) -> dict:
    """``leaps sweep`` nests predictions as ``{"model_pred": {"top1", "probs", "correct"}}``: flatten them."""
    raw = dict(raw)
    for who, network in (("model", raw.get("model")), ("verifier", verifier)):
        pred = raw.get(f"{who}_pred")
        if not isinstance(pred, dict):
            continue
        top1, probs = pred.get("top1"), pred.get("probs")
        raw.setdefault(f"{who}_top1", _class_name(network, top1))
        if isinstance(probs, list) and isinstance(top1, int) and 0 <= top1 < len(probs):
            raw.setdefault(f"{who}_prob", probs[top1])
        if isinstance(pred.get("correct"), bool):
            raw.setdefault(f"{who}_correct", pred["correct"])
    return raw


def _record(raw: dict, root: Path) -> Record:
    raw = _flatten_predictions(raw, raw.get("verifier"))
    target = raw.get("target") if isinstance(raw.get("target"), int) and not isinstance(raw.get("target"), bool) \
        else None
    class_name = _text(raw.get("class_name"), f"class {target}" if target is not None else "?")
    status = _text(raw.get("status"), "ok")
    model_top1, model_prob = _prediction(raw, "model")
    verifier_top1, verifier_prob = _prediction(raw, "verifier")
    return Record(
        job_id=_text(raw.get("job_id"), "?"), model=_text(raw.get("model"), "?"), method=_text(raw.get("method"), "?"),
        target=target, class_name=class_name, stimulus=_text(raw.get("stimulus")), seed=raw.get("seed"),
        video=inside(raw.get("video"), root), thumbnail=inside(raw.get("thumbnail"), root),
        model_top1=model_top1, model_prob=model_prob, verifier_top1=verifier_top1, verifier_prob=verifier_prob,
        model_correct=_correct("model", raw, target, class_name),
        verifier_correct=_correct("verifier", raw, target, class_name),
        losses={str(k): v for k, v in as_dict(raw.get("losses") or raw.get("loss_terms")).items()},
        frame_ssim=_mean(raw.get("frame_ssim")), frame_psnr=_mean(raw.get("frame_psnr")),
        ok=status == "ok", reason=_text(raw.get("reason")))
