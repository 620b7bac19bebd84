"""Stimulus sets: what a sweep primes its inversions with, one :class:`Stimulus` per video.

Three sources, chosen by :func:`load_stimulus_set`:

* ``toy:SPLIT:N`` - N generated clips of the toy world's SPLIT ('test' by default: held out from
  training), item ``i`` of class ``i % 10`` (:class:`leaps.toy.data.ToyVideos`);
* a folder in the Kinetics layout ``ROOT/<class name>/<video file>``;
* a CSV (``path,label`` rows, optional header) or JSONL (``{"path": ..., "label": ...}``)
  manifest; relative paths are relative to the manifest's folder; a label is a name or an index.

Class names are resolved against the model's class list (case-insensitive, ``_`` = space);
unknown names raise :class:`StimulusSetError` with suggestions. Files are only listed here, never
decoded: a missing or corrupt video fails its own job later, not the sweep.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from leaps.errors import UnknownClassError

from .errors import StimulusSetError

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif", ".m4v", ".mpg", ".mpeg"}
TOY_PREFIX = "toy:"
DEFAULT_STIMULI = "toy:test:20"


@dataclass(frozen=True)
class Stimulus:
    """One stimulus video and its class.

    ``identity`` names the exact content a job depends on: path, size and mtime of a file, or the
    toy split, item and seed; it goes into the job id, so an edited file is a new job.
    """

    name: str            # short human name: file name or toy item
    label: int           # class index in the model's class list
    class_name: str      # the model's name of that class
    identity: str
    path: str | None = None             # a file on disk, or
    toy: tuple[str, int] | None = None  # (split, index) of a toy-world item

    def load(self, frames: int, size: int):
        """3 x frames x size x size in [0, 1]; raises VideoError for a bad file."""
        if self.toy is not None:
            from leaps.toy.data import ToyVideos

            split, index = self.toy
            return ToyVideos(split, index + 1, frames=frames, size=size, normalize=False)[index][0]
        from leaps.video import read_video

        return read_video(self.path, frames, size)


def load_stimulus_set(source: str, class_names: list[str]) -> list[Stimulus]:
    """The stimuli of ``source`` (see the module docstring), in a deterministic order."""
    source = str(source)
    if source.startswith(TOY_PREFIX):
        return toy_stimuli(source, class_names)
    path = Path(source)
    if path.is_dir():
        return folder_stimuli(path, class_names)
    if path.is_file():
        readers = {".csv": csv_stimuli, ".jsonl": jsonl_stimuli, ".ndjson": jsonl_stimuli}
        reader = readers.get(path.suffix.lower())
        if reader is None:
            raise StimulusSetError(f"stimulus manifest {path} must be .csv or .jsonl")
        try:
            return reader(path, class_names)
        except UnicodeDecodeError as exc:
            raise StimulusSetError(f"stimulus manifest {path} is not UTF-8 text (byte {exc.start})") from None
        except (csv.Error, ValueError) as exc:  # NUL bytes, over-long fields, paths the OS refuses
            raise StimulusSetError(f"stimulus manifest {path} is malformed: {exc}") from None
    raise StimulusSetError(f"stimulus set {source!r} is neither a folder, a .csv/.jsonl manifest nor toy:SPLIT:N")


def toy_stimuli(source: str, class_names: list[str]) -> list[Stimulus]:
    from leaps.toy.data import TOY_CLASSES, ToyVideos

    parts = source.split(":")
    if len(parts) == 2:
        parts = [parts[0], "test", parts[1]]
    if len(parts) != 3 or parts[1] not in ("train", "val", "test") or not parts[2].isdigit() or int(parts[2]) < 1:
        raise StimulusSetError(f"toy stimulus set must be toy:SPLIT:N (SPLIT train, val or test; N >= 1), "
                               f"got {source!r}")
    if list(class_names) != list(TOY_CLASSES):
        raise StimulusSetError(f"{source} holds toy-world classes, but the model has other classes (use a toy_* model)")
    split, count = parts[1], int(parts[2])
    dataset = ToyVideos(split, count)
    return [Stimulus(name=f"{split}{i:05d}", label=dataset.label(i), class_name=TOY_CLASSES[dataset.label(i)],
                     identity=f"toy:{split}:{i}:{dataset.item_seed(i)}", toy=(split, i))
            for i in range(count)]


def file_identity(path: Path) -> str:
    """Path, size and mtime: an edited or replaced file gets a new identity (a missing one its path)."""
    resolved = path.resolve()
    try:
        st = resolved.stat()
    except OSError:
        return f"file:{resolved}:missing"
    return f"file:{resolved}:{st.st_size}:{st.st_mtime_ns}"


def resolve_class(label: str, class_names: list[str], where: str) -> int:
    """Class index of a name or index ``label``; a StimulusSetError naming ``where`` if unknown."""
    from leaps.classes import resolve_target

    try:
        return resolve_target(str(label).strip(), class_names=list(class_names), num_classes=len(class_names))
    except UnknownClassError as exc:
        raise StimulusSetError(f"{where}: {exc}") from None


def _file_stimulus(path: Path, label: int, class_names: list[str]) -> Stimulus:
    return Stimulus(name=path.name, label=label, class_name=class_names[label], identity=file_identity(path),
                    path=str(path))


def folder_stimuli(root: Path, class_names: list[str]) -> list[Stimulus]:
    """``root/<class name>/<video>``: every class folder must name a class of the model."""
    out = []
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise StimulusSetError(f"stimulus folder {root} has no class folders (expected ROOT/<class name>/<video>)")
    for class_dir in class_dirs:
        label = resolve_class(class_dir.name, class_names, f"class folder {class_dir}")
        videos = sorted(f for f in class_dir.iterdir()
                        if f.suffix.lower() in VIDEO_EXTENSIONS and not f.name.startswith("."))
        out += [_file_stimulus(f, label, class_names) for f in videos]
    if not out:
        raise StimulusSetError(f"stimulus folder {root} holds no video files ({', '.join(sorted(VIDEO_EXTENSIONS))})")
    return out


def _rows_to_stimuli(rows, manifest: Path, class_names: list[str]) -> list[Stimulus]:
    out = []
    for line, (path, label) in rows:
        where = f"{manifest} line {line}"
        if not path or label is None or str(label).strip() == "":
            raise StimulusSetError(f"{where}: a row needs a path and a label")
        file = Path(os.path.expanduser(str(path)))
        if not file.is_absolute():
            file = manifest.parent / file
        out.append(_file_stimulus(file, resolve_class(label, class_names, where), class_names))
    if not out:
        raise StimulusSetError(f"stimulus manifest {manifest} has no rows")
    return out


def csv_stimuli(manifest: Path, class_names: list[str]) -> list[Stimulus]:
    """``path,label`` rows (a first row ``path,label`` is a header)."""
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = [(i + 1, r) for i, r in enumerate(csv.reader(f)) if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0][1][:2]] == ["path", "label"]:
        rows = rows[1:]
    for line, row in rows:
        if len(row) != 2:
            raise StimulusSetError(f"{manifest} line {line}: expected 2 columns path,label, got {len(row)}")
    return _rows_to_stimuli([(line, (r[0].strip(), r[1])) for line, r in rows], manifest, class_names)


def jsonl_stimuli(manifest: Path, class_names: list[str]) -> list[Stimulus]:
    """One ``{"path": ..., "label": ...}`` object per line."""
    rows = []
    with open(manifest, encoding="utf-8") as f:
        for i, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise StimulusSetError(f"{manifest} line {i}: not JSON ({exc.msg})") from None
            except RecursionError:
                raise StimulusSetError(f"{manifest} line {i}: JSON nested too deeply") from None
            if not isinstance(obj, dict):
                raise StimulusSetError(f"{manifest} line {i}: expected an object with path and label")
            rows.append((i, (obj.get("path"), obj.get("label"))))
    return _rows_to_stimuli(rows, manifest, class_names)
