"""leaps.report: the pages of an inversion, of benchmark JSON and of a sweep, read as HTML text
(tests/test_report_browser.py renders them in Chromium). Also InversionResult.save's new keys and
InversionResult._repr_html_."""

import dataclasses
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

import leaps
from leaps.errors import LeapsError
from leaps.report import ReportError, escape, write_report
from leaps.report.cli import main as report_main

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "h100"
XSS = "<script>alert(1)</script>"
ATTR_XSS = '"><img src=x onerror=alert(2)>'

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

class Page(HTMLParser):
    """Tables (rows of cell texts), element counts and the visible text of a page."""

    def __init__(self, text):
        super().__init__()
        self.tables, self.tags, self.text, self.srcs = [], [], [], []
        self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag in ("img", "video") and attrs.get("src"):
            self.srcs.append(attrs["src"])
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def visible(self):
        return "".join(self.text)


def read_page(directory) -> tuple[str, Page]:
    path = write_report(directory)
    assert path == Path(directory) / "report.html"
    text = path.read_text()
    return text, Page(text)


def assert_no_injection(text: str):
    """The only <script> is the page's own; no attribute was broken open."""
    assert text.count("<script") == 1, "a script element came from data"
    assert "<img src=x" not in text and "onerror=alert" not in text.replace("onerror=alert(2)&gt;", "")


def toy_inversion(out: Path, class_names=None):
    from leaps.models import build_model, get_spec
    from leaps.toy.data import generate
    from leaps.video import write_video

    model = build_model("toy_r3d", pretrained=True)
    verifier = build_model("toy_x3d", pretrained=True)
    labels = [0, 6]
    stimuli = [write_video(generate(c, seed=c, frames=8, size=32), out / "stimuli" / f"{c:02d}_clip.mp4")
               for c in labels]
    result = leaps.invert(model, labels, [str(s) for s in stimuli], verifier, steps=2, frames=4, size=24,
                          progress=False)
    # Inverter.result() may not fill these yet: they name the networks and their classes.
    result.model_spec = result.model_spec or get_spec("toy_r3d")
    result.verifier_spec = result.verifier_spec or get_spec("toy_x3d")
    result.stimuli = result.stimuli or [str(s) for s in stimuli]
    if class_names is not None:
        result.model_spec = dataclasses.replace(result.model_spec, class_names=tuple(class_names))
        result.verifier_spec = dataclasses.replace(result.verifier_spec, class_names=tuple(class_names))
    result.save(out)
    return result


@pytest.fixture(scope="module")
def inversion_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("inversion")
    return out, toy_inversion(out)


# --------------------------------------------------------------------------------------------
# escaping
# --------------------------------------------------------------------------------------------

def test_text_and_attribute_escaping():
    assert escape.text(XSS) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert escape.attr(ATTR_XSS) == "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"
    assert escape.attr("it's") == "it&#x27;s"
    assert escape.text(None) == ""


def test_links_are_relative_and_percent_encoded(tmp_path):
    assert escape.href(tmp_path / "videos" / "a b#1?.gif", tmp_path) == "./videos/a%20b%231%3F.gif"
    # a file named like a URL scheme stays a relative path
    assert escape.href(tmp_path / "javascript:alert(1)", tmp_path) == "./javascript%3Aalert%281%29"
    assert escape.href(tmp_path / 'x"><b>.gif', tmp_path) == "./x%22%3E%3Cb%3E.gif"
    assert escape.href(tmp_path.parent / "up.mp4", tmp_path) == "./../up.mp4"


def test_numbers_never_raise():
    assert escape.number(float("nan")) == "NaN"
    assert escape.number(float("inf")) == "inf"
    assert escape.number(None) == "–"
    assert escape.number(1.23456, 3) == "1.23"
    assert escape.percent(0.875) == "87.5%"
    assert escape.percent(float("nan")) == "NaN"


# --------------------------------------------------------------------------------------------
# InversionResult: history JSON and notebook view
# --------------------------------------------------------------------------------------------

def test_history_records_top5_config_and_environment(inversion_dir):
    out, result = inversion_dir
    summary = json.loads((out / "leaps_history.json").read_text())
    for key in ("targets", "top1_model", "top1_verifier", "frame_ssim", "frame_psnr", "history"):
        assert key in summary  # the keys written before stay
    assert summary["targets"] == [0, 6]
    assert summary["target_names"] == ["square moving up", "ring growing"]
    for which, probs in (("model", result.model_probs), ("verifier", result.verifier_probs)):
        top5 = summary[f"top5_{which}"]
        assert len(top5) == 2
        for video, row in enumerate(top5):
            assert [p["index"] for p in row] == probs[video].topk(5).indices.tolist()
            assert [p["prob"] for p in row] == pytest.approx(probs[video].topk(5).values.tolist())
            assert all(isinstance(p["name"], str) for p in row)
    assert summary["config"]["steps"] == 2 and summary["config"]["size"] == 24
    assert summary["preset"] == {"lambda_first": 1.0, "lambda_last": 0.3, "r": 7.5e-3, "source": "preset of toy_r3d",
                                 "overridden": []}
    assert summary["model"]["name"] == "toy_r3d" and summary["verifier"]["name"] == "toy_x3d"
    assert summary["environment"]["torch"] == torch.__version__
    assert summary["files"]["gif_1"] == "leaps_1.gif"


def test_repr_html_shows_inline_gifs_and_top1(inversion_dir):
    _, result = inversion_dir
    text = result._repr_html_()
    assert text.count("data:image/gif;base64,") == 2
    assert "square moving up" in text and "ring growing" in text
    assert "model top-1:" in text and "verifier top-1:" in text


def test_repr_html_escapes_class_names(inversion_dir):
    _, result = inversion_dir
    names = [XSS] * 10
    result = dataclasses.replace(result, model_spec=dataclasses.replace(result.model_spec, class_names=tuple(names)),
                                 verifier_spec=dataclasses.replace(result.verifier_spec, class_names=tuple(names)))
    text = result._repr_html_()
    assert "<script" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


# --------------------------------------------------------------------------------------------
# inversion page
# --------------------------------------------------------------------------------------------

def test_inversion_page(inversion_dir):
    out, result = inversion_dir
    text, page = read_page(out)
    assert_no_injection(text)
    for src in ("./leaps_0.gif", "./leaps_1.gif", "./leaps.png", "./stimuli/00_clip.mp4", "./stimuli/06_clip.mp4",
                "./report_assets/losses.png", "./report_assets/frames.png"):
        assert src in page.srcs
        assert (out / src).is_file()
    visible = page.visible()
    assert "0: square moving up" in visible and "1: ring growing" in visible
    assert "top-5 of the model" in visible and "top-5 of the verifier" in visible
    top = json.loads((out / "leaps_history.json").read_text())["top5_verifier"][1][0]
    assert top["name"] in visible and escape.percent(top["prob"]) in visible
    cells = [tuple(row) for table in page.tables for row in table]
    assert ("lambda_last", "0.3", "preset of toy_r3d") in cells
    assert ("torch", torch.__version__) in cells
    assert ("steps", "2") in cells
    assert "What is missing" not in visible


def test_inversion_page_shows_the_judges_of_a_demo_run(tmp_path):
    from leaps.toy.judging import judge_scores

    result = toy_inversion(tmp_path)
    run = json.loads((tmp_path / "leaps_run.json").read_text())
    run["judges"] = judge_scores(result.video, result.targets, top5=True)
    run["judges_on_stimuli"] = {name: {"top1": 1.0, "p_target": 0.9} for name in run["judges"]}
    (tmp_path / "leaps_run.json").write_text(json.dumps(run))
    text, page = read_page(tmp_path)
    assert_no_injection(text)
    visible = page.visible()
    cells = {row[0]: row[1] for table in page.tables for row in table if len(row) == 2}
    for name, score in run["judges"].items():
        assert cells[f"top-1 of the judge {name}"] == (f"{escape.percent(score['top1'])}, mean p(target) "
                                                       f"{escape.number(score['p_target'])} (on the stimuli: 100.0%)")
        assert visible.count(f"top-5 of the judge {name}") == len(result.targets)  # one chart per video card
        best = score["top5"][1][0]
        assert best["name"] in visible and escape.percent(best["prob"]) in visible
    assert "What is missing" not in visible
    # a run json with junk where the judges go: the page is still made, without them
    (tmp_path / "leaps_run.json").write_text(json.dumps({"judges": {XSS: "junk"}, "judges_on_stimuli": [1]}))
    text, page = read_page(tmp_path)
    assert_no_injection(text)
    assert "top-5 of the judge" not in page.visible() and "top-1 of the judge" not in page.visible()


def test_inversion_page_escapes_user_data(tmp_path):
    history = {
        "targets": [0], "target_names": [XSS], "top1_model": 1.0, "top1_verifier": float("nan"),
        "top5_model": [[{"index": 0, "name": XSS, "prob": 0.9}, {"index": 1, "name": ATTR_XSS, "prob": 0.1}]],
        "model": {"name": XSS, "title": ATTR_XSS}, "config": {"objective": ATTR_XSS, "seed": 0},
        "environment": {"torch": XSS}, "history": {"loss": [1.0, float("nan"), 0.5], XSS: [0.1, 0.2, 0.3]},
        "stimuli": [f"{XSS}.mp4"],
    }
    (tmp_path / "leaps_history.json").write_text(json.dumps(history))
    (tmp_path / "leaps.gif").write_bytes(b"GIF89a")
    text, page = read_page(tmp_path)
    assert_no_injection(text)
    assert page.visible().count(XSS) >= 4  # target, top-5 name, model name, environment: shown as text
    assert ATTR_XSS in page.visible()


def test_inversion_page_says_what_is_missing(tmp_path):
    (tmp_path / "leaps.gif").write_bytes(b"GIF89a")  # only the combined video: no history, no sheet
    text, page = read_page(tmp_path)
    visible = page.visible()
    assert "leaps_history.json is missing" in visible
    assert "contact sheet leaps.png is missing" in visible
    assert "no loss history recorded" in visible


def test_inversion_page_with_broken_history_and_missing_videos(tmp_path):
    (tmp_path / "leaps_history.json").write_text('{"targets": [1, 2], "history": {"loss": [1.0, NaN]}')  # cut off
    (tmp_path / "leaps.png").write_bytes(b"")
    text, page = read_page(tmp_path)
    assert "leaps_history.json is not valid JSON" in page.visible()
    (tmp_path / "leaps_history.json").write_text('{"targets": [1, 2], "history": {"loss": [1.0, NaN]}, '
                                                 '"frame_ssim": [[NaN]], "top5_model": "junk"}')
    text, page = read_page(tmp_path)
    visible = page.visible()
    assert "video 0 (class 1): none of leaps_0.gif, leaps_0.mp4, leaps_0.webm exists" in visible
    assert "missing: leaps_1.gif" in visible


def test_report_without_matplotlib_says_so(tmp_path, monkeypatch, inversion_dir):
    out, _ = inversion_dir
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    text, page = read_page(copy)
    assert "matplotlib is not installed" in page.visible()
    assert not (copy / "report_assets" / "losses.png").exists()


# --------------------------------------------------------------------------------------------
# benchmark page
# --------------------------------------------------------------------------------------------

@pytest.fixture()
def bench_dir(tmp_path):
    shutil.copy(RESULTS / "table4_run3.json", tmp_path / "table4_run3.json")
    (tmp_path / "more").mkdir()
    shutil.copy(RESULTS / "kernels_run3.json", tmp_path / "more" / "kernels_run3.json")
    shutil.copy(RESULTS / "tune.json", tmp_path / "tune.json")
    return tmp_path


def test_benchmark_page_tables_hold_the_json_numbers(bench_dir):
    text, page = read_page(bench_dir)
    assert_no_injection(text)
    table4 = json.loads((bench_dir / "table4_run3.json").read_text())
    cells = {tuple(row) for table in page.tables for row in table}
    for result in table4["results"]:
        for name, row in result["rows"].items():
            expected = (name, row["status"], escape.number(row["step_ms"]["median"], 4),
                        escape.number(row["step_ms"]["p90"], 4), escape.number(row["inference_ms"]["median"], 4),
                        escape.number(row["peak_step_gib"], 4), escape.number(row["peak_inference_gib"], 4))
            assert any(c[:7] == expected for c in cells), expected
    kernels = json.loads((bench_dir / "more" / "kernels_run3.json").read_text())
    for result in kernels["results"]:
        for row in result["rows"]:
            expected = (row["term"], row["backend"], escape.number(row["ms"], 4), escape.number(row["graph_ms"], 4))
            assert any(c[:4] == expected for c in cells), expected
    charts = sorted(p.name for p in (bench_dir / "report_assets").iterdir())
    assert charts == ["kernels_0.png", "kernels_1.png", "table4_2.png", "table4_3.png"]  # one chart per setting
    assert "tune.json" in page.visible()  # listed, not charted
    assert "superseded" in page.visible()


def test_benchmark_page_with_bad_json(tmp_path):
    shutil.copy(RESULTS / "table4_run3.json", tmp_path / "a.json")
    payload = json.loads((tmp_path / "a.json").read_text())
    payload["results"][0]["rows"]["bare"]["step_ms"]["median"] = float("nan")
    payload["results"][0]["rows"]["bare"]["model"] = XSS
    payload["results"][0]["title"] = XSS
    (tmp_path / "a.json").write_text(json.dumps(payload))
    (tmp_path / "b.json").write_text("{broken")
    text, page = read_page(tmp_path)
    assert_no_injection(text)
    assert "b.json is not valid JSON" in page.visible()
    assert XSS in page.visible()
    assert any(row[:3] == ["bare", "ok", "NaN"] for table in page.tables for row in table)


# --------------------------------------------------------------------------------------------
# sweep page
# --------------------------------------------------------------------------------------------

def make_sweep(root: Path, gif: Path, n: int = 12) -> list[dict]:
    (root / "manifests").mkdir(parents=True)
    (root / "videos").mkdir()
    names = ["square moving up", XSS, "ring growing"]
    records = []
    for k in range(n):
        c = k % 3
        video = root / "videos" / f"{k:03d}.gif"
        shutil.copy(gif, video)
        records.append({"job_id": f"job-{k}", "model": ["toy_r3d", "toy_x3d"][k % 2], "method": "leaps", "target": c,
                        "class_name": names[c], "stimulus": "s.mp4", "seed": k, "video": f"videos/{video.name}",
                        "model_top1": c, "model_prob": 0.5 + k / 100, "verifier_top1": c if k % 4 else 0,
                        "verifier_prob": k / n, "losses": {"loss": 1.0}, "frame_ssim": [0.4, 0.6],
                        "frame_psnr": 20.0, "status": "ok", "reason": None})
    records[3]["verifier_prob"] = float("nan")
    records[4].update(status="failed", reason=f"the loss became nan at step 3 {XSS}")
    records[5]["video"] = "videos/gone.gif"
    (root / "manifests" / "rank-0.jsonl").write_text("\n".join(json.dumps(r) for r in records[:6]) + "\n")
    (root / "manifests" / "rank-1.jsonl").write_text("\n".join(json.dumps(r) for r in records[6:]) + "\n{oops\n")
    return records


def test_sweep_page(tmp_path, inversion_dir):
    out, _ = inversion_dir
    records = make_sweep(tmp_path, out / "leaps_0.gif")
    text, page = read_page(tmp_path)
    assert_no_injection(text)
    visible = page.visible()
    assert "rank-1.jsonl line 7 is not valid JSON" in visible
    assert "1 video file(s) of successful records are missing, e.g. videos/gone.gif (job-5)" in visible
    assert text.count('<div class="card" ') == 11  # every successful record, in the gallery
    cards = [line for line in text.split('<div class="card" ')[1:]]
    assert 'data-vprob="NaN"' in cards[-1]  # sorted by verifier confidence, NaN last
    assert XSS in visible and "the loss became nan at step 3" in visible
    rows = {tuple(r) for table in page.tables for r in table}
    ok = [r for r in records if r["status"] == "ok"]
    r3d = [r for r in ok if r["model"] == "toy_r3d"]
    verifier_top1 = sum(r["verifier_top1"] == r["target"] for r in r3d) / len(r3d)
    assert any(row[:5] == ("toy_r3d", "leaps", str(len(r3d)), "100.0%", escape.percent(verifier_top1))
               for row in rows)
    assert (tmp_path / "report_assets" / "per_class.png").is_file()


# --------------------------------------------------------------------------------------------
# bad input, command line
# --------------------------------------------------------------------------------------------

def test_empty_folder_gets_a_page_that_says_so(tmp_path):
    text, page = read_page(tmp_path)
    assert "nothing to report" in page.visible()
    assert "manifests/rank-*.jsonl" in page.visible()


def test_missing_folder_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(ReportError, match="does not exist"):
        write_report(tmp_path / "nope")
    assert issubclass(ReportError, LeapsError)
    assert report_main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("leaps: error: cannot write a report:")


def test_forced_kind_and_unknown_kind(tmp_path):
    (tmp_path / "leaps.gif").write_bytes(b"GIF89a")
    assert "LEAPS sweep" in write_report(tmp_path, kind="sweep").read_text()
    with pytest.raises(ReportError, match="unknown report kind"):
        write_report(tmp_path, kind="nope")


def test_python_dash_m(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "leaps.report", str(tmp_path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote {tmp_path / 'report.html'}"


def test_add_report_parser_wires_into_a_cli(tmp_path, capsys):
    import argparse

    from leaps.report.cli import add_report_parser, cmd_report

    parser = argparse.ArgumentParser(prog="leaps")
    add_report_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", str(tmp_path), "--kind", "inversion"])
    assert cmd_report(args) == 0
    assert "LEAPS inversion" in (tmp_path / "report.html").read_text()
