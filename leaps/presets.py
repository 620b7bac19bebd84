"""Named presets: InversionConfig fields under a name, accepted wherever a preset file is.

    leaps.invert(model, target, stimulus, verifier, preset="toy-demo")
    leaps invert --model toy_r3d_robust --pretrained --preset toy-demo-frames ...

``toy-demo-frames`` is the recipe ``leaps demo`` runs on the 8 x 64^2 toy networks: ``toy-demo``
(below) with two priming options beyond the paper and the priming weights doubled:

* ``priming_per_frame``: eq. (1) on per-frame channel means, so frame t of x* is primed by frame t
  of the stimulus. Averaged over the clip, a turning bar and a still cross have the same means;
  per frame, the turn itself enters the prime;
* ``priming_mirror``: the paper's augmentation flips x* left-right at random each step, and per
  frame a flipped clockwise turn is an anticlockwise one, so each video is primed by the nearer of
  the stimulus and its mirror image;
* ``lambda`` 10 -> 3 (toy-demo's 5 -> 1.5 doubled): the per-frame prime is the stronger pull
  towards the stimulus's motion.

Chosen on seeds 0-4 against toy-demo, confirmed on seeds 5-9 (README, *Toy world*;
benchmarks/results/recipe_priming_frames.json): the 2D judge's top-1 rises from 89 % to 95 %
over seeds 0-9 (the rotating bar, toy-demo's usual miss, is recognised on 5 of 10 seeds instead
of 2); the attention judge is level (99 % -> 100 %). Per-frame priming without the mirror, the mirror
without per-frame priming, and per-frame priming at lambda 5 -> 1.5 or 20 -> 6 were not better.
Per-frame priming needs 5-D activations (3D CNNs) and refuses ``aug_time_shift`` and
``coarse_to_fine``.

``toy-demo`` was the demo's recipe before. It was chosen by the
independent judges (leaps.toy.judges, never in the objective), against the paper's recipe on
the same networks: measured on an H200 with ``fast=True`` over seeds 1-4, the paper's recipe at
2000 steps reaches judge top-1 53 % (2D CNN) / 65 % (attention); this preset has 65 % / 83 % at
100 steps and 65 % / 85 % at 200 (benchmarks/results/ttq_h200_fast.json; README, *Toy world*).
The objective keeps the form of eq. (4), CE + L_prim + r (R_coh + R_feat), plus the optional TV
prior; only the weights, the augmentation, the start and the resolution of x* change:

* ``init_scale`` 0.1: noise the networks ignore is never optimised away, so the default N(0, 1)
  start leaves speckle everywhere at 200 steps;
* ``r`` 1e-3: the toy verifier was trained on clips with pixel noise, and R_feat at the R50
  preset's 7.5e-3 pulls that noise into x* as speckle (at 3e-3 it is back). R_feat stays on;
* ``lambda`` 5 -> 1.5 (5x the model preset's 1 -> 0.3): priming gives one object on a
  stimulus-like background instead of a field of blobs;
* ``prior_tv`` 1.0: smooths what speckle is left (2.0 blurs the objects' inner structure);
* x* of 32^2 that the networks see upsampled (trilinear) to 64^2, jitter 2 px of it: straighter
  edges and stimulus-like colours. Write the result at 64^2 (``leaps.demo.at_demo_size``).

What did not help on this setup (docs/toy-world.md): a Fourier parameterisation, random scale /
rotation / time shift, coarse-to-fine, several stimuli per class, an ensemble with another toy
network (``extra_models``) and lambda 10 -> 3 moved the judges by no more than the seed spread;
an ensemble with a robust toy X3D lowered them. Later, paired video by video on 50-100 videos
(README, *Recipes scored by the judges*): a robust verifier, the TV prior in space only
(``prior_tv_time=0``) and the best of a 32-trial TPE search over seven of these weights
(``benchmarks.recipe_search``) were level with this preset; a robust R(2+1)D inverted instead was
far below. Dropping R_coh or R_feat (or both) was level too; priming 40 % of the layers, a
temporal shift, a 4x temporal TV weight and ``param="rigid"`` were worse, and the robust R3D
trained two more epochs at 32/255 was level (benchmarks/results/recipe_ablations.json).
"""

from __future__ import annotations

#: name -> InversionConfig fields.
NAMED_PRESETS: dict[str, dict] = {
    "toy-demo": dict(init_scale=0.1, r=1e-3, lambda_first=5.0, lambda_last=1.5, prior_tv=1.0, size=32,
                     model_input=(8, 64), verifier_input=(8, 64), jitter=2),
}
# toy-demo primed frame by frame, by the nearer of the stimulus and its mirror image, with the priming
# weights doubled (the per-frame prime carries the stimulus's motion; see the docstring above)
NAMED_PRESETS["toy-demo-frames"] = dict(NAMED_PRESETS["toy-demo"], lambda_first=10.0, lambda_last=3.0,
                                        priming_per_frame=True, priming_mirror=True)


def named_preset(name: str) -> dict | None:
    """A copy of the fields of the named preset ``name``, or None if no preset has that name."""
    fields = NAMED_PRESETS.get(name)
    return None if fields is None else dict(fields)
