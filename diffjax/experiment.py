"""From a config to the objects of an experiment: process, objective, sampler, data and network.

Every `build_*` function checks its part of the config and raises `ConfigError` with one line naming the
fix; `validate(config)` runs them all (and nothing that compiles), so a bad config fails at load time.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
from ml_collections import ConfigDict

from . import objectives as objectives_lib
from . import processes as processes_lib
from . import samplers as samplers_lib
from .config import ConfigError
from .predictions import KINDS, Predictor

# Model time scales: the network embeds `time_scale * t`; continuous times in [0, 1] are stretched to the
# range of DDPM's integer steps (as score_sde does), EDM's sigma-time is used as it is.
_TIME_SCALES = {"ddpm": 1.0, "vp": 999.0, "subvp": 999.0, "ve": 999.0, "flow": 999.0, "edm": 1.0}


def _set_knobs(section: ConfigDict, exclude: tuple[str, ...] = ("name",)) -> dict[str, Any]:
    """The knobs of a config section that are set (not None), minus `exclude`."""
    return {k: v for k, v in section.items() if k not in exclude and v is not None}


def _rethrow(where: str, error: ValueError) -> ConfigError:
    return ConfigError(f"config.{where}: {error}")


@dataclasses.dataclass(frozen=True)
class Formulation:
    """The article's four choices (the network is the fourth, built separately)."""

    process: processes_lib.GaussianProcess
    prediction: str
    objective: objectives_lib.Loss
    sampler: samplers_lib.Sampler


def build_process(config: ConfigDict):
    try:
        return processes_lib.process(config.process.name, **_set_knobs(config.process))
    except ValueError as e:
        message = str(e)
        if message.startswith("unknown knob"):  # typically left over from the article config's process
            message += "; when switching process, unset the others' knobs (e.g. --config.process.num_steps=None)"
        raise _rethrow("process", ValueError(message)) from None


def build_sampler(config: ConfigDict, process, prediction: str) -> samplers_lib.Sampler:
    try:
        sampler = samplers_lib.sampler(config.sampler.name, **_set_knobs(config.sampler))
        stand_in = Predictor(lambda x, t: x, kind=prediction)
        if getattr(sampler, "variance", None) == "analytic":  # the runner estimates the table per checkpoint
            from .variance import VarianceTable, with_x0_variance

            stand_in = with_x0_variance(stand_in, VarianceTable(jnp.zeros((1,)), jnp.zeros((1,))))
        sampler.validate(process, stand_in)
    except ValueError as e:
        message = str(e)
        if message.startswith("unknown knob"):  # typically left over from the article config's sampler
            message += "; when switching sampler, unset the others' knobs (e.g. --config.sampler.variance=None)"
        raise _rethrow("sampler", ValueError(message)) from None
    return sampler


def build_formulation(config: ConfigDict) -> Formulation:
    """Builds and cross-checks process, prediction kind, objective and sampler."""
    process = build_process(config)
    if config.prediction not in KINDS:
        raise ConfigError(f"config.prediction: unknown kind {config.prediction!r}; valid: {', '.join(KINDS)}")
    try:
        objective = objectives_lib.objective(
            config.objective.name, process, prediction=config.prediction,
            **_set_knobs(config.objective))
    except ValueError as e:
        raise _rethrow("objective", e) from None
    sampler = build_sampler(config, process, config.prediction)
    return Formulation(process, config.prediction, objective, sampler)


def build_dataset(config: ConfigDict, split: str = "train"):
    """Loads the dataset named by `config.data`."""
    from . import data as data_lib

    try:
        return data_lib.load_dataset(config.data.name, split=split, **_set_knobs(config.data))
    except ValueError as e:
        raise _rethrow("data", e) from None


def model_kwargs(config: ConfigDict, num_classes: int) -> dict[str, Any]:
    """The network's constructor arguments: its preset, the set knobs, the class count and time scale."""
    from . import models as models_lib

    knobs = _set_knobs(config.model, exclude=("name", "preset", "class_conditional"))
    kwargs: dict[str, Any] = {}
    if config.model.preset is not None:
        presets = getattr(models_lib, "PRESETS", {})
        if config.model.preset not in presets:
            raise ConfigError(f"config.model.preset: unknown preset {config.model.preset!r}; "
                              f"valid presets: {', '.join(sorted(presets))}")
        kwargs.update(presets[config.model.preset])
    kwargs.update(knobs)
    if config.model.class_conditional:
        if num_classes <= 0:
            raise ConfigError("config.model.class_conditional needs a labelled dataset; "
                              f"{config.data.name!r} has no labels")
        kwargs["num_classes"] = num_classes
    kwargs.setdefault("time_scale", _TIME_SCALES.get(config.process.name, 1.0))
    return kwargs


def build_model(config: ConfigDict, num_classes: int):
    """The Flax network named by `config.model`."""
    from . import models as models_lib

    try:
        return models_lib.build_model(config.model.name, **model_kwargs(config, num_classes))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config.model: {e}") from None


def validate(config: ConfigDict):
    """Builds everything a run needs except compiled code; returns `(formulation, dataset, model)`."""
    formulation = build_formulation(config)
    dataset = build_dataset(config)
    model = build_model(config, dataset.num_classes)
    batch = config.training.batch_size
    if batch < 1:
        raise ConfigError(f"config.training.batch_size must be positive, got {batch}")
    guided = config.guidance.p_uncond > 0 or config.guidance.cfg_scale is not None
    if guided and not config.model.class_conditional:
        raise ConfigError("config.guidance (p_uncond, cfg_scale) needs a class-conditional model; set "
                          "--config.model.class_conditional=True (with a labelled dataset)")
    if not 0.0 <= config.guidance.p_uncond < 1.0:
        raise ConfigError(f"config.guidance.p_uncond must lie in [0, 1), got {config.guidance.p_uncond}")
    if getattr(formulation.sampler, "variance", None) in ("npr", "sn"):
        raise ConfigError("config.sampler.variance: 'npr' and 'sn' need a trained variance head, which the "
                          "runner does not train yet; use 'analytic' (estimated per checkpoint) or the notebook API")
    from . import variance as variance_lib

    if config.variance.estimator not in variance_lib.ESTIMATORS:
        raise ConfigError(f"config.variance.estimator: unknown {config.variance.estimator!r}; valid: "
                          f"{', '.join(variance_lib.ESTIMATORS)}")
    shards = config.training.grad_shards
    if shards < 0 or (shards and batch % shards):
        raise ConfigError(f"config.training.grad_shards={shards} must be 0 or a positive divisor of "
                          f"training.batch_size={batch}")
    return formulation, dataset, model


def apply_model(model, params, x, t, cond=None, *, train: bool = False, dropout_key=None):
    """Calls the Flax network `model(x, t, cond)`; models see only `(x, t, cond)`."""
    rngs = {"dropout": dropout_key} if dropout_key is not None else None
    return model.apply({"params": params}, x, t, cond, train=train, rngs=rngs)


def predictor(model, params, prediction: str) -> Predictor:
    """The trained network as a `Predictor` whose weights stay a traced argument."""
    return Predictor(_ModelFn(model), kind=prediction, params=params)


@dataclasses.dataclass(frozen=True)
class _ModelFn:
    """`fn(params, x, t, label=None)` for a Flax model; hashable by the model, so sampling compiles once."""

    model: Any

    def __call__(self, params, x, t, label=None):
        return apply_model(self.model, params, x, t, label)


def model_fn(model) -> _ModelFn:
    """The Flax network as `fn(params, x, t, label=None)`, hashable by the model (sampling compiles once)."""
    return _ModelFn(model)


def sample_labels(num_samples: int, num_classes: int):
    """Round-robin class labels for conditional sampling (equal counts per class)."""
    return jnp.arange(num_samples, dtype=jnp.int32) % num_classes
