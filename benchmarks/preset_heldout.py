"""Held-out check of a tuned preset against the shipped one (docs/tune/grid.md).

    python -m benchmarks.preset_heldout --model toy_r3d --tuned measure/grid_toy_r3d/best_preset.json \
        --out measure/heldout_toy_r3d

Both presets invert the same held-out stimuli (another split than the tune's) with the same seeds;
per seed the verifier's mean p(target) and top-1 over the videos; then mean ± std over seeds, Welch's
t (unequal variances) and the paired t over seeds (same seeds and stimuli for both presets).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

from benchmarks.paired import paired_t, two_sided_p, welch
from leaps.models import get_spec
from leaps.tune import load_preset
from leaps.tune.evaluate import TrialSetup, evaluate

FIELDS = ("lambda_first", "lambda_last", "r")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--tuned", required=True, help="best_preset.json of the tune")
    p.add_argument("--verifier", default="toy_x3d")
    p.add_argument("--stimuli", default="toy:val:10")
    p.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12, 13, 14])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    shipped = get_spec(args.model).preset
    presets = {"shipped": {k: getattr(shipped, k) for k in FIELDS},
               "tuned": {k: v for k, v in load_preset(args.tuned).items() if k in FIELDS}}
    out = Path(args.out)
    log = logging.getLogger("heldout")
    setup = TrialSetup(model=args.model, stimuli=args.stimuli, verifier=args.verifier, seeds=args.seeds,
                       batch=10, config={"steps": args.steps, "size": args.size, "frames": args.frames},
                       device="cpu")
    per_seed = {}
    for name, point in presets.items():
        result = evaluate(setup, point, out / name, log)
        per_seed[name] = {m: result["per_seed"][m] for m in ("verifier_prob", "verifier_top1")}
        per_seed[name]["wall_s"] = result["measures"]["wall_s"]
    report = {"model": args.model, "verifier": args.verifier, "stimuli": args.stimuli, "seeds": args.seeds,
              "steps": args.steps, "size": args.size, "frames": args.frames, "presets": presets,
              "per_seed": per_seed, "tests": {}}
    for m in ("verifier_prob", "verifier_top1"):
        a, b = per_seed["shipped"][m], per_seed["tuned"][m]
        t, df = welch(a, b)
        report["tests"][m] = {"shipped_mean": statistics.fmean(a), "shipped_std": statistics.stdev(a),
                              "tuned_mean": statistics.fmean(b), "tuned_std": statistics.stdev(b),
                              "diff": statistics.fmean(b) - statistics.fmean(a), "welch_t": t, "welch_df": df,
                              "welch_p": two_sided_p(t, df), "paired_t": paired_t(a, b),
                              "paired_p": two_sided_p(paired_t(a, b), len(a) - 1)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "heldout.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["tests"], indent=1))


if __name__ == "__main__":
    main()
