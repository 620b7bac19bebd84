"""The sweep page reads the records ``leaps sweep`` really writes, and agrees with its summary."""

from __future__ import annotations

import json

from leaps.report import write_report
from leaps.sweep import run


def test_sweep_page_matches_the_sweep_summary(tmp_path):
    out = tmp_path / "sweep"
    run(["toy_r3d"], out, stimuli="toy:test:4", steps=2, size=16, frames=4, batch=4, progress=False)
    page = write_report(out).read_text(encoding="utf-8")
    overall = next(r for r in json.loads((out / "summary.json").read_text())["rows"] if r["class"] == "(all)")
    for key in ("top1_model", "top1_verifier"):
        assert f"{100 * overall[key]:.1f}%" in page
    assert "model: –" not in page  # every record's prediction was read
