"""`leaps invert`'s inversion flags are generated from InversionConfig's fields: each declared once, in config.py."""

import dataclasses
import re

import pytest

from leaps import cli
from leaps.config import CliOption, InversionConfig
from leaps.constants import AMP_MODES, BACKENDS, DISTANCES, LR_SCHEDULES, OBJECTIVES
from leaps.errors import LeapsError

REQUIRED = ["invert", "--model", "toy_r3d", "--target", "0", "--out", "o"]
#: Flags of the config groups that are run options, not config fields.
RUN_OPTIONS = {"batch", "device"}


def invert_parser():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["invert"]


def config_group_actions():
    titles = set(cli.GROUP_TITLES.values())
    return [a for g in invert_parser()._action_groups if g.title in titles for a in g._group_actions]


def test_every_field_has_a_flag_or_says_why_not():
    for f in dataclasses.fields(InversionConfig):
        assert "cli" in f.metadata, f"{f.name}: declare a flag (config.option) or no_option(why)"
        opt = f.metadata["cli"]
        if opt is None:
            assert f.metadata["no_cli_reason"], f.name
        else:
            assert isinstance(opt, CliOption) and opt.group in cli.GROUP_TITLES and opt.help, f.name


def test_every_flagged_field_is_parsed_into_the_field():
    dests = {a.dest: a for a in config_group_actions()}
    for f, opt in cli.config_options():
        action = dests.pop(f.name)
        assert cli.option_flag(f, opt) in action.option_strings
    assert set(dests) == RUN_OPTIONS  # and nothing else in the config groups


def test_renamed_and_negated_flags():
    flags = {f.name: cli.option_flag(f, opt) for f, opt in cli.config_options()}
    assert flags["objective"] == "--method" and flags["progress"] == "--quiet"
    assert flags["use_ce"] == "--no-ce" and flags["flip"] == "--no-flip" and flags["clip"] == "--no-clip"
    assert flags["model_input"] == "--model-input" and flags["lr_schedule"] == "--lr-schedule"
    assert "token_grid" not in flags  # from the model spec


def test_no_flags_give_the_config_defaults():
    args = cli.build_parser().parse_args(REQUIRED)
    assert cli._config_from_args(args) == InversionConfig()


def test_choices_come_from_the_constants():
    choices = {a.dest: a.choices for a in config_group_actions()}
    assert tuple(choices["objective"]) == OBJECTIVES and tuple(choices["distance"]) == DISTANCES
    assert tuple(choices["backend"]) == BACKENDS and tuple(choices["lr_schedule"]) == LR_SCHEDULES
    assert tuple(choices["amp"]) == tuple(m for m in AMP_MODES if m is not None)


def test_every_flag_reaches_the_config():
    argv = REQUIRED + [
        "--method", "deepdream", "--frames", "4", "--size", "32", "--model-input", "4", "64",
        "--verifier-input", "2", "48", "--steps", "7", "--lr", "0.1", "--betas", "0.4", "0.8",
        "--lr-schedule", "constant", "--warmup-steps", "3", "--init-scale", "0.5", "--jitter", "2", "--no-flip",
        "--no-clip", "--lambda-first", "2", "--lambda-last", "0.5", "--r", "0.01", "--margin", "0.5",
        "--distance", "l1", "--priming-fraction", "0.5", "--no-ce", "--no-priming", "--no-coherence", "--no-feat",
        "--tv-weight", "0.2", "--l2-weight", "0.02", "--backend", "reference", "--amp", "bf16", "--compile",
        "--cuda-graph", "--checkpoint", "--channels-last", "--fast", "--sync-every", "5", "--seed", "9",
        "--snapshot-every", "2", "--quiet", "--param", "fourier", "--aug-scale", "0.9", "1.1", "--aug-rotate", "5",
        "--aug-time-shift", "1", "--coarse-to-fine", "2",
    ]
    cfg = cli._config_from_args(cli.build_parser().parse_args(argv))
    expected = InversionConfig(
        objective="deepdream", frames=4, size=32, model_input=(4, 64), verifier_input=(2, 48), steps=7, lr=0.1,
        betas=(0.4, 0.8), lr_schedule="constant", warmup_steps=3, init_scale=0.5, jitter=2, flip=False, clip=False,
        lambda_first=2.0, lambda_last=0.5, r=0.01, margin=0.5, distance="l1", priming_fraction=0.5, use_ce=False,
        use_priming=False, use_coherence=False, use_feat=False, tv_weight=0.2, l2_weight=0.02, backend="reference",
        amp="bf16", compile=True, cuda_graph=True, checkpoint=True, channels_last=True, fast=True, sync_every=5,
        seed=9, snapshot_every=2, progress=False, param="fourier", aug_scale=(0.9, 1.1), aug_rotate=5.0,
        aug_time_shift=1, coarse_to_fine=2,
    )
    assert cfg == expected
    changed = {f.name for f in dataclasses.fields(InversionConfig)
               if getattr(expected, f.name) != getattr(InversionConfig(), f.name)}
    # the test sets every flag (prior_tv and the extra models below: they add to the LEAPS objective only;
    # --preset FILE: in test_preset_file_through_every_entry_point; the priming flags refuse the
    # --aug-time-shift and --coarse-to-fine set here: in tests/test_recipes.py)
    assert changed | {"prior_tv", "prior_tv_time", "extra_models", "extra_weight", "preset",
                      "priming_per_frame", "priming_mirror"} == {
        f.name for f, _ in cli.config_options()}
    assert cli._config_from_args(cli.build_parser().parse_args(REQUIRED + ["--prior-tv", "0.5"])).prior_tv == 0.5
    assert cli._config_from_args(cli.build_parser().parse_args(
        REQUIRED + ["--prior-tv", "0.5", "--prior-tv-time", "0"])).prior_tv_time == 0.0
    extra = cli._config_from_args(cli.build_parser().parse_args(
        REQUIRED + ["--extra-models", "toy_x3d", "--extra-weight", "0.5"]))
    assert extra.extra_models == ("toy_x3d",) and extra.extra_weight == 0.5


@pytest.mark.parametrize("flag, shown", [("--steps", "(default 2000)"), ("--margin", "(default 1)"),
                                         ("--jitter", "(default 13% of --size)"), ("--betas", "(default 0.5 0.9)")])
def test_help_shows_the_defaults(flag, shown):
    text = invert_parser().format_help()
    line = text[text.index("\n  " + flag + " "):]
    assert shown in " ".join(line[:200].split())


# --------------------------------------------------------------------------------------------
# preset files: InversionConfig(preset=...), build_model(..., preset=...), leaps invert --preset
# --------------------------------------------------------------------------------------------

PRESET = {"lambda_first": 0.625, "lambda_last": 0.2, "r": 2.5e-3, "meta": {"objective": "verifier_prob"}}
TUNED = (0.625, 0.2, 2.5e-3)


def write_preset(tmp_path, values=PRESET, name="best_preset.json"):
    import json

    path = tmp_path / name
    path.write_text(json.dumps(values))
    return path


def lambdas(obj) -> tuple:
    return (obj.lambda_first, obj.lambda_last, obj.r)


def resolved_preset(model, config=None, **options) -> tuple:
    """The (lambda_1, lambda_L, r) a one-step inversion of ``model`` used."""
    import torch

    import leaps

    result = leaps.invert(model, [0], torch.rand(3, 4, 16, 16), None, config, steps=1, size=16, frames=4,
                          progress=False, **options)
    used = result._resolved_preset()
    return (used["lambda_first"], used["lambda_last"], used["r"])


def test_preset_file_through_every_entry_point(tmp_path):
    from leaps.models import Preset, build_model, get_spec

    path = write_preset(tmp_path)
    # InversionConfig: path or str or dict; the path is kept as text (JSON-ready run metadata)
    for source in (path, str(path), dict(PRESET)):
        assert lambdas(InversionConfig(preset=source)) == TUNED
    assert InversionConfig(preset=path).preset == str(path)
    # build_model: the spec the model carries gets the file's row, the registry keeps its own
    model = build_model("toy_r3d", preset=path)
    assert model.leaps_spec.preset == Preset(*TUNED) and get_spec("toy_r3d").preset == Preset(1.0, 0.3, 7.5e-3)
    assert resolved_preset(model) == TUNED
    assert resolved_preset(build_model("toy_r3d", preset={"r": 1e-3})) == (1.0, 0.3, 1e-3)  # the rest: the spec's
    # leaps invert --preset FILE
    assert lambdas(cli._config_from_args(cli.build_parser().parse_args(REQUIRED + ["--preset", str(path)]))) == TUNED


def test_explicit_values_beat_the_preset_which_beats_the_model_preset(tmp_path):
    from leaps.models import build_model

    path = write_preset(tmp_path, {"lambda_first": 0.5, "steps": 10, "lr": 0.1})
    # explicit, even when equal to the default, beats the file
    cfg = InversionConfig(preset=path, steps=2000, lambda_first=None)
    assert (cfg.steps, cfg.lambda_first, cfg.lr) == (2000, None, 0.1)
    assert InversionConfig(preset=path).replace(steps=3).steps == 3
    assert InversionConfig(steps=5).replace(preset=path).steps == 5  # set before: still explicit
    assert InversionConfig().replace(preset=path).steps == 10
    parse = cli.build_parser().parse_args
    flags = ["--preset", str(path), "--steps", "2000", "--lr", "0.2"]
    cfg = cli._config_from_args(parse(REQUIRED + flags))
    assert (cfg.steps, cfg.lr, cfg.lambda_first) == (2000, 0.2, 0.5)
    assert cli._config_from_args(parse(REQUIRED + flags[:2])).steps == 10
    # keyword > InversionConfig's preset > the preset build_model gave the model > the registry's
    model = build_model("toy_r3d", preset={"lambda_first": 0.75, "lambda_last": 0.4})
    config = InversionConfig(preset={"lambda_first": 0.875})
    assert resolved_preset(model, config) == (0.875, 0.4, 7.5e-3)
    assert resolved_preset(model, config, lambda_first=1.0, preset={"lambda_last": 0.1}) == (1.0, 0.1, 7.5e-3)


def test_sweep_config_takes_a_preset_over_the_model_geometry_but_under_flags():
    from leaps.models import get_spec
    from leaps.sweep.options import config_fingerprint, inversion_config

    spec = get_spec("toy_r3d")
    assert inversion_config(spec, "leaps", {}).size == 64
    assert inversion_config(spec, "leaps", {"preset": {"size": 32, "r": 1e-3}}).size == 32
    cfg = inversion_config(spec, "leaps", {"preset": {"size": 32, "r": 1e-3}, "size": 48})
    assert (cfg.size, cfg.r) == (48, 1e-3)
    # the job id holds the values a preset filled, not the preset's name
    assert config_fingerprint(cfg) == config_fingerprint(inversion_config(spec, "leaps", {"size": 48, "r": 1e-3}))


@pytest.mark.parametrize("text, match", [
    (None, "cannot read preset"), ("{", "is not JSON"), ("[1]", "JSON object"),
    ('{"lambda_first": 1, "nope": 2}', "unknown inversion option.*nope"),
    ('{"preset": "other.json"}', "unknown inversion option.*preset"),
    ('{"r": "high"}', "r: 'high' is not a float"), ('{"r": [1]}', "wrong type"),
])
def test_a_bad_preset_is_one_clear_error_at_every_entry_point(tmp_path, capsys, text, match):
    from leaps.models import build_model
    from leaps.tune import PresetError

    path = tmp_path / "p.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(PresetError, match=match):
        InversionConfig(preset=path)
    with pytest.raises(PresetError, match=match):
        InversionConfig().replace(preset=path)
    with pytest.raises(PresetError, match=match):
        build_model("toy_r3d", preset=path)
    assert cli.main(REQUIRED[:-1] + [str(tmp_path / "out"), "--preset", str(path)]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("leaps: error: ") and err.count("\n") == 1 and str(path) in err, err
    assert re.search(match, err), err
    assert not (tmp_path / "out").exists()  # nothing is built or written before the options are valid


def test_build_model_refuses_a_preset_a_model_cannot_carry(tmp_path):
    from leaps.models import build_model
    from leaps.tune import PresetError

    path = write_preset(tmp_path, {"lambda_first": 0.5, "steps": 10})
    with pytest.raises(PresetError, match=r"holds steps.*InversionConfig\(preset=...\)"):
        build_model("toy_r3d", preset=path)
    with pytest.raises(PresetError, match="file path or a dict"):
        build_model("toy_r3d", preset=3)


def test_named_preset_everywhere_a_preset_file_goes(tmp_path, monkeypatch):
    from leaps.presets import NAMED_PRESETS
    from leaps.tune import PresetError

    demo = NAMED_PRESETS["toy-demo"]
    cfg = InversionConfig(preset="toy-demo")
    assert {k: getattr(cfg, k) for k in demo} == demo
    assert InversionConfig(preset="toy-demo", size=48).size == 48  # explicit still wins
    parse = cli.build_parser().parse_args
    assert cli._config_from_args(parse(REQUIRED + ["--preset", "toy-demo"])).model_input == (8, 64)
    with pytest.raises(PresetError, match="named presets: toy-demo"):
        InversionConfig(preset="toy-dmo")
    # every named preset makes a valid config (the option checks run on it)
    for name, fields in NAMED_PRESETS.items():
        cfg = InversionConfig(preset=name).validate()
        assert {k: getattr(cfg, k) for k in fields} == fields, name
    frames = InversionConfig(preset="toy-demo-frames")
    assert frames.priming_per_frame and frames.priming_mirror and frames.lambda_first == 2 * demo["lambda_first"]
    with pytest.raises(LeapsError, match="aug_time_shift"):
        InversionConfig(preset="toy-demo-frames", aug_time_shift=1).validate()
    # a file of tuple fields (JSON arrays) loads, and a file of the name wins over the named preset
    write_preset(tmp_path, {"model_input": [8, 64], "extra_models": ["toy_x3d"]}, name="toy-demo")
    from leaps.tune.preset import load_preset

    monkeypatch.chdir(tmp_path)
    assert load_preset("toy-demo") == {"model_input": (8, 64), "extra_models": ("toy_x3d",)}
