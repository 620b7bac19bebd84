"""Table 1 of a sweep, from its manifests alone: per model and method, per class and overall,
top-1 of the model and of the verifier, Inception Score of each, frame SSIM / PSNR.

IS is the paper's: over the whole set of videos, mean +- std over splits (10 splits, fewer when
the set is small: at least 10 videos per split). Methods of one model sit side by side. Written
as ``summary.md``, ``summary.json`` and ``summary.csv`` in the sweep folder.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import torch

from leaps._atomic import atomic_write_text

from .manifest import OK, latest_records, require_manifests

ALL = "(all)"
MAX_SPLITS = 10
MIN_PER_SPLIT = 10
COLUMNS = ["model", "method", "class", "videos", "failed", "top1_model", "top1_verifier", "is_model",
           "is_model_std", "is_verifier", "is_verifier_std", "frame_ssim", "frame_psnr"]


def splits_for(n: int) -> int:
    return max(1, min(MAX_SPLITS, n // MIN_PER_SPLIT))


def inception(records: list[dict], key: str) -> tuple[float | None, float | None]:
    from leaps.metrics import inception_score

    rows = [r[key]["probs"] for r in records if r.get(key, {}).get("probs")]
    if not rows or len(rows) != len(records):
        return None, None
    p = torch.tensor(rows, dtype=torch.float64)
    p = p / p.sum(1, keepdim=True)  # the stored probabilities are rounded
    return inception_score(p, splits_for(len(p)))


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _top1(records: list[dict], key: str) -> float | None:
    values = [r[key]["correct"] for r in records if r.get(key)]
    return sum(values) / len(values) if values else None


def group_row(model: str, method: str, cls: str, ok: list[dict], failed: int) -> dict:
    is_m, is_m_std = inception(ok, "model_pred")
    is_v, is_v_std = inception(ok, "verifier_pred")
    return {"model": model, "method": method, "class": cls, "videos": len(ok), "failed": failed,
            "top1_model": _top1(ok, "model_pred"), "top1_verifier": _top1(ok, "verifier_pred"),
            "is_model": is_m, "is_model_std": is_m_std, "is_verifier": is_v, "is_verifier_std": is_v_std,
            "frame_ssim": _mean(r.get("frame_ssim") for r in ok), "frame_psnr": _mean(r.get("frame_psnr") for r in ok)}


def method_labels(records: list[dict]) -> dict[tuple, str]:
    """(model, method, config_tag) -> label: the method's name, with the config tag when one model
    ran one method with several configs (e.g. two step counts in one folder)."""
    tags: dict[tuple, set] = {}
    for r in records:
        tags.setdefault((r["model"], r["method"]), set()).add(r["config_tag"])
    return {(m, meth, t): meth if len(ts) == 1 else f"{meth}@{t}" for (m, meth), ts in tags.items() for t in ts}


def summarize_records(records: list[dict]) -> dict:
    latest = list(latest_records(records).values())
    labels = method_labels(latest)
    groups: dict[tuple, list[dict]] = {}
    for r in latest:
        groups.setdefault((r["model"], labels[(r["model"], r["method"], r["config_tag"])]), []).append(r)
    rows = []
    for (model, method), members in sorted(groups.items()):
        ok = [r for r in members if r["status"] == OK]
        rows.append(group_row(model, method, ALL, ok, len(members) - len(ok)))
        by_class: dict[tuple, list[dict]] = {}
        for r in members:
            by_class.setdefault((r["target"], r["class_name"]), []).append(r)
        for (_, cls), cls_members in sorted(by_class.items()):
            cls_ok = [r for r in cls_members if r["status"] == OK]
            rows.append(group_row(model, method, cls, cls_ok, len(cls_members) - len(cls_ok)))
    failures = [{"job_id": r["job_id"], "model": r["model"], "method": r["method"], "class": r["class_name"],
                 "stimulus": r.get("stimulus"), "reason": r.get("reason")}
                for r in latest if r["status"] != OK]
    return {"jobs": len(latest), "ok": len(latest) - len(failures), "failed": len(failures), "rows": rows,
            "failures": failures, "wall_s": sum(r.get("wall_s", 0.0) for r in latest if r["status"] == OK)}


# --------------------------------------------------------------------------------------------
# formats
# --------------------------------------------------------------------------------------------

def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _is(v, s) -> str:
    return "-" if v is None else f"{v:.2f}±{s:.2f}"


def _num(v, fmt="{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def to_markdown(summary: dict) -> str:
    lines = [f"# Sweep summary\n\n{summary['jobs']} jobs: {summary['ok']} videos, {summary['failed']} failed.\n",
             "## Table 1 (overall)\n",
             "| model | method | videos | failed | top-1 model % | top-1 verifier % | IS model | IS verifier "
             "| frame SSIM | frame PSNR dB |", "|---|---|---|---|---|---|---|---|---|---|"]
    overall = [r for r in summary["rows"] if r["class"] == ALL]
    for r in overall:
        lines.append(f"| {r['model']} | {r['method']} | {r['videos']} | {r['failed']} | {_pct(r['top1_model'])} "
                     f"| {_pct(r['top1_verifier'])} | {_is(r['is_model'], r['is_model_std'])} "
                     f"| {_is(r['is_verifier'], r['is_verifier_std'])} | {_num(r['frame_ssim'])} "
                     f"| {_num(r['frame_psnr'], '{:.2f}')} |")
    for model in sorted({r["model"] for r in overall}):
        methods = [r["method"] for r in overall if r["model"] == model]
        per_class = {(r["class"], r["method"]): r for r in summary["rows"] if r["model"] == model and r["class"] != ALL}
        classes = list(dict.fromkeys(c for c, _ in per_class))
        lines += ["", f"## {model}: per class (top-1 model / verifier %, videos)", "",
                  "| class | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        for cls in classes:
            cells = []
            for method in methods:
                r = per_class.get((cls, method))
                cells.append("-" if r is None
                             else f"{_pct(r['top1_model'])} / {_pct(r['top1_verifier'])} ({r['videos']})")
            lines.append(f"| {_md_escape(cls)} | " + " | ".join(cells) + " |")
    if summary["failures"]:
        lines += ["", f"## Failed jobs ({len(summary['failures'])})", "", "| job | model | method | class | reason |",
                  "|---|---|---|---|---|"]
        lines += [f"| {f['job_id']} | {f['model']} | {f['method']} | {_md_escape(f['class'])} "
                  f"| {_md_escape(f['reason'])} |" for f in summary["failures"]]
    return "\n".join(lines) + "\n"


def _md_escape(text) -> str:
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def to_csv(summary: dict) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in summary["rows"]:
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in COLUMNS})
    return buf.getvalue()


def write_summary(out: Path) -> dict:
    """Recompute the tables from ``out``'s manifests and write summary.md/json/csv there."""
    out = Path(out)
    summary = summarize_records(require_manifests(out))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, allow_nan=False))
    atomic_write_text(out / "summary.csv", to_csv(summary))
    atomic_write_text(out / "summary.md", to_markdown(summary))
    return summary
