"""Second training stages: a run whose recipe needs more than one network or more than one round.

* `classifier` (article (九)): with `guidance.classifier_scale` set, a noise-conditional classifier
  `log p(y | x_t, t)` is trained after the diffusion model, with the model untouched; sampling then adds
  `gamma grad log p(y | x_t, t)` (in eps-form for every sampler, or as a mean shift in ancestral sampling).
* `variance_head` (article (八)): with `sampler.variance` in {npr, sn}, a head of the model's architecture is
  trained with the mean model frozen, towards `E[(eps - eps_theta)^2 | x_t]` (NPR) or `E[eps^2 | x_t]` (SN).
* `reflow_1`, `reflow_2`, ... (article (十七)): with `reflow.rounds = R`, each round draws `reflow.num_pairs`
  noises, carries them to data with the previous round's ODE, and trains the next flow on those coupled pairs,
  starting from the previous weights; the straightness of each round's paths is recorded.

Each stage is a run of its own in a subdirectory of the workdir (`W/classifier`, `W/variance_head`,
`W/reflow_<r>`): resolved config, checkpoints and metrics, so it resumes after preemption like the main run.
Nothing here is global: a stage is a function of the run's config and workdir.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import pathlib
from typing import Any

import jax
import numpy as np
from ml_collections import ConfigDict

from ..experiment import model_fn, validate

log = logging.getLogger("diffjax")

CLASSIFIER_DIR = "classifier"
VARIANCE_HEAD_DIR = "variance_head"


@dataclasses.dataclass(frozen=True)
class Stage:
    """A training run after the main one: its subdirectory, derived config and the parts it replaces."""

    name: str
    config: ConfigDict
    objective: Any = None
    dataset: Any = None
    init_params: Any = None


def reflow_dir(round_: int) -> str:
    return f"reflow_{round_}"


def _derived(config: ConfigDict, **sections) -> ConfigDict:
    """A copy of `config` with keys set (`{"model.name": "mlp"}`), its guidance and reflow stages switched off."""
    derived = copy.deepcopy(config)
    with derived.unlocked(), derived.ignore_type():
        for key, value in sections.items():
            parent = derived
            *path, name = key.split(".")
            for part in path:
                parent = parent[part]
            parent[name] = value
    return derived


def classifier_config(config: ConfigDict, num_classes: int) -> ConfigDict:
    """The noise-conditional classifier's run: a residual MLP over the flattened `x_t` with `num_classes`
    outputs, trained on the same data, process and time sampling as the model."""
    section = config.classifier
    model = {f"model.{k}": None for k in config.model.keys() if k not in ("name", "class_conditional")}
    model.update({"model.name": "mlp", "model.hidden": section.hidden, "model.depth": section.depth,
                  "model.out_dim": num_classes, "model.class_conditional": False})
    training = {}
    if section.num_steps is not None:
        training["training.num_steps"] = section.num_steps
    if section.learning_rate is not None:
        training["optimizer.learning_rate"] = section.learning_rate
    return _derived(config, **model, **training, **{
        "formulation": f"{config.formulation}/classifier", "guidance.p_uncond": 0.0, "guidance.cfg_scale": None,
        "guidance.classifier_scale": None, "sampler.variance": None, "sampler.guidance": None,
        "reflow.rounds": 0})


def variance_head_config(config: ConfigDict) -> ConfigDict:
    """The NPR/SN head's run: the model's architecture (zero-initialised output, so the head starts at 0)."""
    steps = config.variance.head_steps or config.training.num_steps
    return _derived(config, **{"formulation": f"{config.formulation}/{config.sampler.variance}_head",
                               "training.num_steps": steps, "sampler.variance": None, "guidance.p_uncond": 0.0,
                               "guidance.cfg_scale": None})


def reflow_config(config: ConfigDict, round_: int) -> ConfigDict:
    steps = config.reflow.num_steps or config.training.num_steps
    return _derived(config, **{"formulation": f"{config.formulation}/reflow_{round_}",
                               "training.num_steps": steps, "reflow.rounds": 0})


def has_stages(config: ConfigDict) -> bool:
    return uses_classifier(config) or uses_variance_head(config) or bool(config.reflow.rounds)


def uses_classifier(config: ConfigDict) -> bool:
    return config.guidance.classifier_scale is not None


def uses_variance_head(config: ConfigDict) -> bool:
    return config.sampler.variance in ("npr", "sn")


def _restore(config: ConfigDict, workdir: pathlib.Path):
    from .loop import restore_state

    return restore_state(config, workdir)


def _ema(config: ConfigDict, state):
    return state.ema_params if config.sampling.use_ema else state.params


# -------------------------------------------------------------------------------------------------- classifier


def classifier_stage(config: ConfigDict, workdir: pathlib.Path, dataset) -> Stage:
    from ..guidance import classifier_loss

    stage_config = classifier_config(config, dataset.num_classes)
    formulation = validate(stage_config)[0]
    objective = classifier_loss(formulation.process, time_sampling=config.objective.time_sampling)
    return Stage(CLASSIFIER_DIR, stage_config, objective=objective)


def classifier_guided(config: ConfigDict, workdir: pathlib.Path, formulation, model_predictor, dataset):
    """The model predictor guided by the run's trained noisy classifier (article (九))."""
    from ..guidance import classifier_guidance

    stage_config = classifier_config(config, dataset.num_classes)
    _, _, classifier = validate(stage_config)
    _, state = _restore(stage_config, workdir / CLASSIFIER_DIR)
    return classifier_guidance(model_predictor, formulation.process, model_fn(classifier), _ema(config, state),
                               scale=config.guidance.classifier_scale, label_key="label",
                               classifier_input=config.guidance.classifier_input,
                               model_takes_label=bool(config.model.class_conditional))


# ----------------------------------------------------------------------------------------------- variance head


def variance_head_stage(config: ConfigDict, workdir: pathlib.Path, mean_params) -> Stage:
    from ..experiment import predictor
    from ..variance import npr_loss, sn_loss

    formulation, _, model = validate(config)
    mean = predictor(model, mean_params, formulation.prediction)
    build = npr_loss if config.sampler.variance == "npr" else sn_loss
    objective = build(formulation.process, mean, time_sampling=config.objective.time_sampling)
    return Stage(VARIANCE_HEAD_DIR, variance_head_config(config), objective=objective)


def variance_head(config: ConfigDict, workdir: pathlib.Path):
    """The run's trained NPR/SN head as a `dj.variance.VarianceHead`."""
    from ..variance import VarianceHead

    stage_config = variance_head_config(config)
    _, _, head = validate(stage_config)
    _, state = _restore(stage_config, workdir / VARIANCE_HEAD_DIR)
    return VarianceHead(model_fn(head), _ema(config, state))


# ------------------------------------------------------------------------------------------------------ reflow


def _velocity(config: ConfigDict, formulation, model, params):
    from ..generate import run_predictor

    return run_predictor(config, formulation, model, params)


def reflow_pairs(config: ConfigDict, formulation, model, params, data_shape, path: pathlib.Path, seed: int):
    """`(x0, x1)`: `reflow.num_pairs` prior draws `x1` and the ODE's images `x0` (cached in `path`)."""
    from .. import flows

    if path.exists():
        with np.load(path) as cached:
            return cached["x0"], cached["x1"]
    process = formulation.process
    velocity = _velocity(config, formulation, model, params)
    num = int(config.reflow.num_pairs)
    batch = min(int(config.sampling.batch_size), num)
    key = jax.random.key(seed)
    x0s, x1s = [], []
    for i in range(-(-num // batch)):
        x1 = process.prior_sample(jax.random.fold_in(key, i), (batch, *data_shape))
        x0 = flows.solve(velocity, x1, t_start=float(process.t_max), t_end=float(process.t_min),
                         solver=config.reflow.solver, steps=int(config.reflow.ode_steps))
        x0s.append(np.asarray(x0))
        x1s.append(np.asarray(x1))
    x0, x1 = np.concatenate(x0s)[:num], np.concatenate(x1s)[:num]
    if jax.process_index() == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, x0=x0, x1=x1)
    return x0, x1


def straightness(config: ConfigDict, formulation, model, params, data_shape) -> float:
    """Liu et al.'s normalised straightness of the model's ODE paths (0 for straight lines, article (十七))."""
    from .. import flows

    process = formulation.process
    n = min(int(config.sampling.batch_size), 1000)
    x1 = process.prior_sample(jax.random.key(config.seed + 7), (n, *data_shape))
    value = flows.straightness(None, _velocity(config, formulation, model, params), None, n, steps=100,
                               t_min=float(process.t_min), t_max=float(process.t_max), normalized=True, x_init=x1)
    return float(value)


def reflow_stage(config: ConfigDict, workdir: pathlib.Path, round_: int, params, dataset) -> Stage:
    from .. import flows
    from ..data import ArrayDataset

    formulation, _, model = validate(config)
    process = formulation.process
    stage_config = reflow_config(config, round_)
    x0, x1 = reflow_pairs(config, formulation, model, params, dataset.data_shape,
                          workdir / reflow_dir(round_) / "pairs.npz", seed=config.seed + 100 + round_)
    pairs = ArrayDataset(f"reflow_{round_}_pairs", x0.astype(np.float32), columns={"x1": x1.astype(np.float32)})
    objective = flows.flow_matching("straight", t_min=float(process.t_min), t_max=float(process.t_max))
    return Stage(reflow_dir(round_), stage_config, objective=objective, dataset=pairs, init_params=params)


# ------------------------------------------------------------------------------------------------------ driver


def run_stages(config: ConfigDict, workdir: str | pathlib.Path, main_state, *, force: bool = False) -> dict:
    """Trains every stage `config` asks for, after the main run; returns a summary (per-stage metrics).

    A stage stopped by SIGTERM/SIGINT returns early with `stopped_by` set, like the main run.
    """
    from .loop import train

    workdir = pathlib.Path(workdir)
    formulation, dataset, model = validate(config)
    summary: dict = {}
    stages = []
    if uses_classifier(config):
        stages.append(classifier_stage(config, workdir, dataset))
    if uses_variance_head(config):
        stages.append(variance_head_stage(config, workdir, _ema(config, main_state)))
    for stage in stages:
        result = train(stage.config, workdir / stage.name, force=force, objective=stage.objective)
        summary[stage.name] = {"step": result.step, "stopped_by": result.stopped_by,
                               "train": {k: float(v) for k, v in result.last_metrics.items()}}
        if result.stopped_by is not None:
            summary["stopped_by"] = result.stopped_by
            return summary
    if config.reflow.rounds:
        params = _ema(config, main_state)
        record = {"straightness": {"0": straightness(config, formulation, model, params, dataset.data_shape)}}
        for round_ in range(1, int(config.reflow.rounds) + 1):
            stage = reflow_stage(config, workdir, round_, params, dataset)
            result = train(stage.config, workdir / stage.name, force=force, objective=stage.objective,
                           dataset=stage.dataset, init_params=stage.init_params)
            summary[stage.name] = {"step": result.step, "stopped_by": result.stopped_by,
                                   "train": {k: float(v) for k, v in result.last_metrics.items()}}
            if result.stopped_by is not None:
                summary["stopped_by"] = result.stopped_by
                return summary
            params = _ema(config, result.state)
            record["straightness"][str(round_)] = straightness(config, formulation, model, params,
                                                               dataset.data_shape)
            log.info("reflow round %d: normalised straightness %.4f", round_, record["straightness"][str(round_)])
        if jax.process_index() == 0:
            (workdir / "reflow.json").write_text(json.dumps(record, indent=2))
        summary["reflow"] = record
    return summary


def sampling_state(config: ConfigDict, workdir: str | pathlib.Path):
    """`(step, state)` of the network that samples: the last reflow round's, else the main run's."""
    workdir = pathlib.Path(workdir)
    if config.reflow.rounds:
        rounds = int(config.reflow.rounds)
        return _restore(reflow_config(config, rounds), workdir / reflow_dir(rounds))
    return _restore(config, workdir)


def guided_labels(config: ConfigDict, dataset, model) -> int:
    """How many classes the samples are drawn for: the model's, or the classifier's under classifier guidance."""
    if uses_classifier(config):
        return int(dataset.num_classes)
    return int(getattr(model, "num_classes", 0) or 0)

