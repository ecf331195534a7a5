"""Sampling and evaluation from a run directory: `W/samples/{samples.npz, samples.png, metrics.json}`."""

from __future__ import annotations

import hashlib
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from .config import ConfigError, apply_overrides, from_json
from .experiment import build_dataset, build_formulation, model_fn, predictor, sample_labels, validate
from .guidance import cfg
from .preconditioning import precondition
from .predictions import Predictor
from .samplers import sample
from .variance import VarianceTable, estimate_x0_variance, with_x0_variance

SAMPLES_DIR = "samples"


def load_run_config(workdir: str | pathlib.Path, overrides=()) -> ConfigDict:
    """The resolved config saved in `W/config.json`, with `a.b=v` overrides applied (e.g. a sampler)."""
    path = pathlib.Path(workdir) / "config.json"
    if not path.exists():
        raise ConfigError(f"workdir {str(workdir)!r} holds no run (no config.json); train first: "
                          f"diffjax train --config ... --workdir {workdir}")
    config = apply_overrides(from_json(path.read_text()), overrides)
    build_formulation(config)  # validates overrides such as a new sampler before anything compiles
    return config


def run_predictor(config: ConfigDict, formulation, model, params, *, variance_table=None) -> Predictor:
    """The trained network as the sampler sees it: with classifier-free guidance when `guidance.cfg_scale`
    is set (article (九)) and with its x_0-variance table for `sampler.variance='analytic'` (七)."""
    terms = formulation.objective.terms
    if getattr(terms, "precond", None) is not None:  # EDM: the network is the raw F inside D = c_skip x + c_out F
        model_predictor = precondition(model_fn(model), formulation.process, terms.precond, terms.sigma_data,
                                       params=params)
    else:
        model_predictor = predictor(model, params, formulation.prediction)
    if config.guidance.cfg_scale is not None:
        model_predictor = cfg(model_predictor, config.guidance.cfg_scale, null_label=model.num_classes,
                              label_key="label")
    if variance_table is not None:
        model_predictor = with_x0_variance(model_predictor, variance_table)
    return model_predictor


def needs_variance_table(formulation) -> bool:
    return getattr(formulation.sampler, "variance", None) == "analytic"


def x0_variance_table(config: ConfigDict, formulation, model, params, dataset, workdir, step: int):
    """The Analytic-DPM table of `var0_t` at the sampler's grid times for the checkpoint of `step`: read from
    `W/variance/` when this checkpoint, grid and estimator were estimated before, else estimated and saved."""
    times = np.asarray(formulation.sampler.grid(formulation.process))
    tag = hashlib.sha1(times.tobytes()).hexdigest()[:10]
    path = (pathlib.Path(workdir) / "variance" /
            f"step{step}_{config.variance.estimator}_{config.variance.num_samples}_{tag}.npz")
    if path.exists():
        with np.load(path) as cached:
            return VarianceTable(times=jnp.asarray(cached["times"]), values=jnp.asarray(cached["values"]))
    rows = dataset.arrays()
    labels = rows.get("label") if getattr(model, "num_classes", 0) else None
    table = estimate_x0_variance(
        jax.random.key(config.seed + 4), run_predictor(config, formulation, model, params), formulation.process,
        jnp.asarray(rows["x"]), jnp.asarray(times), estimator=config.variance.estimator,
        num_samples=int(config.variance.num_samples) if labels is None else None,
        cond=None if labels is None else {"label": jnp.asarray(labels)})
    if jax.process_index() == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, times=np.asarray(table.times), values=np.asarray(table.values))
    return table


def generate(config: ConfigDict, formulation, model, params, data_shape, num_samples: int, *,
             seed: int | None = None, variance_table=None):
    """Draws `num_samples` samples in equal batches of `sampling.batch_size`; returns `(samples, labels)`.

    Conditional models get round-robin labels. Every batch reuses one compiled sampler.
    """
    batch = min(int(config.sampling.batch_size), num_samples)
    num_batches = -(-num_samples // batch)
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    labels = sample_labels(num_batches * batch, num_classes) if num_classes else None
    key = jax.random.key(config.seed + 1 if seed is None else seed)
    model_predictor = run_predictor(config, formulation, model, params, variance_table=variance_table)
    chunks = []
    for i in range(num_batches):
        cond = None if labels is None else {"label": labels[i * batch:(i + 1) * batch]}
        chunks.append(np.asarray(sample(jax.random.fold_in(key, i), model_predictor, formulation.process,
                                        formulation.sampler, (batch, *data_shape), cond=cond)))
    samples = np.concatenate(chunks)[:num_samples]
    return samples, (None if labels is None else np.asarray(labels)[:num_samples])


def write_samples(out: pathlib.Path, samples: np.ndarray, labels: np.ndarray | None) -> list[pathlib.Path]:
    """Writes `samples.npz` (key `samples`, and `labels` when conditional) and `samples.png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    arrays = {"samples": samples} if labels is None else {"samples": samples, "labels": labels}
    np.savez(out / "samples.npz", **arrays)
    fig_path = out / "samples.png"
    if samples.ndim == 2 and samples.shape[1] == 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.5)
        ax.set_aspect("equal")
        fig.savefig(fig_path, dpi=120)
        plt.close(fig)
    elif samples.ndim == 4:
        n = min(len(samples), 100)
        side = int(np.ceil(np.sqrt(n)))
        h, w, c = samples.shape[1:]
        grid = np.ones((side * (h + 1), side * (w + 1), c), np.float32)
        images = (np.clip(samples[:n], -1, 1) + 1) / 2
        for i in range(n):
            r, q = divmod(i, side)
            grid[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = images[i]
        fig, ax = plt.subplots(figsize=(6, 6))
        ax.imshow(grid[..., 0] if c == 1 else grid, cmap="gray" if c == 1 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.axis("off")
        fig.savefig(fig_path, dpi=120, bbox_inches="tight")
        plt.close(fig)
    return [out / "samples.npz", fig_path]


def evaluate_samples(config: ConfigDict, samples: np.ndarray, dataset) -> dict:
    """Metrics of samples against the data: toy sets, digits (classifier) or images (FID)."""
    from . import evaluation

    name = config.data.name
    if name == "toy2d":
        return {k: float(v) for k, v in evaluation.toy_metrics(jax.random.key(config.seed + 2),
                                                               jnp.asarray(samples), dataset).items()}
    if name == "digits":
        classifier = evaluation.load_digits_classifier(config.evaluation.classifier_path)
        return {k: float(v) for k, v in evaluation.digits_metrics(samples, classifier).items()}
    if config.evaluation.inception_path is None:
        return {"note": "FID skipped: set evaluation.inception_path to local InceptionV3 weights"}
    reference = dataset.sample_reference(config.seed + 3, config.evaluation.num_reference)
    return {"fid": float(evaluation.fid(samples, reference, config.evaluation.inception_path))}


def sample_and_evaluate(config: ConfigDict, workdir: str | pathlib.Path, *, params_state=None,
                        num_samples: int | None = None) -> dict:
    """Samples with the run's (EMA) weights, writes `W/samples/`, evaluates, writes `metrics.json`."""
    from .training import restore_state

    workdir = pathlib.Path(workdir)
    formulation, dataset, model = validate(config)
    if params_state is None:
        _, params_state = restore_state(config, workdir)
    params = params_state.ema_params if config.sampling.use_ema else params_state.params
    num = int(num_samples or config.sampling.num_samples)
    table = None
    if needs_variance_table(formulation):
        table = x0_variance_table(config, formulation, model, params, dataset, workdir, int(params_state.step))
    samples, labels = generate(config, formulation, model, params, tuple(dataset.data_shape), num,
                               variance_table=table)
    out = workdir / SAMPLES_DIR
    paths = write_samples(out, samples, labels) if jax.process_index() == 0 else []
    metrics = evaluate_samples(config, samples, dataset)
    if jax.process_index() == 0:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        paths.append(out / "metrics.json")
    return {"samples": [str(p) for p in paths], "metrics": metrics}


def evaluate_workdir(config: ConfigDict, workdir: str | pathlib.Path) -> dict:
    """Re-evaluates `W/samples/samples.npz`; writes and returns `metrics.json`."""
    path = pathlib.Path(workdir) / SAMPLES_DIR / "samples.npz"
    if not path.exists():
        raise ConfigError(f"no samples at {str(path)!r}; run: diffjax sample --workdir {workdir}")
    metrics = evaluate_samples(config, np.load(path)["samples"], build_dataset(config))
    (path.parent / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


# Number of value levels of the discrete image sets, for dequantised bits/dim (digits: 0..16).
_LEVELS = {"digits": 17, "cifar10": 256, "mnist": 256, "celeb_a": 256, "npz": 256, "image_folder": 256}


def likelihood_workdir(config: ConfigDict, workdir: str | pathlib.Path, *, num_examples: int = 256) -> dict:
    """Likelihood of held-out data under the run's (EMA) model; writes and returns `W/likelihood.json`.

    Continuous processes: the probability-flow ODE (article (六)), in nats per example for 2-D data (with the
    exact log-density alongside where it is known) and in dequantised bits/dim for images. Discrete DDPM:
    the ELBO of article (二) in bits/dim (images only).
    """
    from . import likelihood as likelihood_lib
    from .training import restore_state

    workdir = pathlib.Path(workdir)
    formulation, dataset, model = validate(config)
    process = formulation.process
    image = config.data.name != "toy2d"
    if process.is_discrete and not image:
        raise ConfigError("the discrete ELBO (article (二)) needs image data with a fixed number of levels; for "
                          "toy2d likelihoods train with a continuous process (e.g. configs/pf_ode.py)")
    if image and config.data.name not in _LEVELS:
        raise ConfigError(f"no pixel-level count known for dataset {config.data.name!r}")
    step, state = restore_state(config, workdir)
    params = state.ema_params if config.sampling.use_ema else state.params
    model_predictor = run_predictor(config, formulation, model, params)
    x, labels = dataset.sample_reference(config.seed + 5, num_examples, with_labels=True)
    cond = {"label": jnp.asarray(labels)} if getattr(model, "num_classes", 0) and labels is not None else None
    key = jax.random.key(config.seed + 6)
    result: dict = {"step": int(step), "num_examples": int(num_examples)}
    if process.is_discrete:
        values = likelihood_lib.elbo_bits_per_dim(key, model_predictor, process, jnp.asarray(x), cond=cond,
                                                  num_bins=_LEVELS[config.data.name])
        result["method"], name = "elbo (article (二))", "elbo_bits_per_dim"
    elif image:
        values = likelihood_lib.bits_per_dim(key, model_predictor, process, jnp.asarray(x), cond=cond,
                                             num_bins=_LEVELS[config.data.name], divergence="hutchinson")
        result["method"], name = "probability-flow ODE, Hutchinson divergence (article (六))", "bits_per_dim"
    else:
        values = likelihood_lib.log_likelihood(key, model_predictor, process, jnp.asarray(x), cond=cond)
        result["method"], name = "probability-flow ODE, exact divergence (article (六))", "log_likelihood_nats"
        if dataset.log_prob is not None:
            exact = np.asarray(dataset.log_prob(jnp.asarray(x)))
            result["exact_log_likelihood_nats"] = float(exact.mean())
    values = np.asarray(values, np.float64)
    result[name] = float(values.mean())
    result[name + "_stderr"] = float(values.std(ddof=1) / np.sqrt(len(values)))
    if jax.process_index() == 0:
        (workdir / "likelihood.json").write_text(json.dumps(result, indent=2))
    return result
