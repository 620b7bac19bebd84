"""leaps.sweep.stimuli: the Kinetics-layout folder, CSV / JSONL manifests and toy:SPLIT:N readers."""

import json

import pytest

from leaps.sweep.errors import StimulusSetError
from leaps.sweep.stimuli import load_stimulus_set
from leaps.toy.data import TOY_CLASSES


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folder_resolves_class_names_with_underscores_spaces_and_case(tmp_path):
    touch(tmp_path / "square_moving_up" / "b.mp4")
    touch(tmp_path / "square_moving_up" / "a.avi")
    touch(tmp_path / "Ring Growing" / "c.mp4")
    touch(tmp_path / "Ring Growing" / "notes.txt")  # not a video: ignored
    stimuli = load_stimulus_set(str(tmp_path), TOY_CLASSES)
    assert [(s.name, s.label, s.class_name) for s in stimuli] == [
        ("c.mp4", 6, "ring growing"), ("a.avi", 0, "square moving up"), ("b.mp4", 0, "square moving up")]
    assert all(s.identity.startswith("file:") and s.path for s in stimuli)


def test_folder_unknown_class_suggests_close_names(tmp_path):
    touch(tmp_path / "square moving upp" / "a.mp4")
    with pytest.raises(StimulusSetError, match="did you mean 'square moving up'"):
        load_stimulus_set(str(tmp_path), TOY_CLASSES)


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(StimulusSetError, match="no class folders"):
        load_stimulus_set(str(tmp_path), TOY_CLASSES)


def test_identity_changes_when_the_file_changes(tmp_path):
    f = touch(tmp_path / "bar rotating" / "a.mp4")
    before = load_stimulus_set(str(tmp_path), TOY_CLASSES)[0].identity
    f.write_bytes(b"longer content")
    assert load_stimulus_set(str(tmp_path), TOY_CLASSES)[0].identity != before


def test_csv_with_header_names_and_indices_relative_paths(tmp_path):
    touch(tmp_path / "clips" / "a.mp4")
    (tmp_path / "set.csv").write_text("path,label\nclips/a.mp4,bar_blinking\n/abs/b.mp4,3\n\n")
    stimuli = load_stimulus_set(str(tmp_path / "set.csv"), TOY_CLASSES)
    assert [(s.label, s.path) for s in stimuli] == [(9, str(tmp_path / "clips" / "a.mp4")), (3, "/abs/b.mp4")]
    assert stimuli[1].identity.endswith(":missing")  # listed, not read: the job fails later, not the sweep


def test_csv_errors_name_the_line(tmp_path):
    (tmp_path / "bad.csv").write_text("a.mp4,0\nb.mp4,no such class\n")
    with pytest.raises(StimulusSetError, match="line 2"):
        load_stimulus_set(str(tmp_path / "bad.csv"), TOY_CLASSES)
    (tmp_path / "cols.csv").write_text("a.mp4\n")
    with pytest.raises(StimulusSetError, match="2 columns"):
        load_stimulus_set(str(tmp_path / "cols.csv"), TOY_CLASSES)
    (tmp_path / "range.csv").write_text("a.mp4,10\n")
    with pytest.raises(StimulusSetError, match="out of range"):
        load_stimulus_set(str(tmp_path / "range.csv"), TOY_CLASSES)


def test_jsonl(tmp_path):
    rows = [{"path": "x.mp4", "label": "ring shrinking"}, {"path": "y.mp4", "label": 1}]
    (tmp_path / "set.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    stimuli = load_stimulus_set(str(tmp_path / "set.jsonl"), TOY_CLASSES)
    assert [s.label for s in stimuli] == [7, 1]
    (tmp_path / "bad.jsonl").write_text('{"path": "x.mp4", "label": 0}\nnot json\n')
    with pytest.raises(StimulusSetError, match="line 2: not JSON"):
        load_stimulus_set(str(tmp_path / "bad.jsonl"), TOY_CLASSES)
    (tmp_path / "nolabel.jsonl").write_text('{"path": "x.mp4"}\n')
    with pytest.raises(StimulusSetError, match="line 1: a row needs a path and a label"):
        load_stimulus_set(str(tmp_path / "nolabel.jsonl"), TOY_CLASSES)


def test_toy_spec():
    stimuli = load_stimulus_set("toy:test:12", TOY_CLASSES)
    assert [s.label for s in stimuli] == [i % 10 for i in range(12)]
    assert len({s.identity for s in stimuli}) == 12
    video = stimuli[3].load(4, 16)
    assert tuple(video.shape) == (3, 4, 16, 16) and 0 <= float(video.min()) <= float(video.max()) <= 1
    assert load_stimulus_set("toy:5", TOY_CLASSES)[0].toy == ("test", 0)
    for bad in ("toy:test:0", "toy:dev:3", "toy:test:x"):
        with pytest.raises(StimulusSetError, match="toy:SPLIT:N"):
            load_stimulus_set(bad, TOY_CLASSES)
    with pytest.raises(StimulusSetError, match="toy_"):
        load_stimulus_set("toy:test:3", ["a", "b"])


def test_unknown_source(tmp_path):
    with pytest.raises(StimulusSetError, match="neither"):
        load_stimulus_set(str(tmp_path / "nope"), TOY_CLASSES)
    touch(tmp_path / "set.txt")
    with pytest.raises(StimulusSetError, match=".csv or .jsonl"):
        load_stimulus_set(str(tmp_path / "set.txt"), TOY_CLASSES)
