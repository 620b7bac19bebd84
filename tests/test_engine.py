"""Engine options of the inversion loop: each follows the eager fp32 path's loss trajectory."""

import pytest
import torch
from conftest import NaNAfter

import leaps
from leaps import engine
from leaps.errors import LeapsError, NonFiniteLossError
from leaps.inversion import prepare

GPU = torch.cuda.is_available()
RUN = dict(steps=5, frames=4, size=16, progress=False, lr=0.05)


def stimuli():
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, 4, 16, 16, generator=g) for _ in range(2)]


def run(net, verifier, **options):
    return leaps.invert(net, [1, 4], stimuli(), verifier=verifier, **{**RUN, **options})


def assert_same_trajectory(a, b, rel, abs_=1e-6):
    assert set(a.history) == set(b.history)
    for key in a.history:
        assert b.history[key] == pytest.approx(a.history[key], rel=rel, abs=abs_), key


# --------------------------------------------------------------------------------------------
# the step's pieces
# --------------------------------------------------------------------------------------------

def test_augment_is_roll_then_flip_with_the_seeded_draws():
    import random

    cfg = leaps.InversionConfig(steps=6, size=9, jitter=3, seed=5)
    schedule = engine.Schedule.build(cfg, torch.device("cpu"))
    x = torch.randn(2, 3, 2, 9, 9)
    rng = random.Random(5)
    for s in range(6):
        dy, dx = rng.randint(-3, 3), rng.randint(-3, 3)
        want = torch.roll(x, shifts=(dy, dx), dims=(3, 4))
        if rng.random() < 0.5:
            want = torch.flip(want, dims=(4,))
        assert torch.equal(engine.augment(x, schedule.rows[s], schedule.cols[s]), want)


def test_loss_scaler_unscales_detects_overflow_and_backs_off():
    scaler = engine.LossScaler("cpu", init_scale=8.0, interval=2)
    grad = torch.tensor([8.0, 16.0])
    scaler.unscale(grad)
    assert torch.equal(grad, torch.tensor([1.0, 2.0])) and scaler.found_inf.item() == 0
    scaler.update()
    scaler.unscale(torch.tensor([1.0]))
    scaler.update()
    assert scaler.value.item() == 16.0  # grew after `interval` clean steps
    scaler.unscale(torch.tensor([float("inf"), 1.0]))
    assert scaler.found_inf.item() == 1
    scaler.update()
    assert scaler.value.item() == 8.0


def test_stage_modules_of_the_zoo():
    from leaps.models import build_model

    assert [type(m).__name__ for m in engine.stage_modules(build_model("slow_r50"))] == \
        ["ResNetBasicStem"] + ["ResStage"] * 4
    stages = engine.stage_modules(build_model("r3d_18"))
    assert type(stages[0]).__name__ == "BasicStem" and len(stages) == 9


def test_checkpointing_restores_the_modules(tiny_net):
    stages = engine.stage_modules(tiny_net)
    assert stages
    with engine.checkpointed([tiny_net]):
        assert all("forward" in s.__dict__ for s in stages)
    assert all("forward" not in s.__dict__ for s in stages)


# --------------------------------------------------------------------------------------------
# each option against the eager fp32 path
# --------------------------------------------------------------------------------------------

def test_sync_every_defers_reads_without_changing_the_run(tiny_net, tiny_verifier):
    eager = run(tiny_net, tiny_verifier)
    inv = prepare(tiny_net, [1, 4], stimuli(), verifier=tiny_verifier, sync_every=3, **RUN)
    with inv:
        returned = [inv.step() for _ in range(5)]
    assert [v is None for v in returned] == [True, True, False, True, False]  # read at 3 and at the end
    deferred = inv.result()
    assert deferred.history == eager.history
    assert torch.equal(deferred.video, eager.video)


def test_checkpoint_follows_eager(tiny_net, tiny_verifier):
    eager = run(tiny_net, tiny_verifier)
    ckpt = run(tiny_net, tiny_verifier, checkpoint=True)
    assert_same_trajectory(eager, ckpt, rel=1e-5)
    torch.testing.assert_close(ckpt.video, eager.video, rtol=1e-5, atol=1e-5)
    assert sum(len(m._forward_pre_hooks) for m in tiny_net.modules()) == 0


def test_channels_last_follows_eager(tiny_net, tiny_verifier):
    eager = run(tiny_net, tiny_verifier)
    cl = run(tiny_net, tiny_verifier, channels_last=True)
    assert_same_trajectory(eager, cl, rel=1e-4)
    torch.testing.assert_close(cl.video, eager.video, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_follows_eager_loosely(tiny_net, tiny_verifier):
    eager = run(tiny_net, tiny_verifier)
    bf16 = run(tiny_net, tiny_verifier, amp="bf16")
    assert_same_trajectory(eager, bf16, rel=0.1, abs_=0.02)
    assert (bf16.video - eager.video).abs().mean() < 0.02


@pytest.mark.parametrize("net", ["tiny_net", "tiny_token_net"])
def test_compile_follows_eager(net, request, tiny_verifier):
    model = request.getfixturevalue(net)
    extra = dict(token_grid=(2, 16)) if net == "tiny_token_net" else {}
    torch._dynamo.reset()
    eager = run(model, tiny_verifier, **extra)
    compiled = run(model, tiny_verifier, compile="aot_eager", **extra)
    assert_same_trajectory(eager, compiled, rel=1e-5)
    torch.testing.assert_close(compiled.video, eager.video, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_compile_with_inductor_follows_eager(tiny_net, tiny_verifier):
    torch._dynamo.reset()
    eager = run(tiny_net, tiny_verifier)
    compiled = run(tiny_net, tiny_verifier, compile=True)
    assert_same_trajectory(eager, compiled, rel=1e-4)


def test_fast_on_cpu_follows_eager(tiny_net, tiny_verifier):
    eager = run(tiny_net, tiny_verifier)
    fast = run(tiny_net, tiny_verifier, fast=True)
    assert fast.config.sync_every == engine.FAST_SYNC_EVERY and not fast.config.cuda_graph
    assert fast.history == eager.history


@pytest.mark.parametrize("amp, resolved", [(None, "bf16"), ("fp32", None), ("fp16", "fp16"), ("bf16", "bf16")])
def test_fast_on_cuda_adds_graph_and_bf16_unless_amp_is_named(amp, resolved):
    # Resolution only (no GPU needed): what fast=True turns on for a CUDA device.
    cfg = engine.resolve_engine(leaps.InversionConfig(fast=True, amp=amp), torch.device("cuda"))
    assert cfg.cuda_graph and cfg.amp == resolved and cfg.sync_every == engine.FAST_SYNC_EVERY


def test_amp_fp32_is_plain_precision(tiny_net, tiny_verifier):
    assert engine.resolve_engine(leaps.InversionConfig(amp="fp32"), torch.device("cpu")).amp is None
    assert run(tiny_net, tiny_verifier, amp="fp32").history == run(tiny_net, tiny_verifier).history


def test_engine_options_that_cannot_run_here_raise(tiny_net):
    if not GPU:
        with pytest.raises(LeapsError, match="cuda_graph=True needs"):
            run(tiny_net, None, cuda_graph=True)
        with pytest.raises(LeapsError, match="fp16"):
            run(tiny_net, None, amp="fp16")
    with pytest.raises(LeapsError, match="amp"):
        run(tiny_net, None, amp="fp8")


def test_non_finite_loss_found_at_a_deferred_read(tiny_net):
    # calls 1-2: stimulus and class-count probe; call 3 + s is step s. NaN from step 5 on.
    with pytest.raises(NonFiniteLossError) as info:
        leaps.invert(NaNAfter(tiny_net, 7), 0, stimuli()[0], steps=12, frames=4, size=16, progress=False, sync_every=4)
    err = info.value
    assert err.step == 5 and len(err.history["loss"]) == 5
    assert torch.isfinite(err.last_finite).all()


def test_batched_synthesis_one_stimulus_per_target(tiny_net, tiny_verifier):
    together = run(tiny_net, tiny_verifier)
    assert together.video.shape[0] == 2 and together.targets == [1, 4]


# --------------------------------------------------------------------------------------------
# GPU: CUDA graphs, fp16 loss scaling, fused backends in the loop
# --------------------------------------------------------------------------------------------

def _to_cuda(net):
    return net.cuda() if net is not None else None


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs CUDA")
@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_cuda_graph_follows_eager_on_gpu(tiny_net, tiny_verifier, backend):
    net, ver = _to_cuda(tiny_net), _to_cuda(tiny_verifier)
    opts = dict(steps=8, backend=backend)
    eager = run(net, ver, **opts)
    graph = run(net, ver, cuda_graph=True, **opts)
    assert_same_trajectory(eager, graph, rel=1e-4, abs_=1e-5)
    torch.testing.assert_close(graph.video, eager.video, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs CUDA")
def test_fp16_with_loss_scaling_on_gpu(tiny_net, tiny_verifier):
    net, ver = _to_cuda(tiny_net), _to_cuda(tiny_verifier)
    eager = run(net, ver)
    half = run(net, ver, amp="fp16")
    assert_same_trajectory(eager, half, rel=0.05, abs_=0.02)
    graphed = run(net, ver, amp="fp16", cuda_graph=True, steps=8)
    assert all(torch.isfinite(torch.tensor(graphed.history["loss"])))


def test_inference_is_the_first_step_without_augmentation(tiny_net, tiny_verifier):
    inv = prepare(tiny_net, [1, 4], stimuli(), verifier=tiny_verifier, jitter=0, flip=False, **RUN)
    with inv:
        before = inv.inference()
        assert inv.steps_done == 0
        first = inv.step()
    assert before[0].item() == pytest.approx(first, rel=1e-6)
    assert len(before) == 1 + len(inv.term_names)
