"""The page of one inversion: videos beside their stimuli with the top-5 of both networks (and of
the judges, for ``leaps demo``), the contact sheet, the loss terms over the steps, frame SSIM/PSNR
(Fig. 7), config and environment."""

from __future__ import annotations

from pathlib import Path

from . import escape, plots
from .html import Markup, animation, bars, figure, image, key_values, missing, notice, section, table
from .inversion_data import InversionData, Video, collect


def build(root: Path, assets: Path) -> tuple[str, str, list[str]]:
    data = collect(root)
    model = data.model.get("title") or data.model.get("name") or "model"
    title = f"LEAPS inversion: {root.resolve().name}"
    subtitle = f"{len(data.videos)} video(s) of {model}"
    return title, subtitle, render(data, assets)


def render(data: InversionData, assets: Path) -> list[str]:
    root = data.root
    sections: list[str] = []
    if data.problems:
        sections.append(section("What is missing", "".join(notice(p) for p in data.problems), "problems"))
    sections.append(section("Summary", _summary(data), "summary"))
    sections.append(section("Videos", _videos(data), "videos"))
    sheet = image(data.contact_sheet, root, "contact sheet: one row per video", cls="plot", lazy=False) \
        if data.contact_sheet else missing("no contact sheet")
    body = figure(sheet, f"{data.stem}.png: one row per video, frames left to right")
    if data.snapshots:
        body += "".join(figure(image(p, root, p.name, cls="plot"), p.name) for p in data.snapshots)
    if data.last_finite:
        body += figure(animation([data.last_finite], root, "last finite video", lazy=False), "last_finite.mp4")
    sections.append(section("Contact sheet", body, "sheet"))
    sections.append(section("Loss terms over the steps", _loss_plot(data, assets), "losses"))
    sections.append(section("Frame SSIM / PSNR over time (Fig. 7)", _frame_plot(data, assets), "frames"))
    sections.append(section("Config", _config(data), "config"))
    env = key_values(data.environment) if data.environment else notice("no environment recorded")
    sections.append(section("Environment", env, "environment"))
    return sections


def _summary(data: InversionData) -> Markup:
    rows = [
        ("model", data.model.get("title") or data.model.get("name") or "–"),
        ("verifier", data.verifier.get("title") or data.verifier.get("name") or "none (R_feat off)"),
        ("videos", len(data.videos)),
        ("targets", ", ".join(v.target_name for v in data.videos) or "–"),
        ("top-1 of the model", Markup(escape.percent(data.top1_model))),
        ("top-1 of the verifier", Markup(escape.percent(data.top1_verifier))),
        ("steps", len(data.losses.get("loss", [])) or "–"),
    ]
    for name, score in data.judges.items():  # leaps demo: networks trained apart, never in the objective
        on_stimuli = data.judges_on_stimuli.get(name, {}).get("top1")
        rows.append((f"top-1 of the judge {name}", Markup(
            f"{escape.percent(score['top1'])}, mean p(target) {escape.number(score['p_target'])}"
            + (f" (on the stimuli: {escape.percent(on_stimuli)})" if on_stimuli is not None else ""))))
    combined = animation(data.combined, data.root, "all videos", lazy=False)
    return Markup(f'<div class="media">{table(None, rows)}<figure>{combined}'
                  f"<figcaption>{escape.text(data.stem)}: all videos</figcaption></figure></div>")


def _videos(data: InversionData) -> Markup:
    if not data.videos:
        return notice(f"no videos found ({data.stem}.gif / .mp4 or {data.stem}_N.gif / .mp4)")
    return Markup('<div class="cards">' + "".join(_card(data, v) for v in data.videos) + "</div>")


def _card(data: InversionData, video: Video) -> str:
    root = data.root
    lazy = video.index >= 24  # the first cards load at once; the rest when scrolled to
    synth = figure(animation(video.candidates, root, f"synthesised: {video.target_name}", lazy=lazy), "synthesised")
    if video.stimulus is not None:
        stim = figure(animation([video.stimulus], root, f"stimulus: {video.stimulus.name}", lazy=lazy),
                      f"stimulus: {video.stimulus.name}")
    else:
        stim = figure(missing(video.stimulus_note), "stimulus")
    tops = ""
    shown = [("model", video.top5_model), ("verifier", video.top5_verifier)]
    shown += [(f"judge {name}", predictions) for name, predictions in video.judges.items()]
    for label, predictions in shown:
        if predictions:
            target = next((p.name for p in predictions if p.index == video.target), None)
            tops += bars([(p.name, p.prob) for p in predictions], highlight=target, title=f"top-5 of the {label}")
    if not tops:
        tops = missing("no top-5 recorded")
    head = f"<h3>{video.index}: {escape.text(video.target_name)}</h3>"
    return (f'<div class="card" data-target="{escape.attr(video.target_name)}">{head}<div class="media">{synth}{stim}'
            f"<div>{tops}</div></div></div>")


def _plot(make, caption: str, root: Path) -> Markup:
    try:
        path = make()
    except plots.PlotUnavailable as exc:
        return notice(f"{caption}: {exc}")
    return figure(image(path, root, caption, cls="plot", lazy=False), caption)


def _loss_plot(data: InversionData, assets: Path) -> Markup:
    if not data.losses:
        return notice("no loss history recorded")
    out = _plot(lambda: plots.loss_curves(data.losses, assets / "losses.png"), "each logged term per step", data.root)
    last = [(name, values[-1] if values else None) for name, values in data.losses.items()]
    return Markup(out + table(("term", "last value"), last, numeric=(1,)))


def _frame_plot(data: InversionData, assets: Path) -> Markup:
    if not data.frame_ssim and not data.frame_psnr:
        return notice("no frame statistics recorded (they need at least 2 frames)")
    labels = [f"{v.index}: {v.target_name}" for v in data.videos] or [str(i) for i in range(len(data.frame_ssim))]
    out = _plot(lambda: plots.frame_statistics(data.frame_ssim, data.frame_psnr, labels, assets / "frames.png"),
                "SSIM and PSNR of consecutive frames", data.root)
    rows = []
    for label, ssim, psnr in zip(labels, data.frame_ssim, data.frame_psnr):
        rows.append((label, _mean(ssim), _mean(psnr)))
    return Markup(out + table(("video", "mean frame SSIM", "mean frame PSNR (dB)"), rows, numeric=(1, 2)))


def _mean(values) -> float | None:
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return sum(numbers) / len(numbers) if numbers else None


def _config(data: InversionData) -> Markup:
    parts = []
    if data.preset:
        overridden = data.preset.get("overridden") or []
        rows = [(k, data.preset.get(k), "set in the config" if k in overridden else data.preset.get("source", ""))
                for k in ("lambda_first", "lambda_last", "r")]
        parts.append("<h3>Preset used (Table S1)</h3>" + table(("weight", "value", "from"), rows, numeric=(1,)))
    if data.config:
        parts.append("<h3>InversionConfig</h3>" + key_values(data.config))
    return Markup("".join(parts)) if parts else notice("no config recorded")
