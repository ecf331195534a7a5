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
    build_formulation(config, build_dataset(config))  # validates overrides (e.g. a sampler) before compiling
    return config


def run_predictor(config: ConfigDict, formulation, model, params, *, variance_table=None, workdir=None,
                  dataset=None) -> Predictor:
    """The trained network as the sampler sees it: with classifier-free guidance when `guidance.cfg_scale`
    is set (article (九)) and with its x_0-variance table for `sampler.variance='analytic'` (七).

    Given the run's `workdir` (and `dataset`), it also brings in what second stages trained there: the noisy
    classifier of `guidance.classifier_scale` (九) and the NPR/SN variance head of `sampler.variance` (八).
    """
    terms = getattr(formulation.objective, "terms", None)
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
    if workdir is not None:
        from .training import stages

        if stages.uses_variance_head(config):
            model_predictor = with_x0_variance(model_predictor, stages.variance_head(config, pathlib.Path(workdir)))
        if stages.uses_classifier(config):
            model_predictor = stages.classifier_guided(config, pathlib.Path(workdir), formulation, model_predictor,
                                                       dataset)
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
             seed: int | None = None, variance_table=None, workdir=None, dataset=None, mesh=None):
    """Draws `num_samples` samples in equal batches of `sampling.batch_size`; returns `(samples, labels)`.

    Each batch is split over all devices of `mesh` (default: the run's mesh, with `training.fsdp`): the prior
    draw `x_T` and the labels are placed row-sharded and XLA partitions the whole jitted sampler along the batch,
    so D devices draw a D times larger `sampling.batch_size` in one call. A batch that the device count does not
    divide is padded up to the next multiple and the extra rows are dropped. Batch i draws from
    `fold_in(key, i)` exactly as an unsharded `sample` call would, so with the same (padded) batch size the
    samples equal a single device's to rounding. `params` must live on `mesh`'s devices (as `train` and
    `restore_state` leave them, FSDP-sharded or not) or be uncommitted.

    Conditional models get round-robin labels. Every batch reuses one compiled sampler.
    """
    from .training import mesh as mesh_lib
    from .training.loop import make_mesh

    mesh = make_mesh(config) if mesh is None else mesh
    rows = mesh_lib.batch_sharding(mesh)
    batch = mesh_lib.padded_batch(min(int(config.sampling.batch_size), num_samples), mesh)
    num_batches = -(-num_samples // batch)
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    if config.guidance.classifier_scale is not None:  # an unconditional model steered to round-robin classes
        num_classes = int(dataset.num_classes)
    labels = sample_labels(num_batches * batch, num_classes) if num_classes else None
    key = jax.random.key(config.seed + 1 if seed is None else seed)
    model_predictor = run_predictor(config, formulation, model, params, variance_table=variance_table,
                                    workdir=workdir, dataset=dataset)
    shape = (batch, *data_shape)
    prior = jax.jit(lambda k: formulation.sampler.prior(k, formulation.process, shape), out_shardings=rows)
    host_labels = None if labels is None else np.asarray(labels)
    chunks = []
    for i in range(num_batches):
        run_key, prior_key = jax.random.split(jax.random.fold_in(key, i))  # the split `sample` makes without x_init
        cond = None
        if host_labels is not None:
            part = host_labels[i * batch:(i + 1) * batch]
            cond = {"label": jax.make_array_from_callback(part.shape, rows, lambda index, part=part: part[index])}
        x = sample(run_key, model_predictor, formulation.process, formulation.sampler, shape, cond=cond,
                   x_init=prior(prior_key))
        if not x.is_fully_addressable:  # several processes: every one gets all rows
            from jax.experimental import multihost_utils

            x = multihost_utils.process_allgather(x, tiled=True)
        chunks.append(np.asarray(x))
    samples = np.concatenate(chunks)[:num_samples]
    return samples, (None if labels is None else np.asarray(labels)[:num_samples])


def write_samples(out: pathlib.Path, samples: np.ndarray, labels: np.ndarray | None, *,
                  images: np.ndarray | None = None) -> list[pathlib.Path]:
    """Writes `samples.npz` (key `samples`, and `labels` when conditional) and `samples.png` (of `images`, the
    samples as pictures, when given: e.g. token sequences of a binarised image set)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    arrays = {"samples": samples} if labels is None else {"samples": samples, "labels": labels}
    np.savez(out / "samples.npz", **arrays)
    fig_path = out / "samples.png"
    samples = samples if images is None else images
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


def as_images(samples: np.ndarray, dataset) -> np.ndarray:
    """Token samples of a binarised image set as images in [-1, 1] `(n, H, W, 1)` (other samples unchanged)."""
    side = int(round(np.sqrt(samples.shape[-1])))
    if getattr(dataset, "vocab_size", None) != 2 or samples.ndim != 2 or side * side != samples.shape[-1]:
        return samples
    return (2.0 * samples.astype(np.float32) - 1.0).reshape(len(samples), side, side, 1)


def evaluate_samples(config: ConfigDict, samples: np.ndarray, dataset, labels: np.ndarray | None = None) -> dict:
    """Metrics of samples against the data: toy sets, digits (classifier) or images (FID).

    With the `labels` the samples were drawn for, `class_accuracy` is the fraction the data's own classifier
    assigns to them: the exact Bayes classifier of the toy mixture, the digits classifier for digits.
    """
    from . import evaluation

    name = config.data.name
    if name == "toy2d":
        metrics = {k: float(v) for k, v in evaluation.toy_metrics(jax.random.key(config.seed + 2),
                                                                  jnp.asarray(samples), dataset).items()}
        if labels is not None and dataset.oracle is not None:
            assigned = np.asarray(dataset.oracle.responsibilities(jnp.asarray(samples))).argmax(-1)
            metrics["class_accuracy"] = float(np.mean(assigned == labels))
        return metrics
    if name == "binary_digits":  # 64 binary tokens are an 8x8 image in {-1, 1}
        samples = as_images(samples, dataset)
    if name in ("digits", "binary_digits"):
        classifier = evaluation.load_digits_classifier(config.evaluation.classifier_path)
        metrics = {k: float(v) for k, v in evaluation.digits_metrics(samples, classifier).items()}
        if labels is not None:
            logits, _ = classifier.logits_and_features(samples)
            metrics["class_accuracy"] = float(np.mean(np.asarray(logits).argmax(-1) == labels))
        return metrics
    if config.evaluation.inception_path is None:
        return {"note": "FID skipped: set evaluation.inception_path to local InceptionV3 weights"}
    reference = dataset.sample_reference(config.seed + 3, config.evaluation.num_reference)
    return {"fid": float(evaluation.fid(samples, reference, config.evaluation.inception_path))}


def sample_and_evaluate(config: ConfigDict, workdir: str | pathlib.Path, *, params_state=None,
                        num_samples: int | None = None) -> dict:
    """Samples with the run's (EMA) weights, writes `W/samples/`, evaluates, writes `metrics.json`."""

    workdir = pathlib.Path(workdir)
    formulation, dataset, model = validate(config)
    if params_state is None:
        from .training.stages import sampling_state

        _, params_state = sampling_state(config, workdir)
    params = params_state.ema_params if config.sampling.use_ema else params_state.params
    num = int(num_samples or config.sampling.num_samples)
    table = None
    if needs_variance_table(formulation):
        table = x0_variance_table(config, formulation, model, params, dataset, workdir, int(params_state.step))
    samples, labels = generate(config, formulation, model, params, tuple(dataset.data_shape), num,
                               variance_table=table, workdir=workdir, dataset=dataset)
    out = workdir / SAMPLES_DIR
    paths = write_samples(out, samples, labels, images=as_images(samples, dataset)) if jax.process_index() == 0 else []
    metrics = evaluate_samples(config, samples, dataset, labels)
    if jax.process_index() == 0:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        paths.append(out / "metrics.json")
    return {"samples": [str(p) for p in paths], "metrics": metrics}


def evaluate_workdir(config: ConfigDict, workdir: str | pathlib.Path) -> dict:
    """Re-evaluates `W/samples/samples.npz`; writes and returns `metrics.json`."""
    path = pathlib.Path(workdir) / SAMPLES_DIR / "samples.npz"
    if not path.exists():
        raise ConfigError(f"no samples at {str(path)!r}; run: diffjax sample --workdir {workdir}")
    with np.load(path) as saved:
        samples, labels = saved["samples"], saved["labels"] if "labels" in saved.files else None
    metrics = evaluate_samples(config, samples, build_dataset(config), labels)
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
