"""``leaps demo``: a complete inversion on a CPU in a couple of minutes, with nothing to download.

Until trained weights ship with the package, the demo inverts a *randomly initialised* real
architecture (torchvision's R3D-18, verifier MC3-18) primed by a generated stimulus clip. It
exercises every part of the pipeline - video I/O, taps, the three LEAPS terms, the verifier,
outputs - but the video it makes shows what an untrained network responds to. For a trained
model pass a checkpoint: ``leaps invert --model r3d_18 --weights r3d_18.pth ...``.
"""

from __future__ import annotations

from pathlib import Path

DEMO_MODEL = "r3d_18"
DEMO_VERIFIER = "mc3_18"
DEMO_TARGET = "juggling balls"
DEMO_FRAMES, DEMO_SIZE = 8, 112


def run_demo(out: Path, *, steps: int, device, progress: bool, run) -> int:
    import torch

    from .config import InversionConfig
    from .inversion import invert
    from .models import build_model
    from .video import make_test_video, read_video

    stimulus_path = make_test_video(out / "stimulus.mp4", frames=16, size=128)
    print(f"leaps demo: inverting a randomly initialised {DEMO_MODEL} (verifier {DEMO_VERIFIER}) for "
          f"'{DEMO_TARGET}', {steps} steps of {DEMO_FRAMES} x {DEMO_SIZE}^2 on {device}; stimulus {stimulus_path}")
    print("(random weights: no download needed; use `leaps invert --weights PATH` for a trained model)")
    torch.manual_seed(0)
    model = build_model(DEMO_MODEL).to(device)
    verifier = build_model(DEMO_VERIFIER).to(device)
    stimulus = read_video(stimulus_path, DEMO_FRAMES, DEMO_SIZE)
    config = InversionConfig(steps=steps, frames=DEMO_FRAMES, size=DEMO_SIZE, progress=progress)
    return run(lambda: invert(model, DEMO_TARGET, stimulus, verifier, config), out)
