"""``leaps tune``: pick λ₁, λ_L and r (or any inversion option) per network, as the paper's grid search does.

    report = leaps.tune.run("toy_r3d", "tunes/toy", stimuli="toy:test:20", steps=200)
    cfg = leaps.tune.load_preset("tunes/toy/best_preset.json")
"""

from .api import TuneReport, run
from .errors import PresetError, TuneError
from .preset import load_preset
from .space import PAPER_GRID, PAPER_STEPS

__all__ = ["PAPER_GRID", "PAPER_STEPS", "PresetError", "TuneError", "TuneReport", "load_preset", "run"]
