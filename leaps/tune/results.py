"""What a tune leaves in OUT: trials.csv and trials.md (every trial), best_preset.json, heat maps."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from leaps._atomic import atomic_write_text

from .evaluate import maximise, spread

HEATMAP_DIR = "heatmaps"


def trial_rows(study, dims: list[str], objective: str) -> list[dict]:
    """One row per trial, in trial order: its point, state, objective (mean and std over seeds), measures."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        measures = t.user_attrs.get("measures", {})
        per_seed = t.user_attrs.get("per_seed", {})
        note = ("duplicate" if t.user_attrs.get("duplicate") else "stale (worker died; re-run)"
                if t.user_attrs.get("stale") else t.user_attrs.get("error", ""))
        row = {"trial": t.number, "state": t.state.name, **{d: t.params.get(d) for d in dims},
               "objective": t.value if t.value is not None else None,
               "objective_std": spread(per_seed.get(objective, [])) if per_seed else None}
        row.update({k: v for k, v in sorted(measures.items())})
        row["note"] = note
        rows.append(row)
    return rows


def _columns(rows: list[dict]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    return [c for c in columns if c != "note"] + ["note"]


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_csv(rows: list[dict], path: Path) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    atomic_write_text(path, buf.getvalue())


def write_markdown(rows: list[dict], path: Path, objective: str, best: dict | None) -> None:
    columns = _columns(rows)
    done = sorted((r for r in rows if r["state"] == "COMPLETE"), key=lambda r: r["objective"],
                  reverse=maximise(objective))
    rest = [r for r in rows if r["state"] != "COMPLETE"]
    lines = [f"# leaps tune: {objective} ({'higher' if maximise(objective) else 'lower'} is better)", ""]
    if best:
        point = ", ".join(f"{k}={v}" for k, v in best["params"].items())
        lines += [f"Best: trial {best['trial']}, {objective} = {_cell(best['value'])} "
                  f"(std over seeds {_cell(best['std'])}) at {point}", ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)).replace("|", "/") for c in columns) + " |" for r in done + rest]
    atomic_write_text(path, "\n".join(lines) + "\n")


def best_trial(study, objective: str) -> dict | None:
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not complete:
        return None
    # ties go to the earliest trial, so every worker names the same best
    sign = -1 if maximise(objective) else 1
    t = min(complete, key=lambda t: (sign * t.value, t.number))
    per_seed = t.user_attrs.get("per_seed", {})
    return {"trial": t.number, "params": dict(t.params), "value": t.value,
            "std": spread(per_seed.get(objective, [])), "seeds": per_seed.get("seed"),
            "per_seed": per_seed.get(objective), "measures": t.user_attrs.get("measures", {})}


def write_best_preset(best: dict, path: Path, meta: dict) -> None:
    """The best point's InversionConfig fields at the top level (what :func:`load_preset` reads), plus ``meta``."""
    payload = {**best["params"], "meta": {**meta, "trial": best["trial"], "objective_value": best["value"],
                                          "objective_std_over_seeds": best["std"], "seeds": best["seeds"],
                                          "objective_per_seed": best["per_seed"], "measures": best["measures"]}}
    atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=True, default=str) + "\n")


def write_heatmaps(rows: list[dict], out: Path, objective: str) -> list[Path]:
    """λ₁ × λ_L maps of the objective, one per r (other dimensions: their best value); none if the
    tune did not vary both λs. Needs matplotlib (skipped without it)."""
    done = [r for r in rows if r["state"] == "COMPLETE" and r.get("objective") is not None]
    if not done or "lambda_first" not in done[0] or "lambda_last" not in done[0]:
        return []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    better = max if maximise(objective) else min
    paths = []
    for r_value in sorted({row.get("r") for row in done}, key=lambda v: (v is None, v or 0)):
        sub = [row for row in done if row.get("r") == r_value]
        firsts = sorted({row["lambda_first"] for row in sub})
        lasts = sorted({row["lambda_last"] for row in sub})
        grid = [[math.nan] * len(firsts) for _ in lasts]
        for row in sub:
            i, j = lasts.index(row["lambda_last"]), firsts.index(row["lambda_first"])
            grid[i][j] = row["objective"] if math.isnan(grid[i][j]) else better(grid[i][j], row["objective"])
        fig, ax = plt.subplots(figsize=(1.2 * len(firsts) + 2, 1.0 * len(lasts) + 1.5))
        image = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(firsts)), [f"{v:g}" for v in firsts])
        ax.set_yticks(range(len(lasts)), [f"{v:g}" for v in lasts])
        ax.set_xlabel("lambda_first")
        ax.set_ylabel("lambda_last")
        ax.set_title(f"{objective}" + (f", r = {r_value:g}" if r_value is not None else ""))
        for i, line in enumerate(grid):
            for j, v in enumerate(line):
                if not math.isnan(v):
                    ax.text(j, i, f"{v:.3g}", ha="center", va="center", color="w", fontsize=8)
        fig.colorbar(image, ax=ax)
        fig.tight_layout()
        path = Path(out) / HEATMAP_DIR / (f"r={r_value:g}.png" if r_value is not None else "heatmap.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
