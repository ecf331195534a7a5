"""From a config to the objects of an experiment: process, objective, sampler, data and network.

Every `build_*` function checks its part of the config and raises `ConfigError` with one line naming the
fix; `validate(config)` runs them all (and nothing that compiles), so a bad config fails at load time.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
from ml_collections import ConfigDict

from . import catalog
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


def _data_knobs(config: ConfigDict, dataset) -> dict[str, Any]:
    """Process knobs a corruption takes from its data when the config leaves them unset: a token process's
    sequence length and vocabulary."""
    family = catalog.family("process", config.process.name)
    if family != "discrete" or dataset is None:
        return {}
    knobs = {}
    if config.process.seq_len is None:
        knobs["seq_len"] = int(dataset.data_shape[0])
    if config.process.vocab_size is None:
        knobs["vocab_size"] = int(getattr(dataset, "vocab_size", 0) or 0)
    return knobs


def build_process(config: ConfigDict, dataset=None):
    """The process named by `config.process`; corruptions that need their data get it here (the token
    processes' length and vocabulary, the cold blur's prior fitted to the data's channel means)."""
    try:
        process = catalog.process(config.process.name, **_set_knobs(config.process), **_data_knobs(config, dataset))
        if config.process.name == "cold_blur" and dataset is not None:
            from .udm import fit_blur_prior

            process = fit_blur_prior(process, dataset.arrays()["x"][:5000])
        return process
    except ValueError as e:
        message = str(e)
        if message.startswith("unknown knob"):  # typically left over from the article config's process
            message += "; when switching process, unset the others' knobs (e.g. --config.process.num_steps=None)"
        raise _rethrow("process", ValueError(message)) from None


def build_sampler(config: ConfigDict, process, prediction: str) -> samplers_lib.Sampler:
    try:
        knobs = _set_knobs(config.sampler)
        if isinstance(knobs.get("sigma_tilde"), str) and knobs["sigma_tilde"] != "ddpm":
            knobs["sigma_tilde"] = float(knobs["sigma_tilde"])
        sampler = catalog.sampler(config.sampler.name, **knobs)
        sampler.validate(process, _stand_in(config, process, sampler, prediction))
    except ValueError as e:
        message = str(e)
        if message.startswith("unknown knob"):  # typically left over from the article config's sampler
            message += "; when switching sampler, unset the others' knobs (e.g. --config.sampler.variance=None)"
        raise _rethrow("sampler", ValueError(message)) from None
    return sampler


def _stand_in(config: ConfigDict, process, sampler, prediction: str) -> Predictor:
    """A predictor shaped like the one the runner will sample with, to validate the sampler before training:
    with a variance table (estimated per checkpoint) or head (trained in a second stage), and classifier-guided
    when `guidance.classifier_scale` is set."""
    stand_in = Predictor(_identity, kind=prediction)
    variance = getattr(sampler, "variance", None)
    if variance in ("analytic", "npr", "sn"):
        from .variance import VarianceHead, VarianceTable, with_x0_variance

        source = VarianceTable(jnp.zeros((1,)), jnp.zeros((1,))) if variance == "analytic" else VarianceHead(_identity)
        stand_in = with_x0_variance(stand_in, source)
    if config.guidance.classifier_scale is not None:
        from .guidance import classifier_guidance

        stand_in = classifier_guidance(stand_in, process, _no_logits, scale=config.guidance.classifier_scale,
                                       label_key="label", classifier_input=config.guidance.classifier_input)
    return stand_in


def _identity(x, t, **cond):
    return x


def _no_logits(params, x, t):
    return jnp.zeros((x.shape[0], 1), x.dtype)


def _extra_objective(config: ConfigDict, process):
    """A non-Gaussian family's objective: its own knobs (and the prediction kind for the UDM restorers)."""
    knobs = _set_knobs(config.objective, exclude=("name", "reduction", "time_sampling"))
    if catalog.family("objective", config.objective.name) == "udm":
        knobs.setdefault("reduction", config.objective.reduction)
        if config.objective.name != "udm_encoder":
            knobs["prediction"] = config.prediction
    if config.objective.time_sampling is not None:
        knobs["time_sampling"] = config.objective.time_sampling
    return catalog.objective(config.objective.name, process, **knobs)


def build_formulation(config: ConfigDict, dataset=None) -> Formulation:
    """Builds and cross-checks process, prediction kind, objective and sampler."""
    process = build_process(config, dataset)
    if config.prediction not in KINDS:
        raise ConfigError(f"config.prediction: unknown kind {config.prediction!r}; valid: {', '.join(KINDS)}")
    family = catalog.family("process", config.process.name)
    if family != "gaussian":
        for kind in ("objective", "sampler"):
            name = config[kind].name
            other = catalog.family(kind, name)
            if other != family:
                names = ", ".join(n for n, (f, _) in getattr(catalog, f"EXTRA_{kind.upper()}S").items() if f == family)
                raise ConfigError(f"config.{kind}.name: {name!r} does not go with the {family} process "
                                  f"{config.process.name!r}; choose a {kind} of the {family} family: {names}")
        try:
            objective = _extra_objective(config, process)
        except (ValueError, TypeError) as e:
            raise _rethrow("objective", ValueError(str(e))) from None
        return Formulation(process, config.prediction, objective, build_sampler(config, process, config.prediction))
    if catalog.family("sampler", config.sampler.name) != "gaussian":
        raise ConfigError(f"config.sampler.name: {config.sampler.name!r} samples a "
                          f"{catalog.family('sampler', config.sampler.name)} process, not the Gaussian process "
                          f"{config.process.name!r}; choose one of {', '.join(samplers_lib.SAMPLERS)}")
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


def _output_knobs(config: ConfigDict, dataset, process) -> dict[str, Any]:
    """What the data and process fix about the network: a token vocabulary, or PFGM's extra field channel."""
    knobs: dict[str, Any] = {}
    if dataset is not None and config.model.name == "transformer" and config.model.vocab_size is None:
        knobs["vocab_size"] = int(getattr(dataset, "vocab_size", 0) or 0)
    if dataset is not None and catalog.family("process", config.process.name) == "pfgm":
        shape = tuple(dataset.data_shape)
        if config.model.name == "mlp" and len(shape) == 1:
            knobs["out_dim"] = shape[0] + 1  # (B, D) -> (B, D + 1): the field's x and z parts
        elif config.model.name == "unet":
            knobs["out_channels"] = shape[-1] + 1  # the z part is the mean of the extra channel
        else:
            raise ValueError("PFGM needs an MLP on vector data or a U-Net on images (it predicts one extra field "
                             "component); use --config.model.name=unet for images")
    return knobs


def build_model(config: ConfigDict, num_classes: int, *, dataset=None, process=None):
    """The Flax network named by `config.model`."""
    from . import models as models_lib

    try:
        kwargs = model_kwargs(config, num_classes)
        kwargs.update(_output_knobs(config, dataset, process))
        return models_lib.build_model(config.model.name, **kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config.model: {e}") from None


def validate(config: ConfigDict):
    """Builds everything a run needs except compiled code; returns `(formulation, dataset, model)`."""
    dataset = build_dataset(config)
    formulation = build_formulation(config, dataset)
    model = build_model(config, dataset.num_classes, dataset=dataset, process=formulation.process)
    batch = config.training.batch_size
    if batch < 1:
        raise ConfigError(f"config.training.batch_size must be positive, got {batch}")
    if catalog.family("process", config.process.name) != "gaussian" and (
            config.guidance.p_uncond > 0 or config.guidance.cfg_scale is not None
            or config.guidance.classifier_scale is not None):
        raise ConfigError("config.guidance: guidance is built for the Gaussian processes; unset it for "
                          f"{config.process.name!r}")
    guided = config.guidance.p_uncond > 0 or config.guidance.cfg_scale is not None
    if guided and not config.model.class_conditional:
        raise ConfigError("config.guidance (p_uncond, cfg_scale) needs a class-conditional model; set "
                          "--config.model.class_conditional=True (with a labelled dataset)")
    if not 0.0 <= config.guidance.p_uncond < 1.0:
        raise ConfigError(f"config.guidance.p_uncond must lie in [0, 1), got {config.guidance.p_uncond}")
    if config.guidance.classifier_scale is not None and config.guidance.cfg_scale is not None:
        raise ConfigError("config.guidance: choose classifier guidance (classifier_scale) or classifier-free "
                          "guidance (cfg_scale), not both; unset one with =None")
    _check_stages(config, dataset)
    from . import variance as variance_lib

    if config.variance.estimator not in variance_lib.ESTIMATORS:
        raise ConfigError(f"config.variance.estimator: unknown {config.variance.estimator!r}; valid: "
                          f"{', '.join(variance_lib.ESTIMATORS)}")
    from .training import cpu_convolutions

    try:
        cpu_convolutions.check_choice(config.training.cpu_convolutions)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    shards = config.training.grad_shards
    if shards < 0 or (shards and batch % shards):
        raise ConfigError(f"config.training.grad_shards={shards} must be 0 or a positive divisor of "
                          f"training.batch_size={batch}")
    return formulation, dataset, model


def _check_stages(config: ConfigDict, dataset) -> None:
    """The stage settings' own checks of `training.stages` (before anything compiles)."""
    if config.guidance.classifier_scale is not None:
        if dataset.num_classes <= 0:
            raise ConfigError(f"config.guidance.classifier_scale needs a labelled dataset to train the classifier; "
                              f"{config.data.name!r} has no labels")
        from .guidance import CLASSIFIER_INPUTS

        if config.guidance.classifier_input not in CLASSIFIER_INPUTS:
            raise ConfigError(f"config.guidance.classifier_input: unknown {config.guidance.classifier_input!r}; "
                              f"valid: {', '.join(CLASSIFIER_INPUTS)}")
        if config.classifier.hidden < 1 or config.classifier.depth < 0:
            raise ConfigError("config.classifier needs hidden >= 1 and depth >= 0")
    if config.reflow.rounds < 0:
        raise ConfigError(f"config.reflow.rounds must be >= 0, got {config.reflow.rounds}")
    if config.reflow.rounds and config.prediction != "velocity":
        raise ConfigError("config.reflow.rounds needs a velocity model on the flow process (configs/reflow.py); "
                          f"got prediction {config.prediction!r}")
    if config.reflow.rounds and config.model.class_conditional:
        raise ConfigError("config.reflow.rounds: reflow of a class-conditional flow is not supported; "
                          "set --config.model.class_conditional=False")


def apply_model(model, params, x, t, cond=None, *, train: bool = False, dropout_key=None, method=None):
    """Calls the Flax network `model(x, t, cond)`; models see only `(x, t, cond)`. `method` names another
    entry point of the module (e.g. the UDM encoder model's `encode`)."""
    rngs = {"dropout": dropout_key} if dropout_key is not None else None
    return model.apply({"params": params}, x, t, cond, train=train, rngs=rngs, method=method)


def predictor(model, params, prediction: str) -> Predictor:
    """The trained network as a `Predictor` whose weights stay a traced argument."""
    return Predictor(_ModelFn(model), kind=prediction, params=params)


@dataclasses.dataclass(frozen=True)
class _ModelFn:
    """`fn(params, x, t, label=None)` for a Flax model; hashable by the model, so sampling compiles once."""

    model: Any

    def __call__(self, params, x, t, label=None, method=None):
        return apply_model(self.model, params, x, t, label, method=method)


def model_fn(model) -> _ModelFn:
    """The Flax network as `fn(params, x, t, label=None)`, hashable by the model (sampling compiles once)."""
    return _ModelFn(model)


def sample_labels(num_samples: int, num_classes: int):
    """Round-robin class labels for conditional sampling (equal counts per class)."""
    return jnp.arange(num_samples, dtype=jnp.int32) % num_classes
