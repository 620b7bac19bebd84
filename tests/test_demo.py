"""``leaps demo``: reproducible from its seed, and its outputs say what each video is and how it scores."""

import json

import numpy as np
import pytest
import torch

import leaps.inversion
from leaps import demo
from leaps.inversion import InversionResult, invert
from leaps.toy.data import TOY_CLASSES, generate
from leaps.video import sample_indices


def fake_result(labels, frames=demo.DEMO_FRAMES, size=demo.DEMO_SIZE):
    """An InversionResult whose model is right on every video but the second, the verifier on the first only."""
    b, k = len(labels), len(TOY_CLASSES)
    model = torch.full((b, k), 0.01)
    model[torch.arange(b), torch.tensor(labels)] = 0.9
    model[1] = 0.01
    model[1, labels[0]] = 0.8
    verifier = torch.full((b, k), 0.02)
    verifier[:, labels[0]] = 0.7
    video = torch.rand(b, 3, frames, size, size, generator=torch.Generator().manual_seed(0))
    return InversionResult(video=video, x=video, targets=list(labels), history={"loss": [1.0, 0.5]},
                           model_probs=model, verifier_probs=verifier)


def test_demo_stimuli_are_the_generated_tensors_not_a_codec_round_trip(tmp_path):
    labels, stimuli = demo.demo_batch(tmp_path / "a")
    again_labels, again = demo.demo_batch(tmp_path / "b")
    assert labels == again_labels and labels[0] == TOY_CLASSES.index(demo.DEMO_CLASS)
    assert sorted(labels) == list(range(len(TOY_CLASSES)))
    for label, stimulus, other in zip(labels, stimuli, again):
        clip = generate(label, seed=demo.DEMO_STIMULUS_SEED + label, frames=16, size=demo.DEMO_SIZE)
        # the frames read_video samples from the written 16-frame clip, without the codec's loss
        assert torch.equal(stimulus, clip[:, sample_indices(16, demo.DEMO_FRAMES)])
        assert torch.equal(stimulus, other)
    written = sorted(p.name for p in (tmp_path / "a" / "stimuli").iterdir())
    assert len(written) == len(TOY_CLASSES) and "06_ring_growing.mp4" in written
    for name in written:  # the stimulus videos are outputs, and deterministic ones
        assert (tmp_path / "a" / "stimuli" / name).read_bytes() == (tmp_path / "b" / "stimuli" / name).read_bytes()


def test_demo_inversion_is_bit_reproducible(tmp_path):
    model, verifier = demo.demo_networks("cpu")
    config = demo.demo_config(2, progress=False, seed=0)
    runs = []
    for name in ("first", "second"):  # the whole pipeline twice: stimuli written and generated anew
        labels, stimuli = demo.demo_batch(tmp_path / name)
        runs.append(demo.at_demo_size(invert(model, labels, stimuli, verifier, config)))
    first, second = runs
    assert len(first.history["loss"]) == 2
    assert first.history == second.history  # exact equality of every term at every step
    assert torch.equal(first.video, second.video)
    assert torch.equal(first.model_probs, second.model_probs)


def test_sheet_labels_name_the_class_and_both_confidences():
    labels = [6, 0, 1]
    names = demo.sheet_labels(fake_result(labels), TOY_CLASSES)
    assert names[0] == "ring growing\nmodel 0.90\nverifier 0.70"
    # a wrong top-1 is named after the confidence in the target
    assert names[1] == "square moving up\nmodel 0.01 -> ring growing\nverifier 0.02 -> ring growing"


def test_class_report_lists_every_class_with_both_top1():
    labels = list(range(len(TOY_CLASSES)))
    lines = demo.class_report(fake_result(labels), TOY_CLASSES)
    assert len(lines) == 1 + len(TOY_CLASSES)
    assert "model top-1" in lines[0] and "verifier top-1" in lines[0]
    for label, line in zip(labels, lines[1:]):
        assert f"leaps_{label}" in line and TOY_CLASSES[label] in line
    cells = [c.strip() for c in lines[1 + 6].split("  ") if c.strip()]
    assert cells == ["leaps_6", "ring growing", "ring growing 0.90", "square moving up 0.70 (wrong)"]
    assert "(wrong)" not in lines[1]  # video 0: both right
    assert lines[2].count("(wrong)") == 2  # video 1: both networks pick 'square moving up'


def test_run_demo_prints_every_class_labels_the_sheet_and_records_the_run(tmp_path, capsys, monkeypatch):
    def fake_invert(model, labels, stimuli, verifier, config):
        assert len(stimuli) == len(labels) and all(s.shape == (3, demo.DEMO_FRAMES, demo.DEMO_SIZE, demo.DEMO_SIZE)
                                                   for s in stimuli)
        return fake_result(labels)

    def run(invert_fn, out):  # as the CLI's: invert, then save the result (once: the sheet and run json included)
        invert_fn().save(out)
        return 0

    monkeypatch.setattr(leaps.inversion, "invert", fake_invert)
    monkeypatch.setattr(demo, "demo_networks", lambda device: (None, None))
    out = tmp_path / "demo"
    assert demo.run_demo(out, steps=2, device="cpu", progress=False, run=run, seed=5) == 0
    printed = capsys.readouterr().out
    table = printed[printed.index("per video"):].splitlines()[1:2 + len(TOY_CLASSES)]
    for name in TOY_CLASSES:
        assert any(name in line for line in table), name

    import av

    with av.open(str(out / "leaps.png")) as container:
        sheet = next(container.decode(video=0)).to_ndarray(format="rgb24")
    frames_width = demo.DEMO_FRAMES * demo.DEMO_SIZE + (demo.DEMO_FRAMES - 1) * 2
    assert sheet.shape[1] > frames_width  # the label column
    label_column = sheet[:, : sheet.shape[1] - frames_width]
    assert (label_column == 0).all(axis=2).sum() > 100  # black text on white

    run_json = json.loads((out / "leaps_run.json").read_text())
    assert run_json["seed"] == 5 and run_json["config"]["seed"] == 5 and run_json["config"]["steps"] == 2
    assert run_json["torch_version"] == torch.__version__ and run_json["leaps_version"] == leaps.__version__
    assert run_json["config"]["prior_tv"] == demo.DEMO_PRESET["prior_tv"]
    assert run_json["model"] == demo.DEMO_MODEL and run_json["targets"][0] == demo.DEMO_CLASS
    # the judges on the videos and, for reference, on the real stimuli (which they recognise)
    assert set(run_json["judges"]) == set(run_json["judges_on_stimuli"]) == {"toy_judge_2d", "toy_judge_attn"}
    assert all(s["top1"] >= 0.8 for s in run_json["judges_on_stimuli"].values())
    assert "on the ten stimuli" in printed


def test_a_failed_demo_run_still_records_what_it_was(tmp_path, monkeypatch):
    def run(invert_fn, out):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(demo, "demo_networks", lambda device: (None, None))
    with pytest.raises(RuntimeError, match="out of memory"):
        demo.run_demo(tmp_path, steps=2, device="cpu", progress=False, run=run, seed=3)
    run_json = json.loads((tmp_path / "leaps_run.json").read_text())
    assert run_json["seed"] == 3 and run_json["command"] == "leaps demo" and "judges" not in run_json


@pytest.mark.parametrize("bad", ["ring shrinkin", 42])
def test_demo_batch_rejects_unknown_targets(tmp_path, bad):
    with pytest.raises(leaps.LeapsError):
        demo.demo_batch(tmp_path, bad)


def test_label_text_is_drawn_with_the_builtin_font():
    from leaps import video as V

    mask = V._text_mask("ab\n1")
    assert mask.shape == (2 * 9 - 2, 2 * 6 - 1)
    assert np.array_equal(mask[:7, :5], V._glyph("A")) and np.array_equal(mask[9:, :5], V._glyph("1"))
    assert np.array_equal(V._glyph("~"), V._glyph("?"))  # no glyph: a question mark
