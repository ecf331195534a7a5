"""Article (十一) item 4: masked generation of binarised digits, and what unmasking several tokens per step costs.

A small bidirectional Transformer is trained through the runner (`diffjax.training.train_and_evaluate`) from
`configs/udm_mask.py`: binarised 8x8 digits as 64 tokens, t of them replaced by [MASK], cross-entropy at the masked
positions. The unmask sampler starts from all masks and, each step, samples k masked positions from the model's
`q(x_0 | x_t)` and unmasks them: k = 1 is any-order autoregressive sampling (64 model evaluations), k > 1 draws k
tokens independently from the same logits (64 / k evaluations), exact only if they were conditionally independent.
Samples for k in {1, 4, 16, 64} are turned into images (`diffjax.generate.as_images`) and scored by the digits
classifier of `diffjax.evaluation`; the binarised digits themselves are the reference rows.

    .venv/bin/python experiments/masked_digits.py --out experiments/results
"""

from __future__ import annotations

import pathlib
import tempfile
import time

import jax
import matplotlib.pyplot as plt
import numpy as np
from _common import Report, digit_grid, markdown_table, parse_args

import diffjax as dj
from diffjax import evaluation
from diffjax.config import apply_overrides, load_config
from diffjax.data import load_dataset
from diffjax.experiment import predictor, validate
from diffjax.generate import as_images
from diffjax.training import restore_state, train_and_evaluate

NAME = "masked_digits"
ROOT = pathlib.Path(__file__).resolve().parent.parent
UNMASK_PER_STEP = (1, 4, 16, 64)
METRICS = ("confidence", "class_coverage", "class_entropy", "frechet_distance")


def sizes(quick: bool) -> dict:
    """Training and sampling sizes: the quick run is a smoke test whose numbers still show the claim."""
    if quick:
        return {"steps": 2000, "width": 32, "layers": 2, "heads": 2, "samples": 400, "ema": 0.99}
    return {"steps": 4500, "width": 32, "layers": 2, "heads": 2, "samples": 1000, "ema": 0.995}


def train_config(size: dict):
    """`configs/udm_mask.py:digits` with the experiment's sizes as runner overrides; returns config and overrides."""
    steps = size["steps"]
    overrides = [
        f"model.width={size['width']}",
        f"model.num_layers={size['layers']}",
        f"model.num_heads={size['heads']}",
        "model.mlp_ratio=2.0",
        f"training.num_steps={steps}",
        "training.batch_size=64",
        f"training.ema_decay={size['ema']}",
        "optimizer.learning_rate=6e-3",
        "optimizer.decay=constant",
        "optimizer.warmup_steps=50",
        f"training.log_every={steps}",
        f"training.checkpoint_every={steps}",
        "training.progress_bar=False",
        f"sampling.num_samples={size['samples']}",
        f"sampling.batch_size={size['samples']}",
    ]
    return apply_overrides(load_config(str(ROOT / "configs" / "udm_mask.py:digits")), overrides), overrides


def measure(images: np.ndarray, classifier) -> dict:
    """Digits metrics, the class histogram and the ink fraction of images in {-1, 1}."""
    metrics = evaluation.digits_metrics(images, classifier)
    return {
        **{k: float(metrics[k]) for k in METRICS},
        "class_histogram": np.bincount(classifier.predict(images), minlength=10).tolist(),
        "ink": float(np.mean(images > 0)),
    }


def main(out, quick: bool) -> None:
    report = Report(
        NAME,
        "Masked generation of binarised digits: tokens per step against quality (article (十一))",
        "Masking is a corruption too: a non-autoregressive Transformer trained to fill in masked tokens generates "
        "digits by unmasking from an all-[MASK] sequence. Unmasking one token per step (64 model evaluations) is "
        "any-order autoregressive sampling; unmasking k tokens per step cuts the evaluations to 64 / k but draws "
        "those k tokens independently given the visible ones. Little is lost at k = 4 (16 evaluations), quality "
        "falls clearly by k = 16, and at k = 64 (one evaluation) every pixel is drawn from its marginal alone.",
        out,
        quick,
    )
    size = sizes(quick)
    n = size["samples"]
    config, overrides = train_config(size)
    shown = [o for o in overrides if not o.startswith(("training.log", "training.check", "training.prog", "sampling."))]
    classifier = evaluation.load_digits_classifier()

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = train_and_evaluate(config, tmp)
        train_seconds = time.perf_counter() - start
        _, state = restore_state(config, tmp)
    formulation, dataset, model = validate(config)
    test_tokens = load_dataset("binary_digits", split="test").arrays()["x"]
    train_tokens = dataset.arrays()["x"][:n]
    model_predictor = predictor(model, state.ema_params, formulation.prediction)

    rows = {
        f"binarised test digits ({len(test_tokens)})": (as_images(np.asarray(test_tokens), dataset), None, None),
        f"binarised train digits (first {n})": (as_images(np.asarray(train_tokens), dataset), None, None),
    }
    for k in UNMASK_PER_STEP:
        sampler = dj.sampler("unmask", unmask_per_step=k, order="random", temperature=1.0)
        start = time.perf_counter()
        tokens, info = dj.sample(
            jax.random.key(10 + k), model_predictor, formulation.process, sampler, (n, 64), return_info=True
        )
        tokens = np.asarray(tokens)
        rows[f"unmask k = {k}"] = (as_images(tokens, dataset), int(info["nfe"]), time.perf_counter() - start)
    results = {}
    for label, (images, nfe, seconds) in rows.items():
        results[label] = {"nfe": nfe, "sample_seconds": seconds, **measure(images, classifier)}

    report.add(
        f"Transformer of width {size['width']}, {size['layers']} layers, {size['heads']} heads, trained for "
        f"{size['steps']} steps, batch 64, through the runner with overrides `{' '.join(shown)}` "
        f"({train_seconds:.0f} s with the runner's own sampling at k = 1; final masked cross-entropy "
        f"{summary['train']['loss']:.3f} nats per masked token). {n} samples per k, random order, temperature 1. "
        "The digits classifier was trained on grey-level digits, so even binarised data score below grey-level "
        "data: the reference rows are the binarised digits (the test row's Fréchet distance is to itself; the "
        "train row gives the floor at the samples' size)."
    )
    header = [
        "samples",
        "NFE",
        "confidence",
        "classes ≥ 2%",
        "class entropy (max 2.303)",
        "Fréchet distance",
        "ink fraction",
    ]
    table = [
        [
            label,
            "" if r["nfe"] is None else r["nfe"],
            r["confidence"],
            r["class_coverage"],
            r["class_entropy"],
            r["frechet_distance"],
            r["ink"],
        ]
        for label, r in results.items()
    ]
    report.add(markdown_table(header, table))
    report.add(
        "Predicted-class histograms (classes 0..9):\n\n"
        + markdown_table(["samples", *map(str, range(10))], [[k, *r["class_histogram"]] for k, r in results.items()])
    )
    by_k = {k: results[f"unmask k = {k}"] for k in UNMASK_PER_STEP}
    fd = [by_k[k]["frechet_distance"] for k in UNMASK_PER_STEP]
    runner_fd = summary["metrics"].get("frechet_distance")
    report.add(
        f"The runner's own evaluation of its k = 1 samples (other keys): Fréchet distance {runner_fd:.4g}, "
        f"confidence {summary['metrics'].get('confidence', float('nan')):.4g}."
    )
    verdicts = {
        "NFE is 64 / k": all(by_k[k]["nfe"] == 64 // k for k in UNMASK_PER_STEP),
        "k = 1 is closer to the data (Fréchet distance) than k = 16": by_k[1]["frechet_distance"]
        < by_k[16]["frechet_distance"],
        "k = 16 is closer to the data than k = 64 (independent pixels)": by_k[16]["frechet_distance"]
        < by_k[64]["frechet_distance"],
        "k = 64 samples (independent pixels) have a lower class entropy than k = 1 samples": by_k[64]["class_entropy"]
        < by_k[1]["class_entropy"],
        "k = 1 samples cover every class (at least 2% each)": by_k[1]["class_coverage"] == 10,
    }

    shown = [label for label in rows if not label.startswith("binarised test")]
    fig, axes = plt.subplots(2, 3, figsize=(10.5, 7.2))
    for ax, label in zip(axes.flat, shown, strict=False):
        images, nfe, _ = rows[label]
        ax.imshow(digit_grid(images), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(label if nfe is None else f"{label} (NFE {nfe})", fontsize=9)
        ax.axis("off")
    ax = axes.flat[-1]
    ax.plot([by_k[k]["nfe"] for k in UNMASK_PER_STEP], fd, marker="o", label="samples")
    for k, value in zip(UNMASK_PER_STEP, fd, strict=True):
        ax.annotate(f"k={k}", (by_k[k]["nfe"], value), fontsize=8, xytext=(4, 4), textcoords="offset points")
    floor = results[f"binarised train digits (first {n})"]["frechet_distance"]
    ax.axhline(floor, color="0.5", ls=":", label=f"binarised train digits ({n})")
    ax.set(xscale="log", yscale="log", xlabel="NFE = 64 / k", ylabel="Fréchet distance (classifier features)")
    ax.set_ylim(0.8 * min(floor, *fd), 1.25 * max(fd))
    ax.set_xticks([1, 4, 16, 64], ["1", "4", "16", "64"])
    ax.legend(fontsize=8)
    ax.set_title("quality against model evaluations", fontsize=9)
    fig.tight_layout()
    report.save_figure(fig)

    report.write(
        {
            "sizes": size,
            "num_samples": n,
            "overrides": overrides,
            "train_seconds": train_seconds,
            "final_loss": summary["train"]["loss"],
            "runner_metrics": summary["metrics"],
            "unmask_per_step": list(UNMASK_PER_STEP),
            "results": results,
        },
        verdicts,
    )


if __name__ == "__main__":
    args = parse_args(__doc__)
    main(args.out, args.quick)
