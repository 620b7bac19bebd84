"""`leaps invert`'s inversion flags are generated from InversionConfig's fields: each declared once, in config.py."""

import dataclasses

import pytest

from leaps import cli
from leaps.config import CliOption, InversionConfig
from leaps.constants import AMP_MODES, BACKENDS, DISTANCES, LR_SCHEDULES, OBJECTIVES

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
    # the test sets every flag (prior_tv and the extra models below: they add to the LEAPS objective only)
    assert changed | {"prior_tv", "extra_models", "extra_weight"} == {f.name for f, _ in cli.config_options()}
    assert cli._config_from_args(cli.build_parser().parse_args(REQUIRED + ["--prior-tv", "0.5"])).prior_tv == 0.5
    extra = cli._config_from_args(cli.build_parser().parse_args(
        REQUIRED + ["--extra-models", "toy_x3d", "--extra-weight", "0.5"]))
    assert extra.extra_models == ("toy_x3d",) and extra.extra_weight == 0.5


@pytest.mark.parametrize("flag, shown", [("--steps", "(default 2000)"), ("--margin", "(default 1)"),
                                         ("--jitter", "(default 13% of --size)"), ("--betas", "(default 0.5 0.9)")])
def test_help_shows_the_defaults(flag, shown):
    text = invert_parser().format_help()
    line = text[text.index("\n  " + flag + " "):]
    assert shown in " ".join(line[:200].split())
