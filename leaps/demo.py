"""``leaps demo``: a complete LEAPS inversion on a CPU in about a minute, with nothing to download.

It inverts a toy-world network shipped with the package (``toy_r3d_robust``: the toy R3D trained
adversarially on procedurally generated action videos, see :mod:`leaps.toy`) with the shipped toy
verifier (``toy_x3d``) for R_feat. The robust network is the one whose inversions show shapes
(a hollow, curved object for 'ring growing'; the standard ``toy_r3d`` gives a blob). R_feat
matches the verifier's BatchNorm statistics of a *batch* (as in DeepInversion), and a single
video cannot have the statistics of a whole dataset, so the requested class is
synthesised together with one video of every other toy class, each primed by its own freshly
generated stimulus clip. The requested class comes first: ``leaps_0.mp4`` / ``.gif`` and the top
row of the contact sheet ``leaps.png``. After the run the judges (``leaps.toy.JUDGES``, networks of
other families trained apart, never in the objective) score the batch; their top-1 and mean
p(target) are printed and recorded in ``leaps_run.json`` under ``judges``, next to the same
judges' scores on the ten stimuli themselves (``judges_on_stimuli``). The same command line
inverts a real model:
``leaps invert --model slow_r50 --weights SLOW_8x8_R50.pyth --target ... --stimulus ...``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from .presets import named_preset

DEMO_MODEL = "toy_r3d_robust"
DEMO_VERIFIER = "toy_x3d"
DEMO_CLASS = "ring growing"
DEMO_FRAMES, DEMO_SIZE = 8, 64
DEMO_STIMULUS_SEED = 2023

#: The demo's recipe: the named preset ``toy-demo-frames`` (leaps/presets.py says why each field),
#: the InversionConfig fields that differ from the library defaults.
DEMO_PRESET_NAME = "toy-demo-frames"
DEMO_PRESET = named_preset(DEMO_PRESET_NAME)


def demo_config(steps: int, progress: bool = True, seed: int = 0):
    """The :class:`InversionConfig` of ``leaps demo``: the toy geometry with :data:`DEMO_PRESET`."""
    from .config import InversionConfig

    return InversionConfig(steps=steps, frames=DEMO_FRAMES, size=DEMO_SIZE, progress=progress,
                           seed=seed).replace(**DEMO_PRESET)


def at_demo_size(result):
    """The result with its videos upsampled to the demo's 64^2 as the networks saw them (x* is 32^2)."""
    import torch.nn.functional as F

    if tuple(result.video.shape[2:]) != (DEMO_FRAMES, DEMO_SIZE, DEMO_SIZE):
        result.video = F.interpolate(result.video, size=(DEMO_FRAMES, DEMO_SIZE, DEMO_SIZE), mode="trilinear",
                                     align_corners=False).clamp(0, 1)
    return result


def demo_batch(out: Path, target: str = DEMO_CLASS, stimuli_per_class: int = 1) -> tuple[list[int], list]:
    """The demo's targets (``target`` first, then every other toy class) and their stimuli.

    Each stimulus is generated (16 frames, seed ``DEMO_STIMULUS_SEED + label``) and written as
    mp4 under ``out/stimuli`` for the user to look at; the inversion is primed from the generated
    tensor itself (the ``DEMO_FRAMES`` frames :func:`leaps.video.read_video` would sample), so
    that the run does not depend on the video codec and ``--seed`` reproduces it bit for bit.

    ``stimuli_per_class`` k > 1: each target gets a list of k clips (the first as above, the others
    seeded ``DEMO_STIMULUS_SEED + label + j * classes``), which the inversion primes from together
    (multi-stimuli priming, Section S5: the mean of their feature means).
    """
    from .classes import resolve_target
    from .errors import LeapsError
    from .toy.data import TOY_CLASSES, generate
    from .video import sample_indices, write_video

    if isinstance(stimuli_per_class, bool) or not isinstance(stimuli_per_class, int) or stimuli_per_class < 1:
        raise LeapsError(f"stimuli_per_class must be a whole number >= 1, got {stimuli_per_class!r}")
    label = resolve_target(target, class_names=TOY_CLASSES)
    labels = [label] + [c for c in range(len(TOY_CLASSES)) if c != label]
    stimuli = []
    for c in labels:
        group = []
        for j in range(stimuli_per_class):
            clip = generate(c, seed=DEMO_STIMULUS_SEED + c + j * len(TOY_CLASSES), frames=16, size=DEMO_SIZE)
            suffix = f"_{j}" if j else ""
            write_video(clip, out / "stimuli" / f"{c:02d}_{TOY_CLASSES[c].replace(' ', '_')}{suffix}.mp4", fps=8)
            group.append(clip[:, sample_indices(clip.shape[1], DEMO_FRAMES)].contiguous())
        stimuli.append(group[0] if stimuli_per_class == 1 else group)
    return labels, stimuli


def demo_networks(device) -> tuple:
    """The demo's inverted model and verifier (shipped toy weights), on ``device``."""
    from .models import build_model

    return build_model(DEMO_MODEL, pretrained=True).to(device), build_model(DEMO_VERIFIER, pretrained=True).to(device)


def sheet_labels(result, class_names) -> list[str]:
    """One label per row of the contact sheet (see :func:`leaps.inversion.contact_sheet_labels`)."""
    from .inversion import contact_sheet_labels

    return contact_sheet_labels(result.targets, result.model_probs, result.verifier_probs, class_names)


def class_report(result, class_names) -> list[str]:
    """Printable table: for every video, its target and the model's / verifier's top-1 with its probability."""
    rows = [("video", "target", "model top-1", "verifier top-1")]
    for i, t in enumerate(result.targets):
        cells = []
        for probs in (result.model_probs, result.verifier_probs):
            if probs is None:
                cells.append("-")
                continue
            p, top = probs[i].max(0)
            cells.append(f"{class_names[int(top)]} {float(p):.2f}" + ("" if int(top) == t else " (wrong)"))
        rows.append((f"leaps_{i}", class_names[t], *cells))
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def run_demo(out: Path, *, steps: int, device, progress: bool, run, target: str = DEMO_CLASS, seed: int = 0) -> int:
    import torch

    from .inversion import invert
    from .models import get_spec
    from .toy.data import TOY_CLASSES
    from .toy.judging import format_judge_scores, judge_scores
    from .video import run_metadata, write_json

    labels, stimuli = demo_batch(out, target)
    model, verifier = demo_networks(device)
    config = demo_config(steps, progress, seed)  # a preset for the demo (see DEMO_PRESET); library defaults stay
    print(f"leaps demo: inverting {get_spec(DEMO_MODEL).title} for '{TOY_CLASSES[labels[0]]}' (and one video of each "
          f"other toy class in the same batch), verifier {get_spec(DEMO_VERIFIER).title}, {steps} steps of "
          f"x* {DEMO_FRAMES} x {config.size}^2 (the networks see {DEMO_SIZE}^2) on {device}; "
          f"stimuli in {out / 'stimuli'}")
    print(f"preset {DEMO_PRESET_NAME} (leaps/presets.py): " + ", ".join(f"{k}={v}" for k, v in DEMO_PRESET.items())
          + f"; seed {config.seed}")
    metadata = run_metadata(config, command="leaps demo", model=DEMO_MODEL, verifier=DEMO_VERIFIER,
                            targets=[TOY_CLASSES[c] for c in labels], device=str(device),
                            stimulus_seeds=[DEMO_STIMULUS_SEED + c for c in labels])
    kept = {}

    def invert_and_keep():
        result = at_demo_size(invert(model, labels, stimuli, verifier, config))
        # scored after the run (the judges take no part in the optimisation), and next to them the same
        # judges on the real clips the videos were primed with: what "recognisable" can reach
        metadata["judges"] = judge_scores(result.video, result.targets, top5=True)
        metadata["judges_on_stimuli"] = judge_scores(torch.stack(stimuli), labels)
        result.run_info = dict(metadata)  # saved once, with the videos, in leaps_run.json
        kept["result"] = result
        return result

    try:
        code = run(invert_and_keep, out)
    except BaseException:  # a failed run still says what it was (a saved result's run json does otherwise)
        with contextlib.suppress(OSError):
            write_json(metadata, out / "leaps_run.json")
        raise
    run_json = out / "leaps_run.json"
    print("per video (one per toy class; top-1 with its probability):")
    print("\n".join(class_report(kept["result"], TOY_CLASSES)))
    print("judges (trained apart on other clips, not in the objective), over the batch:")
    print("\n".join("  " + line for line in format_judge_scores(metadata["judges"])))
    print("the same judges on the ten stimuli (real clips), for reference:")
    print("\n".join("  " + line for line in format_judge_scores(metadata["judges_on_stimuli"])))
    print(f"'{TOY_CLASSES[labels[0]]}' is leaps_0.mp4 / leaps_0.gif and the top row of leaps.png "
          f"(labelled with the model's and verifier's confidence); seed, versions and options in {run_json}")
    return code
