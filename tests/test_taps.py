"""Feature taps capture norm-layer inputs by reference and always remove their hooks."""

import pytest
import torch
from torch import nn

from leaps.errors import LeapsError, VerifierError
from leaps.taps import BatchNormTaps, FeatureTaps, norm_layers


def hook_count(model):
    return sum(len(m._forward_pre_hooks) for m in model.modules())


def test_taps_capture_inputs_in_order(tiny_net):
    x = torch.randn(2, 3, 4, 16, 16)
    with FeatureTaps(tiny_net) as taps:
        tiny_net(x)
        acts = taps.activations()
        assert taps.names() == ["features.1", "features.4", "features.7"]
        assert [tuple(a.shape) for a in acts] == [(2, 8, 4, 16, 16), (2, 16, 4, 8, 8), (2, 16, 4, 8, 8)]
        # the first BN sees the first conv's output, by reference
        assert torch.allclose(acts[0], tiny_net.features[0](x))
        means = taps.channel_means()
        assert torch.allclose(means[1], acts[1].mean(dim=(2, 3, 4)))
        name, module, z = taps.last()
        assert name == "features.7" and isinstance(module, nn.BatchNorm3d) and z is acts[2]
    assert hook_count(tiny_net) == 0


def test_taps_removed_on_error(tiny_net):
    with pytest.raises(RuntimeError):
        with FeatureTaps(tiny_net):
            tiny_net(torch.randn(2, 5, 4, 16, 16))  # wrong channel count
    assert hook_count(tiny_net) == 0


def test_taps_layernorm_channels_last(tiny_token_net):
    with FeatureTaps(tiny_token_net) as taps:
        tiny_token_net(torch.randn(1, 3, 4, 16, 16))
        assert taps.channel_dims() == [-1, -1]
        z = taps.activations()[1]
        assert z.shape == (1, 1 + 2 * 4 * 4, 12)
        assert torch.allclose(taps.channel_means()[1], z.mean(1))


def test_taps_clear_and_nothing_ran(tiny_net):
    with FeatureTaps(tiny_net) as taps:
        with pytest.raises(LeapsError, match="no tapped layer ran"):
            taps.activations()
        tiny_net(torch.randn(1, 3, 2, 8, 8))
        taps.clear()
        with pytest.raises(LeapsError):
            taps.activations()


def test_batchnorm_taps_running_stats(tiny_verifier):
    with BatchNormTaps(tiny_verifier) as taps:
        tiny_verifier(torch.randn(2, 3, 4, 16, 16))
        means, variances = taps.running_stats()
        bns = [m for _, m in norm_layers(tiny_verifier) if isinstance(m, nn.BatchNorm3d)]
        assert all(a is b.running_mean for a, b in zip(means, bns))
        assert all(a is b.running_var for a, b in zip(variances, bns))


def test_verifier_without_batchnorm(tiny_token_net):
    with pytest.raises(VerifierError, match="no BatchNorm"):
        BatchNormTaps(tiny_token_net)


def test_model_without_norm_layers():
    with pytest.raises(LeapsError, match="no normalisation layers"):
        FeatureTaps(nn.Sequential(nn.Conv3d(3, 4, 1)))
