"""The report pages in headless Chromium, checked as a person would: the images, gifs and videos
load, the tables show the numbers of the JSON, hostile class names show as text (no dialog, no
script element from data), the sweep gallery filters and pages, and the console stays clean.

Chromium is driven through the DevTools protocol over a pipe (--remote-debugging-pipe): no port,
no network, no extra package. Skipped when no Chromium/Chrome is installed. With
LEAPS_REPORT_SCREENSHOTS=DIR set, a screenshot of each page kind is written to DIR.
"""

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from test_report import RESULTS, XSS, make_sweep, toy_inversion

from leaps.report import escape, write_report

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
         "--mute-audio", "--autoplay-policy=no-user-gesture-required", "--remote-debugging-pipe"]


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium/Chrome installed (Debian: apt-get install "
                                                          "chromium): the report pages are not rendered")


class Browser:
    def __init__(self, executable, timeout=30.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="leaps-chromium-")
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        def plumb():  # child: fd 3 is read by Chromium, fd 4 written
            a = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen([executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=plumb, close_fds=False)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events = []
        self.session = None

    # -- protocol ---------------------------------------------------------------------------------
    def _send(self, method, params=None, session=True):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._w, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _read_message(self, deadline):
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from Chromium")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the pipe")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def _handle(self, message):
        if message.get("method") == "Page.javascriptDialogOpening":  # never leave a dialog blocking the page
            self._send("Page.handleJavaScriptDialog", {"accept": False})
        self.events.append(message)

    def call(self, method, params=None, session=True, timeout=None):
        wanted = self._send(method, params, session)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            message = self._read_message(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self._handle(message)

    def wait_event(self, method, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while not any(e.get("method") == method for e in self.events):
            message = self._read_message(deadline)
            if "method" in message:
                self._handle(message)

    # -- page -----------------------------------------------------------------------------------
    def open(self, url, width=1200, height=900):
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                          "mobile": False})
        self.events.clear()
        self.call("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression, timeout=None):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, timeout=timeout)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path, full_page=False):
        params = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", params)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def problems(self):
        """Console errors, uncaught exceptions, failed loads and dialogs seen so far."""
        out = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(f"uncaught: {params.get('exceptionDetails', {}).get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append(f"console.{params['type']}: {[a.get('value') for a in params.get('args', [])]}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                out.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
            elif method == "Page.javascriptDialogOpening":
                out.append(f"dialog: {params.get('type')} {params.get('message')}")
        return out

    def close(self):
        try:
            self.call("Browser.close", session=False, timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


# Waits until every <img> is decoded and every <video> can play (or failed), then lists them.
# Lazy ones are switched to eager first: the test checks the files load, not the scrolling.
LOADED = """new Promise(function(done){
  document.querySelectorAll('img').forEach(function(i){ i.loading = 'eager'; });
  document.querySelectorAll('video[preload="none"]').forEach(function(v){ v.preload = 'auto'; v.load(); });
  var t0 = Date.now();
  (function poll(){
    var imgs = Array.from(document.images), vids = Array.from(document.querySelectorAll('video'));
    var ready = imgs.every(function(i){ return i.complete; }) &&
                vids.every(function(v){ return v.readyState >= 2 || v.error; });
    if (ready || Date.now() - t0 > 15000) done({
      images: imgs.map(function(i){ return [i.getAttribute('src'), i.naturalWidth]; }),
      videos: vids.map(function(v){ return [v.getAttribute('src'), v.readyState, v.error ? v.error.code : 0]; })});
    else setTimeout(poll, 50);
  })();
})"""


@pytest.fixture(scope="module")
def browser():
    b = Browser(CHROMIUM)
    yield b
    b.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """One folder per page kind; the inversion's classes are hostile names."""
    inversion = tmp_path_factory.mktemp("inversion")
    names = ["square moving up", "square moving down", "square blinking", "square growing", "ring moving up",
             "ring moving down", XSS, "ring shrinking", "bar rotating", "bar blinking"]
    result = toy_inversion(inversion, class_names=names)
    add_judges(inversion, result)
    bench = tmp_path_factory.mktemp("bench")
    for name in ("table4_run3.json", "kernels_run3.json"):
        shutil.copy(RESULTS / name, bench / name)
    sweep = tmp_path_factory.mktemp("sweep")
    make_sweep(sweep, inversion / "leaps_0.gif", n=60)
    return {"inversion": inversion, "benchmarks": bench, "sweep": sweep}


def add_judges(folder, result):
    """What leaps demo records: the judges' scores with their per-video top-5, one judge with a hostile name."""
    from leaps.toy.judging import judge_scores

    run = json.loads((folder / "leaps_run.json").read_text())
    run["judges"] = judge_scores(result.video, result.targets, top5=True)
    run["judges"][XSS] = run["judges"]["toy_judge_2d"]
    run["judges_on_stimuli"] = {name: {"top1": 1.0, "p_target": 0.95} for name in run["judges"]}
    (folder / "leaps_run.json").write_text(json.dumps(run))


def render(browser, directory, kind):
    path = write_report(directory)
    browser.open(path.as_uri())
    media = browser.evaluate(LOADED, timeout=30)
    shots = os.environ.get("LEAPS_REPORT_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        browser.screenshot(Path(shots) / f"report-{kind}.png")
    return media


def assert_media_loaded(media, expect_videos=0):
    assert media["images"], "no images on the page"
    for src, width in media["images"]:
        assert width > 0, f"{src} did not load"
    assert len(media["videos"]) >= expect_videos
    for src, state, error in media["videos"]:
        assert error == 0 and state >= 2, f"{src}: readyState {state}, error {error}"


def assert_clean(browser):
    assert browser.problems() == []
    assert browser.evaluate("document.querySelectorAll('script').length") == 1  # the page's own


def test_inversion_page_in_chromium(browser, pages):
    media = render(browser, pages["inversion"], "inversion")
    assert_media_loaded(media, expect_videos=2)  # the two stimuli (mp4)
    srcs = [src for src, _ in media["images"]]
    assert {"./leaps_0.gif", "./leaps_1.gif", "./leaps.png", "./report_assets/losses.png"} <= set(srcs)
    text = browser.evaluate("document.body.innerText")
    assert f"1: {XSS}" in text  # the hostile target name is on the screen, as text
    assert "top-5 of the verifier" in text
    assert "top-5 of the judge toy_judge_attn" in text and f"top-1 of the judge {XSS}" in text  # as text
    assert_clean(browser)


def test_benchmark_page_in_chromium(browser, pages):
    media = render(browser, pages["benchmarks"], "benchmarks")
    assert_media_loaded(media)
    cells = browser.evaluate("Array.from(document.querySelectorAll('table.table4 tr')).map("
                             "function(r){ return Array.from(r.cells).map(function(c){ return c.innerText; }); })")
    payload = json.loads((pages["benchmarks"] / "table4_run3.json").read_text())
    rows = [row for result in payload["results"] for row in result["rows"].values()]
    shown = [c for c in cells if c and c[0] != "row"]
    assert len(shown) == len(rows)
    for row, cell in zip(rows, shown):
        assert cell[:5] == [row["name"], row["status"], escape.number(row["step_ms"]["median"], 4),
                            escape.number(row["step_ms"]["p90"], 4), escape.number(row["inference_ms"]["median"], 4)]
    assert_clean(browser)


def test_sweep_page_in_chromium(browser, pages):
    media = render(browser, pages["sweep"], "sweep")
    assert_media_loaded(media)
    visible = "Array.from(document.querySelectorAll('#sweep-gallery .card')).filter(function(c){ return !c.hidden; })"
    info = "document.getElementById('sweep-gallery-info').textContent"
    # 60 records, one failed: 59 cards (the missing video shows a box saying so), 48 per page
    assert browser.evaluate(f"{visible}.length") == 48
    assert browser.evaluate(info) == "59 of 59 videos, page 1 of 2"
    browser.evaluate("document.querySelector('[data-step=\"1\"]').click()")
    assert browser.evaluate(f"{visible}.length") == 11
    # filter on the hostile class name: only its cards stay, and it is shown as text
    browser.evaluate("(function(){ var s = document.querySelector('select[data-filter=\"class\"]');"
                     f"s.value = {json.dumps(XSS)}; s.dispatchEvent(new Event('change')); }})()")
    classes = browser.evaluate(f"{visible}.map(function(c){{ return c.getAttribute('data-class'); }})")
    assert classes and set(classes) == {XSS}
    assert XSS in browser.evaluate("document.body.innerText")
    assert_clean(browser)
