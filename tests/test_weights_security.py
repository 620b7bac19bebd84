"""Checkpoints run no code unless the user says so (leaps.models.weights)."""

from __future__ import annotations

import argparse
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from leaps.cli import main
from leaps.errors import UntrustedWeightsError, WeightsError
from leaps.models.weights import load_weights


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4))


class _CreatesFile:
    """A payload whose unpickling creates a file: what a crafted checkpoint would do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _malicious_checkpoint(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pyth"
    torch.save({"model_state": _net(0).state_dict(), "payload": _CreatesFile(marker)}, path)
    assert not marker.exists()
    return path, marker


def test_malicious_reduce_is_refused_and_runs_nothing(tmp_path):
    path, marker = _malicious_checkpoint(tmp_path)
    with pytest.raises(UntrustedWeightsError) as info:
        load_weights(_net(1), path)
    message = str(info.value)
    assert not marker.exists()
    assert "open" in message  # names the offending global
    assert "--trust-weights" in message and "trust_weights=True" in message


def test_legacy_format_malicious_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil_legacy.pth"
    torch.save({"state_dict": _net(0).state_dict(), "x": _CreatesFile(marker)}, path,
               _use_new_zipfile_serialization=False)
    with pytest.raises(UntrustedWeightsError, match="trust"):
        load_weights(_net(1), path)
    assert not marker.exists()


def test_plain_pickle_with_exec_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "raw.pkl"
    payload = {"model": _CreatesFile(marker)}
    path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(WeightsError):
        load_weights(_net(1), path)
    assert not marker.exists()


def test_official_shaped_checkpoint_with_allowed_globals_loads(tmp_path):
    # What pytorchvideo / SlowFast / TimeSformer training scripts store besides the weights.
    source = _net(2)
    path = tmp_path / "SLOW_8x8_R50.pyth"
    torch.save({
        "epoch": np.int64(196),
        "best_acc": np.float64(0.74),
        "lr_history": np.linspace(0.1, 0.0, 5, dtype=np.float32),
        "args": argparse.Namespace(arch="slow_r50", lr=0.1),
        "cfg": "TRAIN:\n  BATCH_SIZE: 64\n",
        "model_state": source.state_dict(),
    }, path)
    target = _net(3)
    load_weights(target, path)
    for a, b in zip(source.state_dict().values(), target.state_dict().values()):
        assert torch.equal(a, b)


def test_trust_weights_opt_in_loads_everything(tmp_path):
    path, marker = _malicious_checkpoint(tmp_path)
    target = _net(6)
    load_weights(target, path, trust_weights=True)
    assert marker.exists()  # the opt-in really unpickles (and so runs) what the file holds
    for a, b in zip(_net(0).state_dict().values(), target.state_dict().values()):
        assert torch.equal(a, b)


def test_cli_refuses_untrusted_checkpoint_in_one_line(tmp_path, capsys):
    from leaps.models import build_model

    marker = tmp_path / "pwned"
    path = tmp_path / "toy.pth"
    state = build_model("toy_r3d", num_classes=10).state_dict()
    torch.save({"state_dict": state, "x": _CreatesFile(marker)}, path)
    status = main(["invert", "--model", "toy_r3d", "--weights", str(path), "--num-classes", "10", "--target", "0",
                   "--out", str(tmp_path / "out"), "--steps", "1", "--size", "16", "--no-priming", "--quiet"])
    err = capsys.readouterr().err
    assert status == 2
    assert not marker.exists()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("leaps: error:") and "--trust-weights" in lines[0]


def test_a_directory_is_not_a_checkpoint(tmp_path):
    with pytest.raises(WeightsError, match="is a directory"):
        load_weights(_net(0), tmp_path)


def test_allow_list_is_scoped_to_leaps_loads(tmp_path):
    # After a leaps load, a plain torch.load elsewhere is as strict as torch makes it.
    path = tmp_path / "ns.pt"
    torch.save({"args": argparse.Namespace(a=1), "weight": torch.zeros(1, 1)}, path)
    load_weights(nn.Linear(1, 1, bias=False), path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def test_pytorchvideo_pretrained_goes_through_the_safe_loader(tmp_path, monkeypatch):
    # pytorchvideo's own pretrained=True unpickles the download fully; leaps downloads the file
    # itself and reads it like any local checkpoint. The download is replaced by a local file.
    pytest.importorskip("pytorchvideo")
    from leaps.models import build_model, pytorchvideo_zoo

    source = build_model("x3d_xs", num_classes=400)
    good = tmp_path / "X3D_XS.pyth"
    torch.save({"model_state": source.state_dict(), "epoch": np.int64(300)}, good)
    monkeypatch.setattr(pytorchvideo_zoo, "_download", lambda url: str(good))
    loaded = build_model("x3d_xs", pretrained=True)
    for a, b in zip(source.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pyth"
    torch.save({"model_state": source.state_dict(), "x": _CreatesFile(marker)}, evil)
    monkeypatch.setattr(pytorchvideo_zoo, "_download", lambda url: str(evil))
    with pytest.raises(UntrustedWeightsError):
        build_model("x3d_xs", pretrained=True)
    assert not marker.exists()
    build_model("x3d_xs", pretrained=True, trust_weights=True)  # the opt-in reaches the hub's loader
    assert marker.exists()
