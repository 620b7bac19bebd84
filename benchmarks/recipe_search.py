"""Search the demo's recipe weights for videos the judges recognise (Optuna TPE), then confirm elsewhere.

    python -m benchmarks.recipe_search --trials 24 --seeds 100 101 --threads 1 --out measure/recipe_search
    python -m benchmarks.recipes --recipes demo "lambda_first=8.1;r=0.0021" --seeds 0 1 2 3 4 5 6 7 8 9

Each trial is the demo's inversion (benchmarks.recipes.run_one: the robust toy R3D inverted with
verifier toy_x3d, one video per toy class, 200 steps) with the demo preset's weights
replaced by the trial's; its value is the judges' mean p(target) over the videos and ``--seeds``.
The first trial is the demo's preset itself (``leaps.demo.DEMO_PRESET_NAME``; ``toy-demo`` when the
search in benchmarks/results/recipe_search_trials.json ran). The judges never enter the objective of
an inversion, but here they *select* weights: a selected point is only worth shipping once it beats
the demo's preset on other seeds (``benchmarks.recipes``, paired video by video), which this script prints the command
for. Trials are stored in an Optuna journal (``--out``/journal.log): a rerun with the same
``--out`` resumes; ``trials.json`` holds every trial's fields and per-judge scores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.recipes import DEFAULT_JUDGES, Networks, run_one
from leaps.demo import DEMO_PRESET, DEMO_PRESET_NAME

#: field -> (low, high, log scale): the weights of the demo's preset that the search moves, around its values.
SPACE: dict[str, tuple[float, float, bool]] = {
    "lambda_first": (1.5, 20.0, True),
    "lambda_last": (0.3, 6.0, True),
    "r": (2e-4, 5e-3, True),
    "prior_tv": (0.3, 3.0, True),
    "init_scale": (0.03, 0.5, True),
    "lr": (0.05, 0.4, True),
    "margin": (0.25, 4.0, True),
}


def demo_point() -> dict[str, float]:
    """The demo preset's value of every field of SPACE (the library default where the preset leaves one)."""
    from leaps.config import InversionConfig

    base = InversionConfig().replace(**DEMO_PRESET)
    return {name: float(getattr(base, name)) for name in SPACE}


def score(rows: list[dict], judges: list[str]) -> float:
    """The judges' mean p(target) over every video of ``rows`` (one row per seed)."""
    return statistics.fmean(p for r in rows for j in judges for p in r["videos"][f"p {j}"])


def main(argv=None) -> int:
    import optuna

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=24, help="trials in all, the first being toy-demo (default 24)")
    p.add_argument("--seeds", type=int, nargs="+", default=[100, 101],
                   help="seeds of x*'s noise a trial runs (default 100 101: not the seeds 0-9 results are quoted on)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--judges", nargs="+", default=list(DEFAULT_JUDGES))
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", type=Path, required=True, help="folder for journal.log and trials.json (resumable)")
    p.add_argument("--sampler-seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(args.out / "journal.log")))
    study = optuna.create_study(study_name="recipe_search", storage=storage, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=args.sampler_seed), load_if_exists=True)
    if not study.trials:
        study.enqueue_trial(demo_point(), user_attrs={"name": DEMO_PRESET_NAME})
    nets = Networks(torch.device("cpu"))
    judges = {name: name for name in args.judges}

    with tempfile.TemporaryDirectory() as tmp:
        def objective(trial):
            fields = {name: trial.suggest_float(name, low, high, log=log) for name, (low, high, log) in SPACE.items()}
            rows = [run_one(fields, seed, args.steps, nets, judges, Path(tmp)) for seed in args.seeds]
            for j in args.judges:
                trial.set_user_attr(f"top1 {j}", statistics.fmean(r[f"top1 {j}"] for r in rows))
                trial.set_user_attr(f"p {j}", statistics.fmean(r[f"p {j}"] for r in rows))
            value = score(rows, args.judges)
            print(f"trial {trial.number}: {value:.4f}  " + "  ".join(
                f"{k}={trial.user_attrs[k]:.3f}" for k in trial.user_attrs if k != "name")
                + "  " + ", ".join(f"{k}={v:.3g}" for k, v in fields.items()), flush=True)
            return value

        def write(study, _trial):
            done = [t for t in study.trials if t.value is not None]
            (args.out / "trials.json").write_text(json.dumps(
                {"seeds": args.seeds, "steps": args.steps, "judges": args.judges, "space": SPACE,
                 "trials": [{"number": t.number, "value": t.value, "fields": t.params, **t.user_attrs}
                            for t in sorted(done, key=lambda t: -t.value)]}, indent=1))

        remaining = args.trials - len([t for t in study.trials if t.state.is_finished()])
        if remaining > 0:
            study.optimize(objective, n_trials=remaining, callbacks=[write])
    best = study.best_trial
    demo = next((t for t in study.trials if t.user_attrs.get("name") == DEMO_PRESET_NAME and t.value is not None), None)
    print(f"best trial {best.number}: {best.value:.4f}" + (f" ({DEMO_PRESET_NAME}: {demo.value:.4f})" if demo else ""))
    recipe = ";".join(f"{k}={v:.3g}" for k, v in best.params.items())
    print(f"confirm on other seeds, paired against {DEMO_PRESET_NAME}:\n"
          f"  python -m benchmarks.recipes --recipes demo \"{recipe}\" --seeds 0 1 2 3 4 5 6 7 8 9 --threads 1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
