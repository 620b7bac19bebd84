"""Training the judges (:mod:`leaps.toy.judges`) apart from the networks LEAPS inverts.

Run through ``python -m leaps.toy.train --nets judge_2d judge_attn``. What differs from the
toy networks' recipe, so that the judges do not inherit their blind spots:

* data: the ``judge_train`` seed range (validation ``judge_val``, held-out ``judge_test``), which
  no other network, stimulus or benchmark uses;
* augmentation, in pixel space: left-right flip; time reversal with the label it implies
  ('moving up' <-> 'moving down', 'growing' <-> 'shrinking'; rotating and blinking stay);
  a shift of up to 4 px (the same for all frames); contrast x 0.8-1.2 and brightness +-0.1;
  extra Gaussian pixel noise of sigma 0-0.04;
* optimiser: AdamW with weight decay 0.05 and its own seed (:data:`JUDGE_SEED`), label
  smoothing 0.05; no BatchNorm, so no statistics to re-estimate.

Deterministic: fixed seeds, one thread (:data:`JUDGE_THREADS`), deterministic kernels.
"""

from __future__ import annotations

import math
import time
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from leaps.toy.checkpoint import checkpoint_meta
from leaps.toy.data import CLIP_FRAMES, CLIP_SIZE, TOY_CLASSES, TOY_MEAN, TOY_STD, ToyVideos
from leaps.toy.judges import JUDGE_NETS
from leaps.toy.nets import build_from
from leaps.video import normalize

#: Seed of the judges' initialisation, batch order and augmentation (the toy networks use 0).
JUDGE_SEED = 7
#: Per judge: the training recipe ``python -m leaps.toy.train`` uses unless told otherwise.
JUDGE_RECIPE = {
    "judge_2d": dict(epochs=6, train_clips=10000, batch=32, lr=2e-3),
    "judge_attn": dict(epochs=5, train_clips=6000, batch=32, lr=2e-3),
}
#: The judges train on one thread: bit-reproducible for a fixed thread count like the toy networks,
#: and much faster than two threads on a CPU shared with other jobs (every sync waits for both).
JUDGE_THREADS = 1


def time_reversed_labels() -> torch.Tensor:
    """Label of each class played backwards: up <-> down and growing <-> shrinking swap."""
    swap = {"moving up": "moving down", "moving down": "moving up", "growing": "shrinking", "shrinking": "growing"}
    out = []
    for name in TOY_CLASSES:
        shape, motion = name.split(" ", 1)
        out.append(TOY_CLASSES.index(f"{shape} {swap.get(motion, motion)}"))
    return torch.tensor(out)


def augment(videos: torch.Tensor, labels: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The judges' augmentation of pixel videos ``N x 3 x T x S x S`` in [0, 1] (see the module doc)."""
    n = len(videos)
    videos, labels = videos.clone(), labels.clone()
    flip = torch.rand(n, generator=gen) < 0.5
    videos[flip] = videos[flip].flip(-1)
    reverse = torch.rand(n, generator=gen) < 0.5
    videos[reverse] = videos[reverse].flip(2)
    labels[reverse] = time_reversed_labels()[labels[reverse]]
    shifts = torch.randint(-4, 5, (n, 2), generator=gen)
    for i in range(n):
        videos[i] = videos[i].roll((int(shifts[i, 0]), int(shifts[i, 1])), dims=(-2, -1))
    contrast = 0.8 + 0.4 * torch.rand(n, 1, 1, 1, 1, generator=gen)
    brightness = 0.2 * torch.rand(n, 1, 1, 1, 1, generator=gen) - 0.1
    sigma = 0.04 * torch.rand(n, 1, 1, 1, 1, generator=gen)
    noise = torch.randn(videos.shape, generator=gen)
    videos = ((videos - 0.5) * contrast + 0.5 + brightness + sigma * noise).clamp_(0, 1)
    return videos, labels


def build_judge(name: str, num_classes: int = 10) -> nn.Module:
    """A randomly initialised judge ``name`` (a key of :data:`leaps.toy.judges.JUDGE_NETS`)."""
    return build_from(JUDGE_NETS, name, num_classes, "judge")


def train_judge(name: str, *, epochs: int | None = None, train_clips: int | None = None, batch: int | None = None,
                lr: float | None = None, seed: int = JUDGE_SEED, weight_decay: float = 0.05,
                test_clips: int = 1000, val_clips: int = 500, log=None) -> tuple[nn.Module, dict]:
    """Train judge ``name`` (recipe :data:`JUDGE_RECIPE`, overridden by the arguments given);
    returns ``(model in eval mode, metadata)``."""
    from leaps.toy.train import evaluate, run_epochs, set_determinism

    recipe = JUDGE_RECIPE[name] | {k: v for k, v in dict(epochs=epochs, train_clips=train_clips, batch=batch,
                                                             lr=lr).items() if v is not None}
    epochs, train_clips, batch, lr = recipe["epochs"], recipe["train_clips"], recipe["batch"], recipe["lr"]
    set_determinism(seed, threads=JUDGE_THREADS)
    model = build_judge(name, len(TOY_CLASSES))
    train = ToyVideos("judge_train", train_clips, frames=CLIP_FRAMES, size=CLIP_SIZE, seed=seed, normalize=False)
    val = ToyVideos("judge_val", val_clips, frames=CLIP_FRAMES, size=CLIP_SIZE, seed=seed)
    order_gen = torch.Generator().manual_seed(seed)
    augment_gen = torch.Generator().manual_seed(seed + 1)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and not n.startswith("pos_")]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1 or n.startswith("pos_")]
    optimiser = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    steps_per_epoch = math.ceil(train_clips / batch)
    params = sum(p.numel() for p in model.parameters())
    log = log or partial(print, flush=True)
    log(f"[{name}] {type(model).__name__}: {params:,} parameters, {epochs} epochs x {steps_per_epoch} steps "
        f"of {batch} clips (judge split, seed {seed})")

    def prepare(videos, labels):
        videos, labels = augment(videos, labels, augment_gen)
        return normalize(videos, TOY_MEAN, TOY_STD), labels  # the toy networks' input

    start = time.perf_counter()
    run_epochs(model, train, val, optimiser, name=name, epochs=epochs, batch=batch, lr=lr, order_gen=order_gen,
               prepare=prepare, loss_fn=partial(F.cross_entropy, label_smoothing=0.05), log=log)

    train_seconds = time.perf_counter() - start
    test = ToyVideos("judge_test", test_clips, frames=CLIP_FRAMES, size=CLIP_SIZE)
    test_acc = evaluate(model, test)
    log(f"[{name}] held-out judge_test top-1 {test_acc:.4f} on {test_clips} clips; trained in {train_seconds:.0f} s")
    fields = {
        "judge": True,
        "splits": {"train": "judge_train", "val": "judge_val", "test": "judge_test"},
        "test_accuracy": test_acc,
        "test_clips": test_clips,
        "val_accuracy": evaluate(model, val),
        "seed": seed,
        "epochs": epochs,
        "train_clips": train_clips,
        "batch": batch,
        "lr": lr,
        "weight_decay": weight_decay,
        "augmentation": "flip, time reversal (labels swapped), shift 4 px, contrast/brightness, noise 0-0.04",
    }
    meta = checkpoint_meta(name, model, CLIP_FRAMES, CLIP_SIZE, fields, train_seconds)
    return model.eval(), meta
