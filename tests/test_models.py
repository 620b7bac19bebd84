"""Model registry, builders, head adaptations, checkpoint loading and offline behaviour.

Kept fast on CPU: random-init models with 10 classes and tiny 4 x 64^2 inputs; only MViTv2-S
runs at its fixed native 16 x 224^2.
"""

import dataclasses
import subprocess
import sys
import urllib.error
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from leaps.errors import LeapsError, UnknownModelError, WeightsError
from leaps.models import (
    ModelSpec,
    Preset,
    _compat,
    build_model,
    get_spec,
    list_models,
    load_weights,
    register,
    save_weights,
)

NUM_CLASSES = 10
ALL_NAMES = [spec.name for spec in list_models()]
# The transformers leaps builds itself run only at full size (their reduced configurations are
# tested in test_zoo_transformers.py); building and running them here would take minutes on a CPU.
SMALL_NAMES = [spec.name for spec in list_models() if spec.source != "leaps"]



def _test_input(spec: ModelSpec, batch: int = 1) -> torch.Tensor:
    if spec.name == "mvit_v2_s":  # positional sizes are fixed at construction
        t, h, w = spec.input_geometry
    else:  # every other model accepts tiny inputs (CNN heads adapted, Swin pads)
        t, h, w = 4, 64, 64
    return torch.rand(batch, 3, t, h, w)


# ---------------------------------------------------------------- registry


def test_registry_contents():
    expected = {
        "slow_r50", "r2plus1d_r50", "csn_r50", "x3d_xs", "x3d_s", "x3d_m", "x3d_l",
        "r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t", "swin3d_s", "swin3d_b",
    }
    assert expected <= set(ALL_NAMES)
    assert ALL_NAMES.index("slow_r50") < ALL_NAMES.index("r3d_18")  # registration order
    for spec in list_models():
        assert spec.source in ("pytorchvideo", "torchvision", "toy", "leaps")
        assert spec.kind in ("cnn", "transformer")
        assert spec.input_geometry == (spec.frames, spec.size, spec.size)
        assert len(spec.mean) == len(spec.std) == 3
        assert spec.preset.lambda_first > 0 and spec.preset.lambda_last > 0 and spec.preset.r > 0
        assert (spec.token_grid is not None) == (spec.name in ("mvit_v2_s", "mvit_v2_b", "timesformer", "rev_mvit_b"))


def test_paper_presets_and_geometry():
    assert get_spec("slow_r50").preset == Preset(1.0, 0.3, 7.5e-3)
    assert get_spec("r2plus1d_r50").frames == 16
    assert get_spec("x3d_s").input_geometry == (13, 160, 160)
    assert get_spec("x3d_l").input_geometry == (16, 312, 312)
    assert get_spec("x3d_m").fixed_size and not get_spec("csn_r50").fixed_size
    assert get_spec("csn_r50").hub is None and "csn_r101" in get_spec("csn_r50").notes
    assert get_spec("swin3d_b").preset == Preset(0.625, 0.1, 1e-3)


def test_get_spec_is_lenient_about_case_and_dashes():
    assert get_spec("X3D-XS") is get_spec("x3d_xs")


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModelError, match=r"did you mean 'x3d_xs'.*leaps models"):
        get_spec("x3d_xss")
    with pytest.raises(UnknownModelError, match="unknown model 'resnet'"):
        build_model("resnet")


def test_register_rejects_a_different_spec_under_a_taken_name():
    spec = get_spec("x3d_xs")
    register(spec)  # same spec again: fine
    with pytest.raises(ValueError, match="already registered"):
        register(dataclasses.replace(spec, frames=8))


def test_import_does_not_import_torchvision_or_pytorchvideo():
    code = (
        "import sys, leaps.models, leaps.classes; leaps.classes.kinetics400_classes(); "
        "assert 'torchvision' not in sys.modules, 'torchvision'; "
        "assert 'pytorchvideo' not in sys.modules, 'pytorchvideo'"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- builders


@pytest.mark.parametrize("name", SMALL_NAMES)
def test_every_model_builds_frozen_and_runs_small(name):
    spec = get_spec(name)
    model = build_model(name, num_classes=NUM_CLASSES)
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())

    seen = {}
    last_norm = _last_layer_norm(model)
    if last_norm is not None:
        last_norm.register_forward_hook(lambda m, i, o: seen.update(shape=tuple(i[0].shape)))
    x = _test_input(spec)
    with torch.inference_mode():
        out = model(x)
    assert out.shape == (1, NUM_CLASSES)
    assert torch.isfinite(out).all()

    if spec.token_grid is not None:  # B x N x C tokens: class token(s) + T' x H'W' grid
        t, hw = spec.token_grid(tuple(x.shape[2:]))
        assert len(seen["shape"]) == 3 and seen["shape"][1] - t * hw == 1
    elif spec.kind == "transformer":  # Video Swin: B x T' x H' x W' x C
        assert len(seen["shape"]) == 5


def _last_layer_norm(model: nn.Module):
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    return norms[-1] if norms else None


def test_batch_of_two():
    model = build_model("x3d_xs", num_classes=NUM_CLASSES)
    with torch.inference_mode():
        assert model(torch.rand(2, 3, 4, 64, 64)).shape == (2, NUM_CLASSES)


def test_adapted_head_matches_hub_model_at_native_size():
    """Adaptive pooling changes nothing at the native size; only the softmax is gone."""
    hub = _compat.pytorchvideo_hub()
    torch.manual_seed(0)
    original = hub.x3d_xs(pretrained=False, model_num_class=NUM_CLASSES).eval()
    adapted = build_model("x3d_xs", num_classes=NUM_CLASSES)
    adapted.load_state_dict(original.state_dict())
    x = torch.rand(1, 3, *get_spec("x3d_xs").input_geometry)
    with torch.inference_mode():
        expected = original(x)  # the hub head ends in a softmax
        logits = adapted(x)
    torch.testing.assert_close(logits.softmax(dim=1), expected, rtol=1e-4, atol=1e-6)


def test_num_classes_must_be_positive():
    with pytest.raises(LeapsError, match="num_classes"):
        build_model("x3d_xs", num_classes=0)


# ---------------------------------------------------------------- checkpoints


def _fresh(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("x3d_xs", num_classes=NUM_CLASSES)


def _assert_same_params(a: nn.Module, b: nn.Module):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"model_state": sd, "cfg": "x"},
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": sd},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {"state_dict": {f"model.{k}": v for k, v in sd.items()}},
    ],
    ids=["plain", "model_state", "state_dict", "model", "module_prefix", "lightning"],
)
def test_weights_round_trip(tmp_path, wrap):
    source, target = _fresh(1), _fresh(2)
    path = tmp_path / "ckpt.pth"
    torch.save(wrap(source.state_dict()), path)
    assert load_weights(target, path) is target
    _assert_same_params(source, target)


def test_save_weights_and_build_model_with_weights(tmp_path):
    source = _fresh(3)
    path = tmp_path / "sub" / "x3d.pt"
    save_weights(source, path)
    loaded = build_model("x3d_xs", weights=path, num_classes=NUM_CLASSES)
    _assert_same_params(source, loaded)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())


def test_unknown_pickled_objects_need_trust(tmp_path):
    # A checkpoint pickling objects outside the allow-list is refused (unpickling could run code),
    # and loads only with the explicit opt-in.
    source = _fresh(4)
    path = tmp_path / "old.pyth"
    torch.save({"model_state": source.state_dict(), "cfg": _Config()}, path)
    target = _fresh(5)
    with pytest.raises(WeightsError, match=r"_Config.*trust_weights=True \(--trust-weights\)"):
        load_weights(target, path)
    load_weights(target, path, trust_weights=True)
    _assert_same_params(source, target)


class _Config:
    """A stand-in for the config objects old checkpoints pickle."""


def test_class_count_mismatch_names_the_key_and_suggests_num_classes(tmp_path):
    path = tmp_path / "k400.pth"
    torch.save(build_model("x3d_xs", num_classes=400).state_dict(), path)
    with pytest.raises(WeightsError) as info:
        load_weights(_fresh(0), path)
    message = str(info.value)
    assert "blocks.5.proj.weight" in message and "(400, 2048)" in message
    assert "--num-classes 400" in message


def test_architecture_mismatch_lists_keys(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(WeightsError, match=r"missing keys.*unexpected keys \(e.g. fc.weight\)"):
        load_weights(_fresh(0), path)


def test_missing_weights_file(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(WeightsError, match="weights file not found: .*nope.pth"):
        load_weights(_fresh(0), path)
    with pytest.raises(WeightsError, match="weights file not found"):
        build_model("x3d_xs", weights=path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04broken zip"])
def test_corrupt_weights_file(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    model = _fresh(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # garbage must not be retried as a "trusted" pickle
        with pytest.raises(WeightsError, match="cannot read weights file .*bad.pth.*corrupt"):
            load_weights(model, path)


def test_file_without_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(WeightsError, match="does not hold a state dict"):
        load_weights(_fresh(0), path)


# ---------------------------------------------------------------- pretrained (offline)


def _offline(*args, **kwargs):
    raise urllib.error.URLError("no network in tests")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No cached checkpoints and no network for torch.hub."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "urlopen", _offline)


@pytest.mark.parametrize("name", ["x3d_xs", "r3d_18"])
def test_pretrained_offline_raises_weights_error_with_hint(offline, name):
    with pytest.raises(WeightsError) as info:
        build_model(name, pretrained=True)
    message = str(info.value)
    assert f"cannot download pretrained weights for {name}" in message
    assert "no network?" in message and "--weights PATH" in message
    assert get_spec(name).url in message


def test_pretrained_any_hub_failure_becomes_weights_error():
    spec = dataclasses.replace(get_spec("x3d_xs"), hub=_offline)
    with pytest.raises(WeightsError, match="cannot download pretrained weights for x3d_xs"):
        build_model(spec, pretrained=True)


@pytest.mark.parametrize("error", [ConnectionResetError("reset by peer"), TimeoutError("timed out"),
                                   urllib.error.HTTPError("https://x", 503, "Service Unavailable", {}, None)])
def test_pretrained_network_errors_are_download_problems(error):
    def hub(num_classes):
        raise error

    spec = dataclasses.replace(get_spec("x3d_xs"), hub=hub)
    with pytest.raises(WeightsError, match="cannot download pretrained weights for x3d_xs .*no network"):
        build_model(spec, pretrained=True)


@pytest.mark.parametrize("error", [TypeError("hub() got an unexpected keyword"), RuntimeError("invalid hash value"),
                                   PermissionError(13, "Permission denied")])
def test_pretrained_other_failures_keep_their_type_and_message(error):
    def hub(num_classes):
        raise error

    spec = dataclasses.replace(get_spec("x3d_xs"), hub=hub)
    with pytest.raises(WeightsError) as info:
        build_model(spec, pretrained=True)
    message = str(info.value)
    assert f"cannot load the pretrained weights of x3d_xs: {type(error).__name__}: {error}" in message
    assert "download" not in message and "no network" not in message


def test_pretrained_without_hub_weights():
    with pytest.raises(WeightsError, match="no pretrained weights are published for csn_r50"):
        build_model("csn_r50", pretrained=True)


def test_pretrained_needs_400_classes():
    with pytest.raises(WeightsError, match="400 classes"):
        build_model("x3d_xs", pretrained=True, num_classes=NUM_CLASSES)


def test_weights_directory_is_not_a_checkpoint(tmp_path):
    with pytest.raises(WeightsError, match="is a directory, not a checkpoint file"):
        build_model("x3d_xs", weights=tmp_path)


@pytest.mark.parametrize("trust", [False, True])
def test_trust_weights_is_passed_to_load_weights(tmp_path, monkeypatch, trust):
    import leaps.models.registry as registry

    calls, real = [], registry.load_weights
    monkeypatch.setattr(registry, "load_weights", lambda model, path, **kw: calls.append(kw) or real(model, path))
    path = tmp_path / "w.pth"
    torch.save(_fresh(0).state_dict(), path)
    build_model("x3d_xs", weights=path, num_classes=NUM_CLASSES, trust_weights=trust)
    assert calls == [{"trust_weights": trust}]


def test_only_the_toy_models_ship_weights():
    assert {s.name for s in list_models() if s.ships_weights} == {
        "toy_r3d", "toy_x3d", "toy_r2plus1d", "toy_r3d_robust", "toy_judge_2d", "toy_judge_attn"}


def test_weights_and_pretrained_are_exclusive(tmp_path):
    with pytest.raises(WeightsError, match="not both"):
        build_model("x3d_xs", weights=tmp_path / "w.pth", pretrained=True)


# ---------------------------------------------------------------- compatibility


def test_functional_tensor_shim(monkeypatch):
    name = "torchvision.transforms.functional_tensor"
    monkeypatch.delitem(sys.modules, name, raising=False)
    installed = _compat.install_functional_tensor_shim()
    module = sys.modules[name]
    if installed:  # current torchvision: the alias resolves the old names
        import torchvision.transforms._functional_tensor as renamed
        import torchvision.transforms.functional as F

        # pytorchvideo calls affine(video, matrix, ...): the renamed module's signature.
        assert module.affine is renamed.affine
        assert callable(module._blend) and callable(module.adjust_brightness)
        assert module.InterpolationMode is F.InterpolationMode  # falls back to functional
        with pytest.raises(AttributeError):
            module.no_such_function
    assert _compat.install_functional_tensor_shim() is False  # idempotent


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script_method in pytorchvideo
def test_pytorchvideo_transforms_import_through_the_shim():
    _compat.install_functional_tensor_shim()
    import pytorchvideo.transforms.augmentations  # noqa: F401  (imports functional_tensor)


def test_missing_dependency_is_a_leaps_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pytorchvideo.models.hub", None)  # import -> ImportError
    with pytest.raises(LeapsError, match="pip install pytorchvideo") as info:
        build_model("x3d_xs", num_classes=NUM_CLASSES)
    assert isinstance(info.value, ImportError)


def test_build_model_records_spec_for_invert():
    from leaps.inversion import Network

    model = build_model("r3d_18", num_classes=6)
    assert model.leaps_spec.name == "r3d_18" and model.leaps_num_classes == 6
    net = Network.wrap(model, None, None)
    assert net.spec is model.leaps_spec and net.geometry is None  # size-independent CNN
    assert torch.allclose(net.mean.flatten(), torch.tensor(model.leaps_spec.mean))


@pytest.mark.parametrize("q_thw,k_thw", [((2, 4, 4), (2, 4, 4)), ((2, 4, 4), (2, 2, 2)), ((3, 5, 7), (3, 3, 4))])
def test_mvit_rel_pos_on_device_is_bit_identical_to_torchvision(q_thw, k_thw):
    # The graph-safe relative-position term must change only where the index tensors live.
    from torchvision.models.video import mvit

    from leaps.models import _compat, mvit_rel_pos

    _compat.torchvision_video()
    assert mvit._add_rel_pos is mvit_rel_pos.add_rel_pos  # every MViT leaps builds uses it
    original = mvit._torchvision_add_rel_pos
    gen = torch.Generator().manual_seed(0)
    b, heads, dim = 2, 3, 8
    q = torch.randn(b, heads, 1 + q_thw[0] * q_thw[1] * q_thw[2], dim, generator=gen)
    attn = torch.randn(b, heads, q.shape[2], 1 + k_thw[0] * k_thw[1] * k_thw[2], generator=gen)
    tables = [torch.randn(2 * max(q_thw[i], k_thw[i]) - 1 + extra, dim, generator=gen)
              for i, extra in ((1, 0), (2, 2), (0, 0))]  # h, w (interpolated: other length), t
    want = original(attn.clone(), q, q_thw, k_thw, *tables)
    got = mvit_rel_pos.add_rel_pos(attn.clone(), q, q_thw, k_thw, *tables)
    assert torch.equal(got, want)


def test_mvit_rel_pos_makes_no_cpu_tensor_for_a_meta_attention():
    # Every tensor the term makes follows q's device (torchvision's makes CPU aranges: no CUDA graph).
    from torch.overrides import TorchFunctionMode
    from torch.utils._pytree import tree_leaves
    from torchvision.models.video import mvit

    from leaps.models import _compat, mvit_rel_pos

    class Devices(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.seen = set()

        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            self.seen |= {t.device.type for t in tree_leaves(out) if isinstance(t, torch.Tensor)}
            return out

    _compat.torchvision_video()
    q = torch.empty(1, 2, 1 + 2 * 3 * 3, 4, device="meta")
    tables = [torch.empty(5, 4, device="meta"), torch.empty(5, 4, device="meta"), torch.empty(3, 4, device="meta")]
    for fn, want in ((mvit_rel_pos.add_rel_pos, {"meta"}), (mvit._torchvision_add_rel_pos, {"meta", "cpu"})):
        attn = torch.empty(1, 2, q.shape[2], q.shape[2], device="meta")
        with Devices() as mode:
            fn(attn, q, (2, 3, 3), (2, 3, 3), *tables)
        assert mode.seen == want, fn
