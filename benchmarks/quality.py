"""The paper's quality evaluation (Tables 1, 2, 3 and S2), measured in the toy world.

    python -m benchmarks.quality             # full run (about 20 minutes on 2 CPU cores)
    python -m benchmarks.quality --quick     # CI-sized run (a couple of minutes)

For every objective, every toy class is synthesised from the shipped toy model (``toy_r3d``)
with the toy verifier (``toy_x3d``), primed by a generated stimulus of that class; this is
repeated for several seeds (a new stimulus and a new x* init each time). For each synthesised
video the inverted model (m) and the verifier (v) classify it; we report top-1 of both, the
Inception Score of their softmax outputs (over the videos of one seed, mean +- std over seeds)
and the SSIM / PSNR of consecutive frames. Generated real clips are reported as a reference.

The judges (``leaps.toy.JUDGES``: a per-frame 2D CNN with GroupNorm and a space-time
transformer, trained apart on their own clips, never part of an objective) score every video
too: per judge, top-1 and the mean probability of the target, pooled over all videos of a row
and with the spread (population std) of the per-seed values. m and v are 3D CNNs with
BatchNorm trained alike; the judges share fewer of their blind spots.

Objectives: 3D DeepDream and 3D AM (Table 1 baselines), LEAPS with L_prim only, with R_coh,
with R_feat, and full (Tables 1 and 3); the priming distance l2 / l1 / cos / JVS (Table 2);
the fraction of primed layers 20-100% (Table S2). Nothing here is tuned to agree with the
paper: the same settings (the models' presets, Adam lr 0.2, cosine decay) serve every row.
Tables are printed and written as JSON and Markdown.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

import leaps
from benchmarks.environment import environment
from leaps import metrics
from leaps.models import build_model
from leaps.toy.data import TOY_CLASSES, generate
from leaps.toy.judging import JUDGES, judge_scores

INVERTED, VERIFIER = "toy_r3d", "toy_x3d"
#: Short column names of the judges in the tables.
JUDGE_COLUMNS = {"toy_judge_2d": "J2D", "toy_judge_attn": "JAttn"}

# name -> InversionConfig overrides; "LEAPS (full)" is JVS priming of 100% of the layers.
FULL = "LEAPS (full)"
TABLE_1_3 = {
    "3D DeepDream": dict(objective="deepdream"),
    "3D AM": dict(objective="am"),
    "LEAPS L_prim": dict(use_coherence=False, use_feat=False),
    "LEAPS L_prim + R_coh": dict(use_feat=False),
    "LEAPS L_prim + R_feat": dict(use_coherence=False),
    FULL: dict(),
}
TABLE_2 = {"l2": dict(distance="l2"), "l1": dict(distance="l1"), "cos": dict(distance="cos"), "JVS": dict()}
TABLE_S2 = {f"{p}%": dict(priming_fraction=p / 100) for p in (20, 40, 60, 80)} | {"100% (LEAPS)": dict()}


@dataclass
class Row:
    """Metrics of one objective over all classes and seeds."""

    top1_m: float
    top1_v: float
    is_m: tuple[float, float]
    is_v: tuple[float, float]
    ssim: float
    psnr: float
    seconds: float
    per_class_top1_m: list[float] = field(default_factory=list)
    #: per judge: top1 / p_target pooled over every video (top1 in %), their std over seeds and per-seed values
    judges: dict[str, dict] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return self.__dict__ | {"is_m": list(self.is_m), "is_v": list(self.is_v)}


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def _judge_summary(per_seed: list[dict[str, dict]]) -> dict[str, dict]:
    """Per judge, from :func:`judge_scores` of every seed (same number of videos each): pooled
    top-1 (%) and mean p(target), with their population std over seeds and the per-seed values."""
    out = {}
    for name in per_seed[0]:
        top1 = [100 * s[name]["top1"] for s in per_seed]
        p = [s[name]["p_target"] for s in per_seed]
        (top1_mean, top1_std), (p_mean, p_std) = _mean_std(top1), _mean_std(p)
        out[name] = {"top1": top1_mean, "top1_std": top1_std, "top1_per_seed": top1,
                     "p_target": p_mean, "p_target_std": p_std, "p_target_per_seed": p}
    return out


def _summarise(model_probs, verifier_probs, videos, targets, seconds) -> Row:
    """model_probs / verifier_probs / videos: one entry per seed, each over all classes."""
    t = torch.tensor(targets)
    top1_m = statistics.fmean(metrics.top1(p, t) for p in model_probs)
    top1_v = statistics.fmean(metrics.top1(p, t) for p in verifier_probs)
    ssim = [metrics.frame_ssim(v).mean().item() for batch in videos for v in batch]
    psnr = [min(metrics.frame_psnr(v).mean().item(), 100.0) for batch in videos for v in batch]
    hits = torch.stack([(p.argmax(1) == t).float() for p in model_probs]).mean(0)
    return Row(
        top1_m=100 * top1_m,
        top1_v=100 * top1_v,
        is_m=_mean_std([metrics.inception_score(p)[0] for p in model_probs]),
        is_v=_mean_std([metrics.inception_score(p)[0] for p in verifier_probs]),
        ssim=statistics.fmean(ssim),
        psnr=statistics.fmean(psnr),
        seconds=seconds,
        per_class_top1_m=(100 * hits).tolist(),
        judges=_judge_summary([judge_scores(batch, targets) for batch in videos]),
    )


def stimuli_seed(seed: int, label: int) -> int:
    """Generator seed of the stimulus of class ``label`` for benchmark seed ``seed``: far below every
    dataset split's seed range (leaps.toy.data._SPLIT_BASE), the judges' included."""
    return 10_000_000 + 1000 * seed + label


def stimuli_for(seed: int, frames: int, size: int) -> list[torch.Tensor]:
    """One generated clip per class; stimulus seeds are disjoint from the training data's."""
    return [generate(c, seed=stimuli_seed(seed, c), frames=frames, size=size) for c in range(len(TOY_CLASSES))]


def check_not_judges(*names: str) -> None:
    """A judge scores the results; inverted or used as the verifier it would judge itself."""
    from leaps.errors import JudgeError
    from leaps.models import get_spec

    for name in names:
        if get_spec(name).judge:
            raise JudgeError(f"{name} is a judge: the quality tables cannot invert it or use it as the verifier")


def run_objective(model, verifier, overrides: dict, seeds: list[int], args) -> Row:
    targets = list(range(len(TOY_CLASSES)))
    model_probs, verifier_probs, videos = [], [], []
    start = time.perf_counter()
    for seed in seeds:
        result = leaps.invert(
            model, targets, stimuli_for(seed, args.frames, args.size), verifier,
            steps=args.steps, frames=args.frames, size=args.size, seed=seed, progress=False, **overrides,
        )
        model_probs.append(result.model_probs)
        verifier_probs.append(result.verifier_probs)
        videos.append(result.video)
    return _summarise(model_probs, verifier_probs, videos, targets, time.perf_counter() - start)


@torch.no_grad()
def real_clips_row(model, verifier, seeds, args) -> Row:
    """The same metrics on generated real clips (the stimuli themselves)."""
    from leaps.inversion import Network

    net, ver = Network.wrap(model, None, None), Network.wrap(verifier, None, None)
    model_probs, verifier_probs, videos = [], [], []
    for seed in seeds:
        clips = torch.stack(stimuli_for(seed, args.frames, args.size))
        model_probs.append(model((clips - net.mean) / net.std).softmax(1))
        verifier_probs.append(verifier((clips - ver.mean) / ver.std).softmax(1))
        videos.append(clips)
    return _summarise(model_probs, verifier_probs, videos, list(range(len(TOY_CLASSES))), 0.0)


# ------------------------------------------------------------------------------ tables

def _pm(pair: tuple[float, float]) -> str:
    return f"{pair[0]:.1f} ± {pair[1]:.1f}"


def _judge_header() -> tuple[str, str]:
    names = [JUDGE_COLUMNS.get(j, j) for j in JUDGES]
    head = "".join(f" top-1 {n} (%) | p(target) {n} |" for n in names)
    return head, "---|---|" * len(names)


def _judge_cells(r: Row) -> str:
    """Per judge: top-1 (%) and mean p(target), each pooled ± std over seeds."""
    cells = ""
    for name in JUDGES:
        j = r.judges[name]
        cells += f" {j['top1']:.1f} ± {j['top1_std']:.1f} | {j['p_target']:.2f} ± {j['p_target_std']:.2f} |"
    return cells


def judge_line(r: Row) -> str:
    """The judges' pooled top-1 and mean p(target) of a row, for the progress log."""
    return "  ".join(f"{JUDGE_COLUMNS.get(n, n)} {r.judges[n]['top1']:5.1f}% p {r.judges[n]['p_target']:.2f}"
                     for n in JUDGES)


def table_markdown(title: str, rows: dict[str, Row], first_col: str) -> str:
    judge_head, judge_rule = _judge_header()
    lines = [f"**{title}**", "",
             f"| {first_col} | top-1 m (%) | top-1 v (%) |{judge_head} IS m | IS v | frame SSIM | frame PSNR (dB) |",
             "|---|---|---|" + judge_rule + "---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r.top1_m:.1f} | {r.top1_v:.1f} |{_judge_cells(r)} {_pm(r.is_m)} | {_pm(r.is_v)} "
                     f"| {r.ssim:.3f} | {r.psnr:.1f} |")
    return "\n".join(lines)


def distance_markdown(rows: dict[str, Row]) -> str:
    names = list(rows)
    return "\n".join([
        "**Table 2 (toy world): priming distance**", "",
        "| metric | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        "| top-1 (m) | " + " | ".join(f"{rows[n].top1_m:.1f}" for n in names) + " |",
        "| top-1 (v) | " + " | ".join(f"{rows[n].top1_v:.1f}" for n in names) + " |",
        *(f"| top-1 ({JUDGE_COLUMNS.get(j, j)}) | " + " | ".join(
            f"{rows[n].judges[j]['top1']:.1f} ± {rows[n].judges[j]['top1_std']:.1f}" for n in names) + " |"
          for j in JUDGES),
        *(f"| p(target) ({JUDGE_COLUMNS.get(j, j)}) | " + " | ".join(
            f"{rows[n].judges[j]['p_target']:.2f} ± {rows[n].judges[j]['p_target_std']:.2f}" for n in names) + " |"
          for j in JUDGES),
    ])


def claims(t1: dict[str, Row], t2: dict[str, Row]) -> list[str]:
    """The paper's orderings, each checked on the measured numbers (no tolerance)."""
    def order(names, key):
        values = [key(t1[n]) for n in names]
        return all(a > b for a, b in zip(values, values[1:]))

    single = ("LEAPS L_prim + R_coh", "LEAPS L_prim + R_feat")
    out = []
    for label, key in (("verifier top-1", lambda r: r.top1_v), ("IS of the model", lambda r: r.is_m[0])):
        full_beats_single = all(key(t1[FULL]) > key(t1[s]) for s in single)
        single_beat_prim = all(key(t1[s]) > key(t1["LEAPS L_prim"]) for s in single)
        chain = order(["LEAPS L_prim", "3D AM", "3D DeepDream"], key)
        out.append(f"{label}: full > each single-regulariser variant: {full_beats_single}; "
                   f"each single > L_prim alone: {single_beat_prim}; L_prim > AM > DeepDream: {chain}")
    t = [t2[n].top1_m for n in ("JVS", "l2", "l1", "cos")]
    out.append(f"distances, model top-1: JVS >= l2: {t[0] >= t[1]}; l2 >= l1: {t[1] >= t[2]}; l1 > cos: {t[2] > t[3]}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="LEAPS quality tables in the toy world.")
    p.add_argument("--quick", action="store_true", help="CI-sized: 1 seed, few steps")
    p.add_argument("--seeds", type=int, default=2, help="stimulus / init seeds per class (default 2)")
    p.add_argument("--steps", type=int, default=200, help="Adam updates per inversion (default 200)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--out", default="benchmarks/results", help="where quality.json / quality.md go")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.steps = min(args.seeds, 1), min(args.steps, 40)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    seeds = list(range(args.seeds))

    check_not_judges(INVERTED, VERIFIER)
    model = build_model(INVERTED, pretrained=True)
    verifier = build_model(VERIFIER, pretrained=True)
    print(f"toy world: {len(TOY_CLASSES)} classes, x* {args.frames} x {args.size}^2, {args.steps} steps, "
          f"{args.seeds} seed(s); inverted {INVERTED}, verifier {VERIFIER}; judges {', '.join(JUDGES)} "
          f"(± = std over seeds)", flush=True)

    cache: dict[str, Row] = {}

    def row(name: str, overrides: dict) -> Row:
        key = json.dumps(overrides, sort_keys=True)
        if key not in cache:
            cache[key] = run_objective(model, verifier, overrides, seeds, args)
            r = cache[key]
            print(f"  {name:24s} m {r.top1_m:5.1f}%  v {r.top1_v:5.1f}%  {judge_line(r)}  IS m {_pm(r.is_m)}  "
                  f"({r.seconds:.0f} s)", flush=True)
        return cache[key]

    real = real_clips_row(model, verifier, seeds, args)
    t1 = {name: row(name, o) for name, o in TABLE_1_3.items()}
    t2 = {name: row(f"distance {name}", o) for name, o in TABLE_2.items()}
    ts2 = {name: row(f"priming {name}", o) for name, o in TABLE_S2.items()}

    md = "\n\n".join([
        table_markdown("Tables 1 and 3 (toy world): objectives", {"real clips (reference)": real} | t1, "method"),
        distance_markdown(t2),
        table_markdown("Table S2 (toy world): fraction of primed layers", ts2, "priming layers"),
        "Paper's claims on these numbers:\n\n" + "\n".join(f"- {c}" for c in claims(t1, t2)),
    ])
    print("\n" + md)
    out = Path(args.out)
    from leaps._atomic import atomic_write_text

    settings = {k: v for k, v in vars(args).items() if k != "out"} | {"inverted": INVERTED, "verifier": VERIFIER,
                                                                     "judges": list(JUDGES)}
    payload = {"environment": environment("cpu"), "settings": settings, "real": real.as_dict(),
               "table_1_3": {k: v.as_dict() for k, v in t1.items()},
               "table_2": {k: v.as_dict() for k, v in t2.items()}, "table_s2": {k: v.as_dict() for k, v in ts2.items()}}
    stem = "quality_quick" if args.quick else "quality"
    atomic_write_text(out / f"{stem}.json", json.dumps(payload, indent=1))
    atomic_write_text(out / f"{stem}.md", md + "\n")
    print(f"\nwrote {out / (stem + '.json')} and {out / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
