"""From :class:`SweepOptions` to the full, deterministic list of jobs and batches of a sweep.

Every process of a sweep builds the same plan from the same options (no communication): the
models' specs, the stimuli, the jobs and the batches. Nothing is decoded or built here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from leaps.config import InversionConfig

from .cost import batch_seconds
from .errors import SweepError
from .jobs import Batch, Job, interleave_classes, job_id, make_batches
from .options import SweepOptions, config_fingerprint, config_tag, inversion_config, verifier_for
from .stimuli import Stimulus, file_identity, load_stimulus_set, resolve_class


@dataclass(frozen=True)
class NetworkSource:
    """Where a network's weights come from, and the part of it that goes into job ids."""

    name: str
    weights: str | None
    pretrained: bool

    @property
    def key(self) -> dict:
        weights = file_identity(Path(self.weights)) if self.weights else ("published" if self.pretrained else "random")
        return {"name": self.name, "weights": weights}

    def build(self, device):
        from leaps.models import build_model

        return build_model(self.name, weights=self.weights, pretrained=self.pretrained).to(device)


@dataclass
class SweepPlan:
    options: SweepOptions
    networks: dict[str, NetworkSource]           # models and verifiers by name
    configs: dict[tuple[str, str], InversionConfig]  # (model, method) -> config
    jobs: list[Job]
    batches: list[Batch]

    def network(self, name: str) -> NetworkSource:
        return self.networks[name]


def class_names_of(spec) -> list[str]:
    from leaps.classes import kinetics400_classes

    return list(spec.class_names) if spec.class_names else kinetics400_classes()


def _source(name: str, weights: str | None, pretrained: bool) -> NetworkSource:
    from leaps.models import get_spec

    spec = get_spec(name)  # UnknownModelError with suggestions
    if spec.source == "toy":
        return NetworkSource(spec.name, weights, weights is None)  # toy weights ship with leaps
    if weights is None and not pretrained:
        raise SweepError(f"{spec.name} needs weights: --weights {spec.name}=PATH or --pretrained")
    return NetworkSource(spec.name, weights, pretrained and weights is None)


def build_plan(options: SweepOptions) -> SweepPlan:
    from leaps.models import get_spec

    options.check()
    unknown = set(options.weights) - set(options.models)
    if unknown:
        raise SweepError(f"--weights given for {', '.join(sorted(unknown))}, which is not a --model")
    networks: dict[str, NetworkSource] = {}
    configs, jobs = {}, []
    stimulus_sets: dict[tuple[str, ...], list[Stimulus]] = {}
    for name in options.models:
        model = _source(name, options.weights.get(name), options.pretrained)
        networks[model.name] = model
        spec = get_spec(model.name)
        classes = class_names_of(spec)
        verifier_name = verifier_for(model.name, options.verifier)
        verifier = None
        if verifier_name is not None:
            verifier = _source(verifier_name, options.verifier_weights, options.pretrained)
            networks.setdefault(verifier.name, verifier)
        for method in options.methods:
            cfg = inversion_config(spec, method, options.config)
            configs[(model.name, method)] = cfg
            if method == "leaps" and not cfg.use_priming:
                items = _baseline_items(options, classes)  # nothing to prime with: one job per class and run
            elif method == "leaps":
                key = tuple(classes)
                if key not in stimulus_sets:
                    stimulus_sets[key] = interleave_classes(load_stimulus_set(options.stimuli, classes),
                                                            lambda s: s.label)
                items = [(s.label, s.class_name, s, 0) for s in stimulus_sets[key]]
            else:
                items = _baseline_items(options, classes)
            jobs += _jobs(model, verifier, method, cfg, items, options.seeds)
    batches = make_batches(jobs, options.batch)
    batches = [dataclasses.replace(b, cost=_batch_cost(b, configs)) for b in batches]
    return SweepPlan(options, networks, configs, jobs, batches)


def _baseline_items(options: SweepOptions, classes: list[str]) -> list[tuple]:
    if options.classes:
        labels = [resolve_class(c, classes, "--classes") for c in options.classes]
    else:
        labels = list(range(len(classes)))
    return [(label, classes[label], None, k) for k in range(options.runs_per_class) for label in labels]


def _jobs(model: NetworkSource, verifier: NetworkSource | None, method: str, cfg: InversionConfig,
          items: list[tuple], seeds: list[int]) -> list[Job]:
    fingerprint, tag = config_fingerprint(cfg), config_tag(cfg)
    out = []
    for seed in seeds:
        for label, class_name, stimulus, run in items:
            item = stimulus.identity if stimulus is not None else f"class:{label}:run:{run}"
            jid = job_id(model.key, verifier.key if verifier else None, fingerprint, item, seed)
            out.append(Job(jid, model.name, verifier.name if verifier else None, method, tag, seed, label,
                           class_name, stimulus, run))
    return out


def _batch_cost(batch: Batch, configs) -> float:
    job = batch.first
    cfg = configs[(job.model, job.method)]
    return batch_seconds(job.model, job.method, len(batch.jobs), cfg.frames, cfg.size, cfg.steps, cfg.fast)
