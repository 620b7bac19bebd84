"""leaps.report's tune page: a synthetic `leaps tune --out` folder (trials.csv, best_preset.json,
heatmaps/r=*.png, study.log) rendered and read back as HTML; hostile text, NaN and partial folders."""

import json
import re
import zlib
from pathlib import Path

import pytest
from test_report import XSS, assert_no_injection, read_page

from leaps.report import kinds, write_report

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

COLUMNS = "trial,state,lambda_first,lambda_last,r,objective,objective_std,verifier_top1,videos,note"
ROWS = [
    "0,COMPLETE,1,0.3,0.001,0.306602,0.0767464,0.35,20,",
    f'1,COMPLETE,0.5,0.3,0.001,0.517423,0.0379713,0.55,20,"{XSS}"',
    "2,COMPLETE,0.5,0.3,0.0075,0.734036,0.0554616,0.75,20,best",
    "3,FAIL,1,0.1,0.0075,nan,nan,nan,0,the loss became nan",
]
PRESET = {"lambda_first": 0.5, "lambda_last": 0.3, "r": 0.0075,
          "meta": {"objective": "verifier_prob", "objective_value": 0.734036, "objective_std_over_seeds": 0.0554616,
                   "objective_per_seed": [0.6785742, 0.7894975], "seeds": [0, 1], "trial": 2, "model": "toy_r3d",
                   "measures": {"verifier_top1": 0.75, "videos": 20}}}


def tiny_png() -> bytes:
    """A valid 1x1 grey PNG, written by hand (no matplotlib needed)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
    header = (1).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x80")) \
        + chunk(b"IEND", b"")


def make_tune(root: Path, rows=ROWS, preset=PRESET, heatmaps=("r=0.001.png", "r=0.0075.png")) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "study.log").write_text('{"op_code":0,"study_name":"leaps-tune"}\n')
    if rows is not None:
        (root / "trials.csv").write_text("\n".join([COLUMNS, *rows]) + "\n")
    if preset is not None:
        (root / "best_preset.json").write_text(json.dumps(preset))
    for name in heatmaps:
        (root / "heatmaps").mkdir(exist_ok=True)
        (root / "heatmaps" / name).write_bytes(tiny_png())
    # a trial's per-video records, as leaps tune writes them: must not make the folder a sweep or benchmarks
    records = root / "trials" / "0000" / "records"
    records.mkdir(parents=True)
    (records / "a.json").write_text(json.dumps({"job_id": "a", "model": "toy_r3d", "status": "ok"}))
    return root


def trials_table(page):
    return next(t for t in page.tables if t and t[0][:2] == ["trial", "state"])


def test_tune_folder_is_detected_as_tune_and_nothing_else(tmp_path):
    tune = make_tune(tmp_path / "tune")
    assert kinds.find(tune).name == "tune"
    assert not [k.name for k in kinds.KINDS if k.name != "tune" and k.detect(tune)]
    assert not kinds.by_name("tune").detect(tmp_path)  # the folder above: no study.log
    sweep = tmp_path / "sweep"
    (sweep / "manifests").mkdir(parents=True)
    (sweep / "manifests" / "rank-0.jsonl").write_text("{}\n")
    (sweep / "trials.csv").write_text(COLUMNS + "\n")  # no study.log: not a tune
    assert kinds.find(sweep).name == "sweep"
    only_preset = tmp_path / "only_preset"
    only_preset.mkdir()
    (only_preset / "study.log").write_text("")
    (only_preset / "best_preset.json").write_text(json.dumps(PRESET))
    assert kinds.find(only_preset).name == "tune"


def test_tune_page_holds_the_csv_the_preset_and_the_heat_maps(tmp_path):
    root = make_tune(tmp_path)
    text, page = read_page(root)
    assert_no_injection(text)
    visible = page.visible()
    assert "LEAPS tune" in visible and "4 trial(s), objective verifier_prob (higher is better), 2 heat map(s)" \
        in visible
    # every column, best objective first, the failed (NaN) trial last; numbers formatted
    table = trials_table(page)
    assert table[0] == COLUMNS.split(",")
    assert [row[0] for row in table[1:]] == ["2", "1", "0", "3"]
    assert table[1][:7] == ["2", "COMPLETE", "0.5", "0.3", "0.0075", "0.734", "0.05546"]
    assert table[-1][:6] == ["3", "FAIL", "1", "0.1", "0.0075", "NaN"]
    assert table[-1][-1] == "the loss became nan"
    # the hostile note is text, escaped once
    assert XSS in visible and "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    # the best preset: values, objective ± std over seeds
    assert "verifier_prob = 0.734 ± 0.0555" in visible and "std over seeds 0, 1; trial 2" in visible
    rows = {tuple(r) for t in page.tables for r in t}
    assert {("lambda_first", "0.5"), ("lambda_last", "0.3"), ("r", "0.0075"), ("1", "0.7895")} <= rows
    # heat maps: relative, lazy, in r order
    imgs = re.findall(r"<img [^>]*>", text)
    assert [re.search(r'src="([^"]+)"', i).group(1) for i in imgs] == ["./heatmaps/r%3D0.001.png",
                                                                       "./heatmaps/r%3D0.0075.png"]
    assert all('loading="lazy"' in i for i in imgs)
    assert "1 trial(s) have no finite objective" in visible  # the NaN trial is named, not hidden


def test_missing_trials_csv_and_heat_maps_are_named(tmp_path):
    root = make_tune(tmp_path, rows=None, heatmaps=())
    text, page = read_page(root)
    visible = page.visible()
    assert "trials.csv is missing" in visible and "no trials" in visible
    assert "no heatmaps/ folder" in visible and "no heat maps in heatmaps/" in visible
    assert "verifier_prob = 0.734" in visible  # the preset still shows
    assert "<img" not in text


def test_malformed_rows_a_missing_heat_map_and_a_broken_preset(tmp_path):
    rows = [*ROWS, "4,COMPLETE,0.5", '5,COMPLETE,1,0.3,0.001,"unterminated']
    root = make_tune(tmp_path, rows=rows, heatmaps=("r=0.001.png",))
    (root / "best_preset.json").write_text("{oops")
    text, page = read_page(root)
    assert_no_injection(text)
    visible = page.visible()
    assert "trials.csv line 6 has 3 fields, not 10: skipped" in visible
    assert "best_preset.json is not valid JSON" in visible and "no best preset" in visible
    assert "heat map(s) missing: heatmaps/r=0.0075.png" in visible
    # without the preset the objective's direction is unknown: the CSV order is kept
    assert [row[0] for row in trials_table(page)[1:]][:4] == ["0", "1", "2", "3"]


@pytest.mark.parametrize("content", ["", "\n\n", "trial,state\n", "\x00\xff not csv", '"a\n'])
def test_empty_or_garbled_trials_csv_never_crashes(tmp_path, content):
    root = make_tune(tmp_path)
    (root / "trials.csv").write_bytes(content.encode("latin-1"))
    text, page = read_page(root)
    assert "What is missing" in page.visible() and "trials.csv" in page.visible()


def test_preset_of_the_wrong_shape(tmp_path):
    root = make_tune(tmp_path, preset=[1, 2])
    _, page = read_page(root)
    assert "best_preset.json is not a JSON object" in page.visible()
    root = make_tune(tmp_path / "nan", preset={"r": 0.01, "meta": {"objective": "verifier_prob",
                                                                    "objective_value": float("nan"), "seeds": "x"}})
    _, page = read_page(root)
    assert "no finite objective value" in page.visible() and "verifier_prob = NaN" in page.visible()


def test_write_report_on_a_tune_folder_returns_the_page(tmp_path):
    root = make_tune(tmp_path)
    assert write_report(root) == root / "report.html"
    assert write_report(root, kind="tune").is_file()
