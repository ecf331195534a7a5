"""Sampling and evaluation from a run directory: `W/samples/{samples.npz, samples.png, metrics.json}`."""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from .config import ConfigError, apply_overrides, from_json
from .experiment import build_dataset, build_formulation, predictor, sample_labels, validate
from .samplers import sample

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


def generate(config: ConfigDict, formulation, model, params, data_shape, num_samples: int, *,
             seed: int | None = None):
    """Draws `num_samples` samples in equal batches of `sampling.batch_size`; returns `(samples, labels)`.

    Conditional models get round-robin labels. Every batch reuses one compiled sampler.
    """
    batch = min(int(config.sampling.batch_size), num_samples)
    num_batches = -(-num_samples // batch)
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    labels = sample_labels(num_batches * batch, num_classes) if num_classes else None
    key = jax.random.key(config.seed + 1 if seed is None else seed)
    model_predictor = predictor(model, params, formulation.prediction)
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
    samples, labels = generate(config, formulation, model, params, tuple(dataset.data_shape), num)
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
