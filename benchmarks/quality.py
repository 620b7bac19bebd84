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
from leaps.toy.judging import JUDGES, judge_probs, scores_from_probs, target_hits_and_probs

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
    #: per video, seed-major then class (the same order in every row, so rows pair up video by
    #: video): "v hit" (verifier top-1 right), and per judge "<judge> hit" and "<judge> p"
    per_video: dict[str, list] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return self.__dict__ | {"is_m": list(self.is_m), "is_v": list(self.is_v)}

    @classmethod
    def from_dict(cls, d: dict) -> "Row":
        return cls(**(d | {"is_m": tuple(d["is_m"]), "is_v": tuple(d["is_v"])}))


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def _judge_summary(per_seed: list[dict[str, dict]]) -> dict[str, dict]:
    """Per judge, from :func:`scores_from_probs` of every seed (same number of videos each): pooled
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
    per_video = {"v hit": [bool(h) for p in verifier_probs for h in (p.argmax(1) == t)]}
    judged = [judge_probs(batch) for batch in videos]  # per seed: judge -> N x classes
    for per_judge in judged:
        for name, probs in per_judge.items():
            hit, p_target = target_hits_and_probs(probs, t)
            per_video.setdefault(f"{name} hit", []).extend(hit.tolist())
            per_video.setdefault(f"{name} p", []).extend(p_target.tolist())
    return Row(
        top1_m=100 * top1_m,
        top1_v=100 * top1_v,
        is_m=_mean_std([metrics.inception_score(p)[0] for p in model_probs]),
        is_v=_mean_std([metrics.inception_score(p)[0] for p in verifier_probs]),
        ssim=statistics.fmean(ssim),
        psnr=statistics.fmean(psnr),
        seconds=seconds,
        per_class_top1_m=(100 * hits).tolist(),
        judges=_judge_summary([{n: scores_from_probs(p, t) for n, p in per_judge.items()} for per_judge in judged]),
        per_video=per_video,
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


#: The paper's orderings, "a better than b", as (table, a, b); row names as in the tables' dicts.
PAPER_ORDERINGS = [
    ("1", FULL, "3D AM"), ("1", FULL, "3D DeepDream"),
    ("3", "LEAPS L_prim + R_coh", "LEAPS L_prim"), ("3", "LEAPS L_prim + R_feat", "LEAPS L_prim"),
    ("3", "LEAPS L_prim + R_feat", "LEAPS L_prim + R_coh"),
    ("3", FULL, "LEAPS L_prim + R_coh"), ("3", FULL, "LEAPS L_prim + R_feat"),
    ("2", "JVS", "l2"), ("2", "JVS", "l1"), ("2", "l2", "cos"), ("2", "l1", "cos"), ("2", "JVS", "cos"),
    *(("S2", "100% (LEAPS)", f"{p}%") for p in (20, 40, 60, 80)),
]


def measures() -> list[tuple[str, str, str]]:
    """(column title, Row.per_video key, kind for benchmarks.paired.compare) of every paired measure."""
    out = [("top-1 v", "v hit", "hits")]
    for name in JUDGES:
        short = JUDGE_COLUMNS.get(name, name)
        out += [(f"top-1 {short}", f"{name} hit", "hits"), (f"p(target) {short}", f"{name} p", "scores")]
    return out


def paired_claims(tables: dict[str, dict[str, Row]]) -> list[dict]:
    """Every ordering of PAPER_ORDERINGS on every measure, tested video by video (the rows share
    their stimuli, seeds and initialisations): difference, p-value and Holm-adjusted p-value over
    the whole family of tests."""
    from benchmarks.paired import compare, holm

    out = []
    for table, a, b in PAPER_ORDERINGS:
        if not tables[table]:  # a table that was not run (--tables)
            continue
        ra, rb = tables[table][a], tables[table][b]
        for title, key, kind in measures():
            out.append({"table": table, "a": a, "b": b, "measure": title,
                        **compare(ra.per_video[key], rb.per_video[key], kind=kind)})
    for claim, adjusted in zip(out, holm([c["p"] for c in out])):
        claim["p_holm"] = adjusted
    return out


def _claim_cell(c: dict) -> str:
    diff = f"{c['diff']:+.1f}" if "top-1" in c["measure"] else f"{c['diff']:+.3f}"
    mark = ""
    if c["p_holm"] < 0.05:
        mark = " **holds**" if c["diff"] > 0 else " **reversed**"
    elif c["p"] < 0.05:
        mark = " (p < 0.05 alone)"
    return f"{diff}, p {c['p']:.2g}{mark}"


def claims_markdown(claims: list[dict]) -> str:
    """One line per ordering: per measure, a - b, its p-value and the verdict after Holm's correction."""
    titles = [m[0] for m in measures()]
    n = claims[0]["n"] if claims else 0
    lines = [f"**The paper's orderings, tested video by video** ({n} videos per row, the same in every row; "
             "cells: a - b in points of top-1 or in p(target), the paired p-value (McNemar for top-1, "
             "sign-flip permutation for p(target)); **holds** / **reversed**: significant after Holm's "
             f"correction over all {len(claims)} tests)", "",
             "| table | a better than b | " + " | ".join(titles) + " |", "|---|---|" + "---|" * len(titles)]
    for table, a, b in PAPER_ORDERINGS:
        if not any(c["table"] == table for c in claims):
            continue
        cells = [next(c for c in claims if (c["table"], c["a"], c["b"], c["measure"]) == (table, a, b, t))
                 for t in titles]
        lines.append(f"| {table} | {a} > {b} | " + " | ".join(_claim_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def load_partial(path: Path, settings: dict) -> dict[str, Row]:
    """The rows an interrupted run with the same settings wrote to ``path`` (none if there is no file)."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if data["settings"] != settings:
        changed = sorted(k for k in settings.keys() | data["settings"].keys()
                         if settings.get(k) != data["settings"].get(k))
        raise SystemExit(f"--resume: {path} was written with other settings ({', '.join(changed)}); "
                         "delete it or rerun with the same settings")
    print(f"resuming: {len(data['rows'])} row(s) from {path}", flush=True)
    return {k: Row.from_dict(v) for k, v in data["rows"].items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="LEAPS quality tables in the toy world.")
    p.add_argument("--quick", action="store_true", help="CI-sized: 1 seed, few steps")
    p.add_argument("--seeds", type=int, default=2, help="stimulus / init seeds per class (default 2)")
    p.add_argument("--steps", type=int, default=200, help="Adam updates per inversion (default 200)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--out", default="benchmarks/results", help="where quality.json / quality.md go")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--tables", nargs="+", choices=("1", "2", "S2"), default=["1", "2", "S2"],
                   help="which tables to run: 1 (Tables 1 and 3), 2, S2 (default: all)")
    p.add_argument("--resume", action="store_true",
                   help="reuse the rows of an interrupted run with the same settings (<stem>.partial.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.steps = min(args.seeds, 1), min(args.steps, 40)
    torch.set_num_threads(args.threads or max(1, torch.get_num_threads()))
    seeds = list(range(args.seeds))
    from leaps._atomic import atomic_write_text

    out = Path(args.out)
    stem = "quality_quick" if args.quick else "quality"
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "threads", "resume", "tables")} | {
        "inverted": INVERTED, "verifier": VERIFIER, "judges": list(JUDGES)}
    partial = out / f"{stem}.partial.json"

    check_not_judges(INVERTED, VERIFIER)
    model = build_model(INVERTED, pretrained=True)
    verifier = build_model(VERIFIER, pretrained=True)
    print(f"toy world: {len(TOY_CLASSES)} classes, x* {args.frames} x {args.size}^2, {args.steps} steps, "
          f"{args.seeds} seed(s); inverted {INVERTED}, verifier {VERIFIER}; judges {', '.join(JUDGES)} "
          f"(± = std over seeds)", flush=True)

    cache: dict[str, Row] = load_partial(partial, settings) if args.resume else {}

    def row(name: str, overrides: dict) -> Row:
        key = json.dumps(overrides, sort_keys=True)
        if key not in cache:
            cache[key] = run_objective(model, verifier, overrides, seeds, args)
            # after every row: an interrupted run (--resume) keeps what it measured
            atomic_write_text(partial, json.dumps({"settings": settings,
                                                   "rows": {k: v.as_dict() for k, v in cache.items()}}))
            r = cache[key]
            print(f"  {name:24s} m {r.top1_m:5.1f}%  v {r.top1_v:5.1f}%  {judge_line(r)}  IS m {_pm(r.is_m)}  "
                  f"({r.seconds:.0f} s)", flush=True)
        return cache[key]

    real = real_clips_row(model, verifier, seeds, args)
    t1 = {name: row(name, o) for name, o in TABLE_1_3.items()} if "1" in args.tables else {}
    t2 = {name: row(f"distance {name}", o) for name, o in TABLE_2.items()} if "2" in args.tables else {}
    ts2 = {name: row(f"priming {name}", o) for name, o in TABLE_S2.items()} if "S2" in args.tables else {}
    claims = paired_claims({"1": t1, "3": t1, "2": t2, "S2": ts2})

    md = "\n\n".join([
        *([table_markdown("Tables 1 and 3 (toy world): objectives", {"real clips (reference)": real} | t1, "method")]
          if t1 else []),
        *([distance_markdown(t2)] if t2 else []),
        *([table_markdown("Table S2 (toy world): fraction of primed layers", ts2, "priming layers")] if ts2 else []),
        claims_markdown(claims),
    ])
    print("\n" + md)
    payload = {"environment": environment("cpu"), "settings": settings, "real": real.as_dict(),
               "table_1_3": {k: v.as_dict() for k, v in t1.items()},
               "table_2": {k: v.as_dict() for k, v in t2.items()}, "table_s2": {k: v.as_dict() for k, v in ts2.items()},
               "claims": claims}
    atomic_write_text(out / f"{stem}.json", json.dumps(payload, indent=1))
    atomic_write_text(out / f"{stem}.md", md + "\n")
    partial.unlink(missing_ok=True)
    print(f"\nwrote {out / (stem + '.json')} and {out / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
