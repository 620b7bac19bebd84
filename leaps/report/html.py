"""Assembling the page: a skeleton with inline CSS and JS, and the few building blocks every page
kind uses (sections, tables, media, bars, notices).

Values go through :func:`cell`, which escapes everything that is not explicitly :class:`Markup`
(HTML this package built itself), so user data cannot reach the page unescaped by accident.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from . import escape

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1280px;padding:16px;
color:#1b1f24;background:#fff}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:1.6em}
h3{font-size:1em;margin:1em 0 .4em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #d0d7de;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.notice{background:#fff8c5;border:1px solid #d4a72c;padding:6px 10px;margin:6px 0;border-radius:4px}
.missing{display:inline-block;background:#ffebe9;border:1px dashed #cf222e;color:#82071e;padding:8px;font-size:.85em;
min-width:96px}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #d0d7de;border-radius:6px;padding:8px;
max-width:100%}.card[hidden]{display:none}
.media{display:flex;gap:8px;align-items:flex-start}.media figure{margin:0;text-align:center;font-size:.8em}
.media img,.media video{width:128px;height:auto;image-rendering:pixelated;background:#eee}
.bars{font-size:.8em;min-width:220px}.bar{display:flex;align-items:center;gap:6px;margin:1px 0}
.bar .label{width:130px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.bar .track{flex:1;background:#eaeef2;height:10px;min-width:60px}.bar .fill{background:#0969da;height:10px}
.bar.target .fill{background:#1a7f37}.bar .p{width:48px;text-align:right;font-variant-numeric:tabular-nums}
.plot{max-width:100%;height:auto}.small{color:#57606a;font-size:.85em}.ok{color:#1a7f37}.bad{color:#cf222e}
.controls{margin:8px 0;display:flex;gap:12px;flex-wrap:wrap;align-items:center}
nav.toc a{margin-right:12px;display:inline-block}figure{margin:8px 0}
"""

# Filtering, sorting and paging of a gallery: cards carry data-* attributes, controls name the
# attribute they filter on (data-filter) or sort by (data-sort). Hidden cards keep their lazy
# images unloaded, so a gallery of thousands of videos only fetches one page.
JS = """
(function(){
  var lazy = document.querySelectorAll('video[data-autoplay]');
  if (lazy.length && 'IntersectionObserver' in window) {
    var seen = new IntersectionObserver(function(entries){
      entries.forEach(function(e){
        if (e.isIntersecting) { e.target.preload = 'auto'; var p = e.target.play(); if (p) p.catch(function(){}); }
        else e.target.pause();
      });
    });
    lazy.forEach(function(v){ seen.observe(v); });
  }
})();
(function(){
  document.querySelectorAll('[data-gallery]').forEach(function(gallery){
    var id = gallery.id, size = parseInt(gallery.getAttribute('data-page-size'), 10) || 48, page = 0;
    var cards = Array.prototype.slice.call(gallery.children);
    var controls = document.querySelectorAll('[data-for="' + id + '"]');
    var info = document.getElementById(id + '-info');
    function matching(){
      return cards.filter(function(card){
        for (var i = 0; i < controls.length; i++) {
          var key = controls[i].getAttribute('data-filter'), want = controls[i].value;
          if (key && want && card.getAttribute('data-' + key) !== want) return false;
        }
        return true;
      });
    }
    function show(){
      var shown = matching(), pages = Math.max(1, Math.ceil(shown.length / size));
      page = Math.min(Math.max(page, 0), pages - 1);
      cards.forEach(function(card){ card.hidden = true; });
      shown.slice(page * size, (page + 1) * size).forEach(function(card){ card.hidden = false; });
      if (info) info.textContent = shown.length + ' of ' + cards.length + ' videos, page ' + (page + 1) +
                                   ' of ' + pages;
    }
    function sort(key, descending){
      cards.sort(function(a, b){
        var x = parseFloat(a.getAttribute('data-' + key)), y = parseFloat(b.getAttribute('data-' + key));
        x = isNaN(x) ? -Infinity : x; y = isNaN(y) ? -Infinity : y;
        return descending ? y - x : x - y;
      });
      cards.forEach(function(card){ gallery.appendChild(card); });
    }
    controls.forEach(function(control){
      control.addEventListener('change', function(){
        var key = control.getAttribute('data-sort');
        if (key !== null) { var v = control.value.split(':'); sort(v[0], v[1] === 'desc'); }
        page = 0; show();
      });
      control.addEventListener('click', function(){
        var step = parseInt(control.getAttribute('data-step'), 10);
        if (step) { page += step; show(); }
      });
    });
    show();
  });
})();
"""


class Markup(str):
    """HTML built by this package: :func:`cell` passes it through unescaped."""


def cell(value, digits: int = 4) -> str:
    """A value as HTML: Markup as is, numbers formatted, anything else escaped."""
    if isinstance(value, Markup):
        return value
    if value is None:
        return "–"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return escape.number(value, digits)
    return escape.text(value)


def page(title: str, body: Iterable[str], subtitle: str = "") -> str:
    """A complete, self-contained HTML document (inline CSS and JS, nothing fetched from a network)."""
    head = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        # No network: only files beside the page, inline styles and the inline script below.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'self' data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; media-src 'self' data:; img-src 'self' data:\">"
        f"<title>{escape.text(title)}</title><style>{CSS}</style></head><body>"
    )
    intro = f"<h1>{escape.text(title)}</h1>" + (f'<p class="small">{escape.text(subtitle)}</p>' if subtitle else "")
    return head + intro + "\n".join(body) + f"<script>{JS}</script></body></html>\n"


def section(title: str, content: str, anchor: str = "") -> Markup:
    ident = f' id="{escape.attr(anchor)}"' if anchor else ""
    return Markup(f"<section{ident}><h2>{escape.text(title)}</h2>{content}</section>")


def table(headers: Sequence | None, rows: Iterable[Sequence], numeric: Sequence[int] = (), cls: str = "") -> Markup:
    """A table (no header row when ``headers`` is None); ``numeric`` lists the columns to right-align."""
    head = "".join(f"<th>{cell(h)}</th>" for h in headers) if headers else ""
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{cell(v)}</td>' if i in numeric else f"<td>{cell(v)}</td>" for i, v in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    klass = f' class="{escape.attr(cls)}"' if cls else ""
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    return Markup(f"<table{klass}>{thead}<tbody>{''.join(body)}</tbody></table>")


def key_values(mapping: dict) -> Markup:
    """A two-column table of a flat mapping (nested values shown as their text)."""
    return table(("key", "value"), ((k, _plain(v)) for k, v in mapping.items()))


def _plain(value):
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return value


def notice(message: str) -> Markup:
    return Markup(f'<p class="notice">{escape.text(message)}</p>')


def missing(message: str) -> Markup:
    return Markup(f'<span class="missing">{escape.text(message)}</span>')


def image(path: Path, base: Path, alt: str, cls: str = "", lazy: bool = True) -> Markup:
    """An <img> of a file beside the page, or a 'missing' box naming it."""
    if not Path(path).is_file():
        return missing(f"missing: {Path(path).name}")
    klass = f' class="{escape.attr(cls)}"' if cls else ""
    loading = ' loading="lazy"' if lazy else ""
    return Markup(f'<img src="{escape.href(path, base)}" alt="{escape.attr(alt)}"{klass}{loading} decoding="async">')


def animation(candidates: Sequence[Path], base: Path, alt: str, lazy: bool = True) -> Markup:
    """The first existing file of ``candidates``: a gif as <img>, an mp4/webm as a looping muted <video>."""
    for path in candidates:
        path = Path(path)
        if not path.is_file():
            continue
        if path.suffix.lower() in (".mp4", ".webm", ".mov"):
            # A lazy video starts only when scrolled into view (the inline script plays it then).
            play = 'preload="none" data-autoplay=""' if lazy else 'preload="auto" autoplay'
            return Markup(f'<video src="{escape.href(path, base)}" {play} loop muted playsinline '
                          f'title="{escape.attr(alt)}"></video>')
        return image(path, base, alt, lazy=lazy)
    names = ", ".join(Path(p).name for p in candidates) or "no file recorded"
    return missing(f"missing: {names}")


def figure(content: str, caption: str) -> Markup:
    return Markup(f"<figure>{content}<figcaption>{escape.text(caption)}</figcaption></figure>")


def bars(items: Sequence[tuple[str, float]], highlight: str | None = None, title: str = "") -> Markup:
    """Horizontal probability bars (label, p in [0, 1]); ``highlight`` marks the target's bar."""
    rows = [f'<div class="small">{escape.text(title)}</div>'] if title else []
    for label, p in items:
        width = max(0.0, min(1.0, p)) * 100 if isinstance(p, (int, float)) and p == p else 0.0
        mark = " target" if highlight is not None and label == highlight else ""
        rows.append(f'<div class="bar{mark}">'
                    f'<span class="label" title="{escape.attr(label)}">{escape.text(label)}</span>'
                    f'<span class="track"><span class="fill" style="display:block;width:{width:.1f}%"></span></span>'
                    f'<span class="p">{escape.percent(p)}</span></div>')
    return Markup(f'<div class="bars">{"".join(rows)}</div>')


def select(gallery: str, label: str, values: Iterable[str], *, filter_key: str = "", sort_options=()) -> Markup:
    """A <select> that filters ``gallery`` on ``data-<filter_key>`` or sorts it (options 'key:asc|desc')."""
    if filter_key:
        options = '<option value="">all</option>' + "".join(
            f'<option value="{escape.attr(v)}">{escape.text(v)}</option>' for v in values)
        role = f'data-filter="{escape.attr(filter_key)}"'
    else:
        options = "".join(f'<option value="{escape.attr(v)}">{escape.text(text)}</option>' for v, text in sort_options)
        role = 'data-sort=""'
    return Markup(f'<label>{escape.text(label)} '
                  f'<select data-for="{escape.attr(gallery)}" {role}>{options}</select></label>')


def pager(gallery: str) -> Markup:
    return Markup(f'<button type="button" data-for="{escape.attr(gallery)}" data-step="-1">previous</button>'
                  f'<button type="button" data-for="{escape.attr(gallery)}" data-step="1">next</button>'
                  f'<span id="{escape.attr(gallery)}-info" class="small"></span>')
