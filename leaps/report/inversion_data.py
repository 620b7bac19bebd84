"""What an inversion folder (``leaps invert`` / ``leaps demo`` output) holds, read defensively.

Written by :meth:`leaps.inversion.InversionResult.save`: ``{stem}.mp4/.gif`` (all videos tiled),
``{stem}_{i}.mp4/.gif`` per video when there are several, the contact sheet ``{stem}.png``,
snapshots ``{stem}_step*.png``, ``{stem}_history.json``, ``{stem}_run.json``; ``leaps demo`` adds
``stimuli/`` and, in the run json, the judges' scores (``judges``, ``judges_on_stimuli``). A NaN
run leaves ``last_finite.mp4``. Anything missing becomes a line in :attr:`InversionData.problems`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .files import as_dict, as_float, as_list, inside, read_json

STEM = "leaps"
VIDEO_SUFFIXES = (".gif", ".mp4", ".webm")
STIMULUS_SUFFIXES = (".mp4", ".gif", ".webm", ".avi", ".mov", ".mkv")


@dataclass
class Prediction:
    index: int | None
    name: str
    prob: float | None


@dataclass
class Video:
    index: int
    target: int | None
    target_name: str
    candidates: list[Path]          # animations to show, best first (gif, then mp4)
    stimulus: Path | None
    stimulus_note: str
    top5_model: list[Prediction]
    top5_verifier: list[Prediction]
    # judge name -> its top-5 on this video (leaps demo: networks that took no part in the objective)
    judges: dict[str, list[Prediction]] = field(default_factory=dict)


@dataclass
class InversionData:
    root: Path
    stem: str
    history_path: Path
    problems: list[str] = field(default_factory=list)
    videos: list[Video] = field(default_factory=list)
    combined: list[Path] = field(default_factory=list)
    contact_sheet: Path | None = None
    snapshots: list[Path] = field(default_factory=list)
    last_finite: Path | None = None
    losses: dict[str, list] = field(default_factory=dict)
    frame_ssim: list[list] = field(default_factory=list)
    frame_psnr: list[list] = field(default_factory=list)
    top1_model: float | None = None
    top1_verifier: float | None = None
    model: dict = field(default_factory=dict)
    verifier: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    preset: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    # judge name -> {"top1", "p_target"} over the videos, and over the stimuli they were primed with
    judges: dict[str, dict] = field(default_factory=dict)
    judges_on_stimuli: dict[str, dict] = field(default_factory=dict)


def detect(root: Path) -> bool:
    """An inversion folder: a ``*_history.json`` or the videos / contact sheet of one."""
    return bool(_history_files(root)) or any((root / f"{STEM}{s}").is_file() for s in (".gif", ".mp4", ".png")) \
        or (root / "last_finite.mp4").is_file()


def _history_files(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*_history.json") if p.is_file())


def _stem(root: Path) -> str:
    histories = _history_files(root)
    if (root / f"{STEM}_history.json").is_file() or not histories:
        return STEM
    return histories[0].name[: -len("_history.json")]


def collect(root: Path) -> InversionData:
    stem = _stem(root)
    data = InversionData(root=root, stem=stem, history_path=root / f"{stem}_history.json")
    history = read_json(data.history_path, data.problems, root)
    if history is not None and not isinstance(history, dict):
        data.problems.append(f"{data.history_path.name} does not hold a JSON object")
        history = None
    if history is None:
        data.problems.append("without the history JSON there are no loss curves, top-5, config or environment")
    history = history or {}

    data.losses = {k: v for k, v in as_dict(history.get("history")).items() if isinstance(v, list)}
    data.frame_ssim = [v for v in as_list(history.get("frame_ssim")) if isinstance(v, list)]
    data.frame_psnr = [v for v in as_list(history.get("frame_psnr")) if isinstance(v, list)]
    data.top1_model = as_float(history.get("top1_model"))
    data.top1_verifier = as_float(history.get("top1_verifier"))
    data.model, data.verifier = as_dict(history.get("model")), as_dict(history.get("verifier"))
    data.config, data.preset = as_dict(history.get("config")), as_dict(history.get("preset"))
    data.environment = as_dict(history.get("environment"))

    sheet = root / f"{stem}.png"
    data.contact_sheet = sheet
    if not sheet.is_file():
        data.problems.append(f"the contact sheet {sheet.name} is missing")
    data.combined = [root / f"{stem}{s}" for s in VIDEO_SUFFIXES]
    data.snapshots = sorted(root.glob(f"{stem}_step*.png"), key=_step_of)
    last = root / "last_finite.mp4"
    data.last_finite = last if last.is_file() else None
    if data.last_finite:
        data.problems.append("the loss became NaN/inf: last_finite.mp4 is the last video with a finite loss")
    data.videos = _videos(root, stem, history, data.problems)
    _judges(root / f"{stem}_run.json", data)
    return data


def _judges(path: Path, data: InversionData) -> None:
    """The judges' scores of a run json (``leaps demo`` records them), if any: none is no problem."""
    if not path.is_file():
        return
    run = read_json(path, data.problems, data.root)
    if not isinstance(run, dict):
        return
    for key in ("judges", "judges_on_stimuli"):
        scores = {str(name): {k: as_float(as_dict(s).get(k)) for k in ("top1", "p_target")}
                  for name, s in as_dict(run.get(key)).items()}
        setattr(data, key, {name: s for name, s in scores.items() if s["top1"] is not None})
    for name, s in as_dict(run.get("judges")).items():
        for video, rows in zip(data.videos, as_list(as_dict(s).get("top5"))):
            video.judges[str(name)] = _predictions(rows)


def _step_of(path: Path) -> int:
    match = re.search(r"_step(\d+)\.png$", path.name)
    return int(match.group(1)) if match else 0


def _count(root: Path, stem: str, history: dict) -> int:
    targets = as_list(history.get("targets"))
    if targets:
        return len(targets)
    per_video = {int(m.group(1)) for p in root.glob(f"{stem}_*") if (m := re.fullmatch(
        re.escape(stem) + r"_(\d+)\.(gif|mp4|webm)", p.name))}
    if per_video:
        return max(per_video) + 1
    return 1 if any((root / f"{stem}{s}").is_file() for s in VIDEO_SUFFIXES) else 0


def _videos(root: Path, stem: str, history: dict, problems: list[str]) -> list[Video]:
    count = _count(root, stem, history)
    targets = as_list(history.get("targets"))
    names = as_list(history.get("target_names"))
    top_m, top_v = as_list(history.get("top5_model")), as_list(history.get("top5_verifier"))
    recorded_stimuli = as_list(history.get("stimuli"))
    videos = []
    for i in range(count):
        target = targets[i] if i < len(targets) and isinstance(targets[i], int) else None
        name = names[i] if i < len(names) and names[i] is not None else (f"class {target}" if target is not None
                                                                        else f"video {i}")
        base = f"{stem}_{i}" if count > 1 else stem
        candidates = [root / f"{base}{s}" for s in VIDEO_SUFFIXES]
        if not any(p.is_file() for p in candidates):
            problems.append(f"video {i} ({name}): none of {', '.join(p.name for p in candidates)} exists")
        stimulus, note = _stimulus(root, i, target, recorded_stimuli)
        videos.append(Video(i, target, str(name), candidates, stimulus, note,
                            _predictions(top_m[i] if i < len(top_m) else None),
                            _predictions(top_v[i] if i < len(top_v) else None)))
    return videos


def _predictions(rows) -> list[Prediction]:
    out = []
    for row in as_list(rows):
        row = as_dict(row)
        index = row.get("index") if isinstance(row.get("index"), int) else None
        name = row.get("name")
        label = str(name) if name is not None else (f"class {index}" if index is not None else "?")
        out.append(Prediction(index, label, as_float(row.get("prob"))))
    return out


def _stimulus(root: Path, i: int, target: int | None, recorded: list) -> tuple[Path | None, str]:
    """The stimulus of video ``i``: recorded in the history, else ``stimuli/NN_*`` of its target
    (``leaps demo``), else the only file of ``stimuli/``."""
    if i < len(recorded) and recorded[i]:
        path = inside(recorded[i], root)
        if path is not None and path.is_file():
            return path, ""
        return None, f"stimulus {recorded[i]} is missing"
    folder = root / "stimuli"
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in STIMULUS_SUFFIXES) if folder.is_dir() else []
    if target is not None:
        for p in files:
            if p.name.startswith(f"{target:02d}_"):
                return p, ""
    if len(files) == 1:
        return files[0], ""
    return None, "no stimulus recorded"
