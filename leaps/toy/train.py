"""Train the toy networks on the toy world, reproducibly, and ship their checkpoints.

    python -m leaps.toy.train [--out leaps/data] [--nets r3d x3d r2plus1d] [--epochs 3]
                              [--train-clips 8000] [--seed 0] [--adv-eps 0]
    python -m leaps.toy.train --nets judge_2d judge_attn     # the judges (leaps.toy.judges)

Each network sees a fixed training set of ``--train-clips`` clips (split 'train', re-rendered on
the fly every epoch: rendering costs ~1 ms a clip, far less than a training step), with random
horizontal flips (every toy class is mirror-invariant). AdamW with linear warm-up and cosine
decay. After training the BatchNorm running statistics are re-estimated as exact averages
over training clips (momentum=None): LEAPS' R_feat matches them, so they should be precise.
Held-out top-1 is measured on the 'test' split, which training never touches, and saved in the
checkpoint's metadata together with the training wall time.

``--adv-eps E`` (> 0) trains adversarially ("fast" FGSM with a random start, Wong et al. 2020):
every batch is replaced by its L-inf perturbation of radius ``E`` in *pixel* units (pixels in
[0, 1], i.e. before the TOY_MEAN / TOY_STD normalisation): a uniform start in [-E, E], one
signed-gradient step of ``1.25 E``, projection onto the E-ball and clamping of the pixels to
[0, 1]. The default 0 trains exactly as before (same random streams, bit-identical weights).
Robust classifiers have "perceptually aligned" input gradients (Santurkar et al. 2019), which
is what an inversion follows.

The judges (``--nets judge_2d judge_attn``) are trained by :mod:`leaps.toy.judge_train` with
their own recipe, seed ranges and augmentation; ``--epochs``, ``--train-clips``, ``--batch``,
``--lr`` and ``--seed`` override that recipe only when given.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from leaps.toy.checkpoint import checkpoint_meta, checkpoint_name, save_checkpoint
from leaps.toy.data import CLIP_FRAMES, CLIP_SIZE, TOY_CLASSES, TOY_MEAN, TOY_STD, ToyVideos
from leaps.toy.judge_train import JUDGE_SEED, train_judge
from leaps.toy.judges import JUDGE_NETS
from leaps.toy.nets import TOY_NETS, build_toy_net

#: The toy networks' recipe: what ``--epochs`` etc. default to for them (the judges have their own).
TOY_RECIPE = dict(epochs=3, train_clips=8000, batch=32, lr=3e-3, seed=0)


def set_determinism(seed: int, threads: int = 2) -> None:
    """Seed torch, pin the thread count and ask for deterministic kernels."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _batches(n: int, batch: int, gen: torch.Generator):
    """A fresh random order of ``range(n)`` cut into batches (drops no item)."""
    order = torch.randperm(n, generator=gen).tolist()
    return [order[i:i + batch] for i in range(0, n, batch)]


def _lr_at(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * base * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def fgsm_perturb(model: nn.Module, videos: torch.Tensor, labels: torch.Tensor, eps: float,
                 gen: torch.Generator, step: float | None = None, steps: int = 1) -> torch.Tensor:
    """Fast FGSM with a random start (Wong et al. 2020) in pixel space, on normalised ``videos``.

    ``eps`` and ``step`` (default ``1.25 eps``) are in pixel units ([0, 1]); the perturbed
    pixels are clamped to [0, 1] and returned normalised again (TOY_MEAN / TOY_STD), detached.
    ``steps`` > 1 is PGD from the same random start: that many signed-gradient steps of ``step``
    (default ``2.5 eps / steps``, Madry et al. 2018), each projected onto the eps-ball. The
    model's parameter gradients are left untouched (only the input gradient is taken).
    """
    if step is None:
        step = 1.25 * eps if steps == 1 else 2.5 * eps / steps
    mean = torch.tensor(TOY_MEAN, device=videos.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(TOY_STD, device=videos.device).view(1, 3, 1, 1, 1)
    pixels = videos * std + mean
    delta = ((torch.rand(pixels.shape, generator=gen) * 2 - 1) * eps).to(pixels.device)
    delta = (pixels + delta).clamp(0, 1) - pixels
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model((pixels + delta - mean) / std), labels)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + step * grad.sign()).clamp(-eps, eps)
        if steps > 1:  # PGD's next gradient is taken at valid pixels; FGSM's last clamp below suffices
            delta = (pixels + delta).clamp(0, 1) - pixels
    return ((pixels + delta).clamp(0, 1) - mean) / std


def adv_radius(batch: int, eps: float, warmup_batches: float) -> float:
    """The adversarial radius at training batch ``batch`` (1-based): ``eps``, ramped up linearly
    over the first ``warmup_batches`` (none when 0)."""
    return eps * min(1.0, batch / warmup_batches) if warmup_batches > 0 else eps


class OnDevice:
    """A :class:`ToyVideos` whose batches land on ``device`` (clips are rendered on the CPU)."""

    def __init__(self, data: ToyVideos, device: torch.device):
        self.data, self.device = data, torch.device(device)

    def __len__(self) -> int:
        return len(self.data)

    def batch(self, indices):
        videos, labels = self.data.batch(indices)
        return videos.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)


def evaluate(model: nn.Module, data: ToyVideos, batch: int = 100, clips: int | None = None,
             attack=None) -> float:
    """Top-1 accuracy of ``model`` (put in eval mode) on the first ``clips`` items of ``data``
    (all by default); ``attack(videos, labels) -> videos`` perturbs each batch first."""
    model.eval()
    n = len(data) if clips is None else clips
    correct = 0
    for start in range(0, n, batch):
        videos, labels = data.batch(range(start, min(start + batch, n)))
        if attack is not None:
            videos = attack(videos, labels)  # takes an input gradient: outside no_grad
        with torch.no_grad():
            correct += int((model(videos).argmax(1) == labels).sum())
    return correct / n


def evaluate_fgsm(model: nn.Module, data: ToyVideos, eps: float, clips: int = 200, batch: int = 50,
                  seed: int = 0, steps: int = 1) -> float:
    """Top-1 of ``model`` (eval mode) on the first ``clips`` items of ``data`` under FGSM-RS ``eps``
    (PGD with ``steps`` > 1)."""
    gen = torch.Generator().manual_seed(seed + 3)
    return evaluate(model, data, batch, clips,
                    attack=lambda videos, labels: fgsm_perturb(model, videos, labels, eps, gen, steps=steps))


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data: ToyVideos, batch: int = 50) -> None:
    """Replace every BatchNorm's running mean/var by exact averages over ``data`` (train mode).

    momentum=None makes BatchNorm keep a cumulative average instead of an exponential one;
    the original momenta are restored afterwards.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for start in range(0, len(data), batch):
        videos, _ = data.batch(range(start, min(start + batch, len(data))))
        model(videos)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


def _log(line: str) -> None:
    print(line, flush=True)  # a line per epoch minutes apart: seen at once also when stdout is a file


def run_epochs(model: nn.Module, train: ToyVideos, val: ToyVideos, optimiser, *, name: str, epochs: int, batch: int,
               lr: float, order_gen: torch.Generator, prepare, loss_fn, log=_log) -> None:
    """The training loop shared by the toy networks and the judges: ``epochs`` shuffled passes over
    ``train``, each batch through ``prepare(videos, labels)`` (augmentation), AdamW with linear warm-up
    and cosine decay, a line per epoch with the validation top-1."""
    from tqdm.auto import tqdm

    steps_per_epoch = math.ceil(len(train) / batch)
    total = epochs * steps_per_epoch
    start, step = time.perf_counter(), 0
    # on a terminal only (disable=None): an epoch of adversarial training is minutes without a line
    bar = tqdm(total=total, desc=name, unit="step", disable=None, leave=False)
    for epoch in range(epochs):
        model.train()
        seen = correct = loss_sum = 0
        for indices in _batches(len(train), batch, order_gen):
            videos, labels = prepare(*train.batch(indices))
            for group in optimiser.param_groups:
                group["lr"] = _lr_at(step, total, lr, warmup=max(1, total // 20))
            logits = model(videos)
            loss = loss_fn(logits, labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            step += 1
            seen += len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            loss_sum += float(loss.detach()) * len(labels)
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / seen:.3f}", refresh=False)
        log(f"[{name}] epoch {epoch + 1}/{epochs}: loss {loss_sum / seen:.3f}, "
            f"train top-1 {correct / seen:.3f}, val top-1 {evaluate(model, val):.3f} "
            f"({time.perf_counter() - start:.0f} s)")
    bar.close()


def train_net(name: str, *, epochs: int = 3, train_clips: int = 8000, batch: int = 32,
              lr: float = 3e-3, weight_decay: float = 5e-4, seed: int = 0, bn_clips: int = 2000,
              test_clips: int = 1000, val_clips: int = 500, adv_eps: float = 0.0, adv_steps: int = 1,
              adv_warmup: float = 0.0, init=None, device="cpu", log=_log) -> tuple[nn.Module, dict]:
    """Train toy network ``name``; returns ``(model in eval mode, on the CPU, metadata)``.

    ``adv_eps`` > 0: adversarial training (see :func:`fgsm_perturb`), radius in pixel units;
    ``adv_steps`` > 1 makes the attack PGD; ``adv_warmup`` (epochs) ramps the radius linearly from
    0 up to ``adv_eps`` over that many first epochs (from scratch at 16/255 the network otherwise
    stays at chance: measured, 7.7 % train top-1 after one epoch of FGSM). ``device``: where the
    network trains (clips are rendered on the CPU either way; a GPU gives other weights than the
    CPU, not bit-identical).
    """
    set_determinism(seed)
    device = torch.device(device)
    model = build_toy_net(name, len(TOY_CLASSES))
    init_meta = None
    if init is not None:
        from leaps.toy.checkpoint import read_checkpoint

        state, init_meta = read_checkpoint(init)
        if init_meta.get("net") != name:
            raise SystemExit(f"--init {init}: a checkpoint of {init_meta.get('net')!r}, not of {name!r}")
        model.load_state_dict(state)
    model = model.to(device)
    train = OnDevice(ToyVideos("train", train_clips, frames=CLIP_FRAMES, size=CLIP_SIZE, seed=seed), device)
    val = OnDevice(ToyVideos("val", val_clips, frames=CLIP_FRAMES, size=CLIP_SIZE, seed=seed), device)
    order_gen = torch.Generator().manual_seed(seed)
    flip_gen = torch.Generator().manual_seed(seed + 1)
    adv_gen = torch.Generator().manual_seed(seed + 2)  # only drawn from when adv_eps > 0
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(train_clips / batch)
    params = sum(p.numel() for p in model.parameters())
    log(f"[{name}] {type(model).__name__}: {params:,} parameters, {epochs} epochs x "
        f"{steps_per_epoch} steps of {batch} clips"
        + (f", adversarial ({'FGSM + random start' if adv_steps == 1 else f'PGD-{adv_steps}'}, eps {adv_eps:g} = "
           f"{adv_eps * 255:.3g}/255)" if adv_eps > 0 else "") + f", on {device}")

    ramp_steps = adv_warmup * steps_per_epoch
    seen_batches = [0]

    def prepare(videos, labels):
        seen_batches[0] += 1
        flip = (torch.rand(len(labels), generator=flip_gen) < 0.5).to(videos.device)
        videos[flip] = videos[flip].flip(-1)  # mirror-invariant classes: free augmentation
        if adv_eps > 0:
            eps = adv_radius(seen_batches[0], adv_eps, ramp_steps)
            videos = fgsm_perturb(model, videos, labels, eps, adv_gen, steps=adv_steps)
        return videos, labels

    start = time.perf_counter()
    run_epochs(model, train, val, optimiser, name=name, epochs=epochs, batch=batch, lr=lr, order_gen=order_gen,
               prepare=prepare, loss_fn=F.cross_entropy, log=log)

    # BN statistics from fresh training-distribution clips (another seed of the train split).
    bn_data = OnDevice(ToyVideos("train", bn_clips, frames=CLIP_FRAMES, size=CLIP_SIZE, seed=seed + 1000), device)
    recalibrate_batchnorm(model, bn_data)
    train_seconds = time.perf_counter() - start
    test = OnDevice(ToyVideos("test", test_clips, frames=CLIP_FRAMES, size=CLIP_SIZE), device)
    test_acc = evaluate(model, test)
    log(f"[{name}] held-out test top-1 {test_acc:.4f} on {test_clips} clips; "
        f"trained in {train_seconds:.0f} s")
    robust_acc = None
    if adv_eps > 0:  # FGSM-RS accuracy on the first 200 test clips (a cheap sanity check of robustness)
        robust_acc = evaluate_fgsm(model, test, adv_eps, clips=min(200, test_clips), seed=seed, steps=adv_steps)
        attack = "FGSM-RS" if adv_steps == 1 else f"PGD-{adv_steps}"
        log(f"[{name}] held-out top-1 under {attack} eps {adv_eps:g}: {robust_acc:.4f} on {min(200, test_clips)} clips")
    fields = {
        "test_accuracy": test_acc,
        "test_clips": test_clips,
        "val_accuracy": evaluate(model, val),
        "seed": seed,
        "epochs": epochs,
        "train_clips": train_clips,
        "batch": batch,
        "lr": lr,
        **({"adv_eps": adv_eps, "adv_attack": "fgsm-rs" if adv_steps == 1 else f"pgd-{adv_steps}",
            **({"adv_warmup_epochs": adv_warmup} if adv_warmup else {}),
            **({"init": Path(init).name, "init_adv_eps": init_meta.get("adv_eps", 0.0),
                "init_epochs": init_meta.get("epochs")} if init is not None else {}),
            "robust_test_accuracy": robust_acc}
           if adv_eps > 0 else {}),
    }
    meta = checkpoint_meta(name, model, CLIP_FRAMES, CLIP_SIZE, fields, train_seconds, device=device.type)
    return model.cpu().eval(), meta


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leaps.toy.train", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data",
                        help="folder for toy_<net>.pt, toy_<net>_robust.pt with --adv-eps "
                             "(default: the package's leaps/data)")
    parser.add_argument("--nets", nargs="+", default=list(TOY_NETS), choices=[*TOY_NETS, *JUDGE_NETS],
                        help="networks to train (default: the toy networks; judge_2d, judge_attn: the judges)")
    recipe = "the judges: leaps.toy.judge_train.JUDGE_RECIPE"
    parser.add_argument("--epochs", type=int, help=f"default {TOY_RECIPE['epochs']} ({recipe})")
    parser.add_argument("--train-clips", type=int, help=f"default {TOY_RECIPE['train_clips']} ({recipe})")
    parser.add_argument("--batch", type=int, help=f"default {TOY_RECIPE['batch']} ({recipe})")
    parser.add_argument("--lr", type=float, help=f"default {TOY_RECIPE['lr']:g} ({recipe})")
    parser.add_argument("--seed", type=int, help=f"default {TOY_RECIPE['seed']} (the judges: {JUDGE_SEED})")
    parser.add_argument("--test-clips", type=int, default=1000)
    parser.add_argument("--val-clips", type=int, default=500, help="validation clips scored after every epoch")
    parser.add_argument("--bn-clips", type=int, default=2000,
                        help="fresh training clips the BatchNorm statistics are re-estimated on after training")
    parser.add_argument("--adv-eps", type=float, default=0.0,
                        help="adversarial training: L-inf radius in pixel units [0, 1] (e.g. 0.0157 = 4/255); "
                             "fast FGSM with random start; 0 (default) = standard training")
    parser.add_argument("--adv-steps", type=int, default=1,
                        help="attack steps of the adversarial training: 1 (default) fast FGSM, more: PGD")
    parser.add_argument("--adv-warmup", type=float, default=0.0,
                        help="epochs over which the adversarial radius ramps up linearly from 0 (default 0: none)")
    parser.add_argument("--init", type=Path, default=None,
                        help="a toy checkpoint of the same network to fine-tune from (e.g. to a larger --adv-eps)")
    parser.add_argument("--device", default="cpu",
                        help="where the toy networks train (default cpu; cuda gives other weights than the CPU)")
    parser.add_argument("--name-suffix", default="",
                        help="appended to the checkpoint's file name (toy_r3d_robust<suffix>.pt), for variants")
    args = parser.parse_args(argv)
    if args.adv_eps > 0 and any(name in JUDGE_NETS for name in args.nets):
        parser.error("--adv-eps trains the toy networks only, not the judges")
    given = {k: getattr(args, k) for k in TOY_RECIPE if getattr(args, k) is not None}

    overall = time.perf_counter()
    for name in args.nets:
        if name in JUDGE_NETS:  # their own recipe, seed ranges and augmentation
            model, meta = train_judge(name, test_clips=args.test_clips, **given)
        else:
            model, meta = train_net(name, test_clips=args.test_clips, val_clips=args.val_clips, bn_clips=args.bn_clips,
                                    adv_eps=args.adv_eps, adv_steps=args.adv_steps,
                                    adv_warmup=args.adv_warmup, init=args.init, device=args.device,
                                    **(TOY_RECIPE | given))
        file = checkpoint_name(name, robust=args.adv_eps > 0).replace(".pt", f"{args.name_suffix}.pt")
        path = save_checkpoint(model, meta, args.out / file)
        print(f"[{name}] saved {path} ({path.stat().st_size / 1e6:.2f} MB)")
    print(f"all done in {time.perf_counter() - overall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
