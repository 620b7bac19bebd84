"""Feature-visualisation recipes on the demo setup, scored by independent judges.

    python -m benchmarks.recipes                                   # every recipe, seeds 0-2, both judges
    python -m benchmarks.recipes --recipes demo fourier --seeds 0 1 --judges toy_r2plus1d
    python -m benchmarks.recipes --recipes demo "aug_rotate=5;aug_scale=[0.95,1.05]"

Each run is the demo's inversion (leaps/demo.py: toy_r3d_robust inverted with verifier toy_x3d,
one video per toy class, each primed by its generated stimulus, DEMO_PRESET, x* of 32^2 seen at
64^2) with a recipe's InversionConfig fields added. Every judge (a registered model that took no
part in the optimisation) classifies the 10 videos at 64^2; we report its top-1 and the mean
probability of the target class, per seed and as mean +- std over the seeds. A recipe is a name
of :data:`RECIPES` or ``field=value,...`` (values as JSON; separate by ``;`` when a value holds a
comma); the pseudo-field ``stimuli_per_class``
primes each video from that many generated stimuli of its class, and ``model`` / ``verifier`` name
other registered networks to invert / verify with. ``--variant NAME=BASE:FILE`` registers a toy
checkpoint (e.g. one ``python -m leaps.toy.train --adv-eps ... --name-suffix ...`` wrote) as model
NAME built like BASE, for ``model=NAME`` or ``extra_models=["NAME"]``. ``--device cuda`` runs on a GPU
(``fast=true`` in a recipe then takes the fused, CUDA-graphed step).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from leaps.demo import DEMO_MODEL, DEMO_VERIFIER, at_demo_size, demo_batch, demo_config
from leaps.inversion import Network, invert
from leaps.models import build_model, get_spec
from leaps.presets import named_preset
from leaps.toy.judging import JUDGES, judge_probs, target_hits_and_probs

#: name -> InversionConfig fields added to the demo's (``stimuli_per_class`` goes to demo_batch).
RECIPES: dict[str, dict] = {
    "demo": {},
    # the paper's recipe on the demo's networks: x* at 64^2 from unit noise, the model's Table S1-style
    # preset, default jitter, no TV prior (every DEMO_PRESET field back to the library default)
    "paper": dict(init_scale=1.0, r=None, lambda_first=None, lambda_last=None, prior_tv=0.0, size=64,
                  model_input=None, verifier_input=None, jitter=None, priming_per_frame=False,
                  priming_mirror=False),
    # the demo's preset before toy-demo-frames: priming by whole-clip channel means, lambda 5 -> 1.5
    "toy-demo": dict(named_preset("toy-demo"), priming_per_frame=False, priming_mirror=False),
    "fourier": dict(param="fourier"),
    "fourier lr 0.05": dict(param="fourier", lr=0.05),
    "aug": dict(aug_scale=(0.9, 1.1), aug_rotate=10.0, aug_time_shift=1),
    "coarse-to-fine 3": dict(coarse_to_fine=3),
    "3 stimuli/class": dict(stimuli_per_class=3),
    "ensemble +toy_r3d": dict(extra_models=("toy_r3d",)),
}
DEFAULT_RECIPES = ("demo", "fourier", "aug", "coarse-to-fine 3", "3 stimuli/class", "ensemble +toy_r3d")
DEFAULT_JUDGES = JUDGES  # the shipped judges: trained apart, never in an objective


def parse_recipe(text: str) -> tuple[str, dict]:
    """A name of RECIPES, or ``field=value,...`` with JSON values (lists become tuples)."""
    if text in RECIPES:
        return text, dict(RECIPES[text])
    fields = {}
    for part in filter(None, text.split(";" if ";" in text else ",")):
        if "=" not in part:
            raise SystemExit(f"recipe {text!r}: not a name of {sorted(RECIPES)} nor field=value,...")
        key, value = part.split("=", 1)
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
        fields[key.strip()] = tuple(value) if isinstance(value, list) else value
    return text, fields


@torch.no_grad()
def judge_target_probs(judge, videos: torch.Tensor, targets: list[int]) -> tuple[list[bool], list[float], list[int]]:
    """Per video: is ``judge``'s top-1 the target, its p(target), and the top-1 class. ``judge`` is a
    judge's registry name or a wrapped Network; videos in [0, 1]."""
    if isinstance(judge, str):  # a shipped judge: leaps.toy.judging resizes and normalises for it
        probs = judge_probs(videos, [judge])[judge]
    else:
        probs = judge.module(judge.fit((videos - judge.mean) / judge.std)).float().softmax(1).cpu()
    hits, p_target = target_hits_and_probs(probs, targets)
    return hits.tolist(), p_target.tolist(), probs.argmax(1).tolist()


def register_variant(text: str) -> str:
    """Register ``NAME=BASE:FILE``: the toy checkpoint FILE as model NAME, built like registered BASE."""
    from leaps.models.registry import register
    from leaps.toy.checkpoint import read_checkpoint
    from leaps.toy.data import TOY_CLASSES
    from leaps.toy.nets import build_toy_net

    try:
        name, rest = text.split("=", 1)
        base, path = rest.split(":", 1)
    except ValueError:
        raise SystemExit(f"--variant {text!r}: expected NAME=BASE:FILE") from None

    def hub(num_classes, path=path):
        state, meta = read_checkpoint(path)
        model = build_toy_net(meta["net"], len(TOY_CLASSES))
        model.load_state_dict(state, strict=True)
        model.toy_meta = meta
        return model

    register(dataclasses.replace(get_spec(base), name=name, hub=hub, title=f"{get_spec(base).title} [{path}]"),
             replace=True)
    return name


class Networks(dict):
    """Registered networks (pretrained weights) on one device, built on first use."""

    def __init__(self, device):
        super().__init__()
        self.device = device

    def __missing__(self, name: str):
        self[name] = build_model(name, pretrained=True).to(self.device)
        return self[name]


def run_one(fields: dict, seed: int, steps: int, nets: Networks, judges: dict, tmp: Path,
            progress: bool = False, save_videos: Path | None = None, recipe: str = "") -> dict:
    fields = dict(fields)
    per_class = fields.pop("stimuli_per_class", 1)
    model, verifier = nets[fields.pop("model", DEMO_MODEL)], nets[fields.pop("verifier", DEMO_VERIFIER)]
    labels, stimuli = _demo_batch(tmp, per_class)
    config = demo_config(steps, progress=progress, seed=seed).replace(**fields)
    start = time.perf_counter()
    result = at_demo_size(invert(model, labels, [_on(s, nets.device) for s in stimuli], verifier, config))
    if nets.device.type == "cuda":
        torch.cuda.synchronize()
    row = {"seed": seed, "seconds": round(time.perf_counter() - start, 1),
           "top1_model": result.top1("model"), "top1_verifier": result.top1("verifier")}
    videos = {}  # per video, for the paired tests
    for name, judge in judges.items():
        hits, p, top = judge_target_probs(judge, result.video.float(), list(result.targets))
        row[f"top1 {name}"], row[f"p {name}"] = sum(hits) / len(hits), sum(p) / len(p)
        videos |= {f"hit {name}": hits, f"p {name}": p, f"class {name}": top}
    if save_videos is not None:  # to look at, or to score with other judges later
        torch.save({"video": result.video.half(), "targets": list(result.targets), "fields": fields},
                   save_videos / f"{_slug(recipe)}_seed{seed}_steps{steps}.pt")
    return row | {"videos": videos, "targets": list(result.targets)}


def _slug(recipe: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in recipe)[:80]


@functools.lru_cache(maxsize=None)
def _demo_batch(tmp: Path, per_class: int):
    """The demo's targets and stimuli, made (and their mp4s written) once per run of the script."""
    return demo_batch(tmp / f"k{per_class}", stimuli_per_class=per_class)


def _write_json(path: Path, args, recipes, rows) -> None:
    from leaps._atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps({"steps": args.steps, "seeds": args.seeds, "judges": args.judges,
                                         "device": args.device, "variants": args.variant,
                                         "recipes": {n: {k: list(v) if isinstance(v, tuple) else v
                                                         for k, v in f.items()} for n, f in recipes},
                                         "rows": rows}, indent=1))


def _on(stimulus, device):
    return [s.to(device) for s in stimulus] if isinstance(stimulus, list) else stimulus.to(device)


def _mean_std(values: list[float]) -> str:
    sd = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipes", nargs="+", default=list(DEFAULT_RECIPES),
                   help=f"names of {sorted(RECIPES)} or field=value,... (default: {', '.join(DEFAULT_RECIPES)})")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, nargs="+", default=[200],
                   help="step counts; several give a time-to-quality table (one run per count)")
    p.add_argument("--judges", nargs="+", default=list(DEFAULT_JUDGES), help="registered models that score the videos")
    p.add_argument("--json", type=Path, default=None, help="also write every row here")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--progress", action="store_true", help="a progress bar per run (stderr)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--fast", action="store_true", help="fast=True in every recipe (on a GPU: the fused, graphed step)")
    p.add_argument("--save-videos", type=Path, default=None, metavar="DIR",
                   help="also write each run's videos (fp16, targets, fields) to DIR/<recipe>_seed<S>_steps<N>.pt")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=BASE:FILE",
                   help="register a toy checkpoint FILE as model NAME built like BASE (repeatable)")
    p.add_argument("--against", type=Path, default=None, metavar="FILE",
                   help="pair every recipe against the first recipe's rows of an earlier --json FILE "
                        "instead of against this run's first recipe (not run again)")
    args = p.parse_args(argv)
    base_rows = load_base_rows(args.against, args.judges) if args.against else []
    recipes = [parse_recipe(r) for r in args.recipes]
    if args.fast:
        recipes = [(name, {**fields, "fast": True}) for name, fields in recipes]
    for text in args.variant:
        register_variant(text)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    nets = Networks(device)
    judges = {name: name if get_spec(name).judge else
              Network.wrap(build_model(name, pretrained=True).to(device), get_spec(name), None) for name in args.judges}
    print(f"demo inversion ({DEMO_MODEL}, verifier {DEMO_VERIFIER}), steps {args.steps}, 10 videos a run; "
          f"judges {', '.join(args.judges)}; seeds {args.seeds}", flush=True)
    rows = []
    if args.save_videos:
        args.save_videos.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, fields in recipes:
            for steps in args.steps:
                for seed in args.seeds:
                    row = {"recipe": name, "steps": steps,
                           **run_one(fields, seed, steps, nets, judges, Path(tmp), args.progress,
                                     args.save_videos, name)}
                    rows.append(row)
                    if args.json:  # after every run: a time limit still leaves the rows so far
                        _write_json(args.json, args, recipes, rows)
                    print("  " + "  ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in row.items() if k not in ("videos", "targets")), flush=True)
    cols = ["top1_model", "top1_verifier"] + [f"{m} {j}" for j in args.judges for m in ("top1", "p")]
    print("\n| recipe | steps | " + " | ".join(cols) + " | s/run |")
    print("|---" * (len(cols) + 3) + "|")
    for name, _ in recipes:
        for steps in args.steps:
            mine = [r for r in rows if r["recipe"] == name and r["steps"] == steps]
            cells = [_mean_std([r[c] for r in mine]) for c in cols]
            print(f"| {name} | {steps} | " + " | ".join(cells)
                  + f" | {statistics.fmean(r['seconds'] for r in mine):.0f} |")
    print("\n" + "\n".join(miss_lines(rows, args.judges)))
    if base_rows:
        print("\n" + "\n".join(paired_lines(base_rows + rows, base_rows[0]["recipe"], args.judges)))
    elif len(recipes) > 1:
        print("\n" + "\n".join(paired_lines(rows, recipes[0][0], args.judges)))
    return 0


def load_base_rows(path: Path, judges: list[str]) -> list[dict]:
    """The rows of the first recipe in an earlier ``--json`` file, to pair new recipes against."""
    try:
        saved = json.loads(path.read_text())
        rows = saved["rows"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"--against {path}: not a file written by --json ({e})") from None
    if not rows:
        raise SystemExit(f"--against {path}: holds no rows")
    missing = [j for j in judges if f"hit {j}" not in rows[0].get("videos", {})]
    if missing:
        raise SystemExit(f"--against {path}: its videos were not scored by {', '.join(missing)}")
    base = rows[0]["recipe"]
    return [dict(r, recipe=f"{base} [{path.name}]") for r in rows if r["recipe"] == base]


def miss_lines(rows: list[dict], judges: list[str]) -> list[str]:
    """Per recipe and judge, the videos it did not recognise: target class, the seeds, what it saw."""
    from leaps.toy.data import TOY_CLASSES

    out = ["misses (target: seed -> the judge's top-1):"]
    for name in dict.fromkeys(r["recipe"] for r in rows):
        for j in judges:
            missed: dict[str, list[str]] = {}
            for r in (r for r in rows if r["recipe"] == name):
                hits = r["videos"][f"hit {j}"]
                seen = r["videos"].get(f"class {j}", [-1] * len(hits))  # rows of older runs lack them
                for i, (hit, target) in enumerate(zip(hits, r.get("targets", [-1] * len(hits)))):
                    if not hit:
                        missed.setdefault(_class_name(target, TOY_CLASSES), []).append(
                            f"{r['seed']}@{r['steps']} -> {_class_name(seen[i], TOY_CLASSES)}")
            cells = "; ".join(f"{t}: {', '.join(v)}" for t, v in sorted(missed.items())) or "none"
            out.append(f"  {name}, {j}: {cells}")
    return out


def _class_name(index: int, names: list[str]) -> str:
    return names[index] if 0 <= index < len(names) else "?"


def paired_lines(rows: list[dict], base: str, judges: list[str]) -> list[str]:
    """Every recipe against ``base``, video by video over the seeds both ran (same stimuli, same
    seeds): per judge, the difference in top-1 (points, McNemar) and in p(target) (sign-flip test)."""
    from benchmarks.paired import compare

    out = [f"paired against '{base}' (same seeds and stimuli; a - b, p-value):"]
    for name in dict.fromkeys(r["recipe"] for r in rows):
        for steps in dict.fromkeys(r["steps"] for r in rows):
            mine = {r["seed"]: r for r in rows if (r["recipe"], r["steps"]) == (name, steps)}
            theirs = {r["seed"]: r for r in rows if (r["recipe"], r["steps"]) == (base, steps)}
            seeds = sorted(mine.keys() & theirs.keys())
            if name == base or not seeds:
                continue
            cells = []
            for j in judges:
                def pooled(key, side):
                    return [v for s in seeds for v in side[s]["videos"][f"{key} {j}"]]
                hit = compare(pooled("hit", mine), pooled("hit", theirs), kind="hits")
                prob = compare(pooled("p", mine), pooled("p", theirs), kind="scores")
                cells.append(f"{j}: top-1 {hit['diff']:+.0f} pts (p {hit['p']:.2g}), "
                             f"p(target) {prob['diff']:+.3f} (p {prob['p']:.2g})")
            out.append(f"  {name} @ {steps} steps, {len(seeds)} seeds: " + "; ".join(cells))
    return out


if __name__ == "__main__":
    sys.exit(main())
