"""Article (四): DDIM sample quality against the number of steps, for eta in {0, 0.5, 1}.

The model is the exact noise predictor of a 2-D Gaussian mixture on DDPM (T = 1000, linear schedule), so every
error is the sampler's own. DDIM's family `x_s = alpha_s x̂_0 + sqrt(sigma_s^2 - sigma~^2) ε̂ + sigma~ z` with
`sigma~ = eta * (posterior std)` runs on a sub-sequence of `steps` times (trailing spacing: the first step starts
at t = T, from the prior); quality is the sliced Wasserstein-1 distance to a draw from the mixture, next to the
distance between two draws of the mixture itself (the noise floor).

    .venv/bin/python experiments/ddim_eta_steps.py --out experiments/results
"""

from __future__ import annotations

import jax
import matplotlib.pyplot as plt
import numpy as np
from _common import Report, markdown_table, noise_floor, parse_args, sliced_w1, three_component_mixture

import diffjax as dj

NAME = "ddim_eta_steps"
ETAS = (0.0, 0.5, 1.0)


def main(out, quick: bool) -> None:
    report = Report(
        NAME,
        "DDIM: quality against steps for eta in {0, 0.5, 1} (article (四))",
        "DDIM's eta = 0 (deterministic) sampler degrades least when the number of steps is cut; the noisier members "
        "of the family (eta = 0.5, eta = 1 = DDPM with the posterior variance) need more steps for the same quality, "
        "and all converge to the data law as the steps grow (DDIM paper, Table 1; Su's finding (3): shrink sigma "
        "when reducing steps).",
        out,
        quick,
    )
    steps_list = (5, 10, 50, 200) if quick else (5, 10, 20, 50, 100, 200)
    num_samples, seeds = (4000, 1) if quick else (20000, 3)

    data = three_component_mixture()
    process = dj.process("ddpm", num_steps=1000, schedule="linear")
    predictor = data.predictor(process, "eps")
    reference = data.sample(jax.random.key(100), num_samples)
    floor = noise_floor(data, reference)

    distances = {eta: np.zeros((len(steps_list), seeds)) for eta in ETAS}
    for eta in ETAS:
        for i, steps in enumerate(steps_list):
            sampler = dj.sampler("ddim", steps=steps, eta=eta, spacing="trailing")
            for seed in range(seeds):
                x = dj.sample(jax.random.key(seed), predictor, process, sampler, (num_samples, 2))
                distances[eta][i, seed] = sliced_w1(x, reference)
    mean = {eta: d.mean(1) for eta, d in distances.items()}
    std = {eta: d.std(1) for eta, d in distances.items()}

    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for eta in ETAS:
        ax.errorbar(steps_list, mean[eta], yerr=std[eta], marker="o", ms=4, capsize=2, label=f"η = {eta:g}")
    ax.axhspan(floor["mean"] - floor["std"], floor["mean"] + floor["std"], color="0.8", label="data vs data (±1 std)")
    ax.axhline(floor["threshold"], color="0.5", ls="--", lw=1, label="noise threshold (mean + 4 std)")
    ax.set(xscale="log", yscale="log", xlabel="steps (= model evaluations)", ylabel="sliced-W1 to the mixture")
    ax.set_xticks(steps_list, [str(s) for s in steps_list])
    ax.set_title("DDIM with the exact ε on DDPM (T = 1000)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    report.save_figure(fig)

    header = ["steps", *[f"η = {eta:g}" for eta in ETAS]]
    rows = [[steps, *[f"{mean[eta][i]:.4f} ± {std[eta][i]:.4f}" for eta in ETAS]] for i, steps in enumerate(steps_list)]
    report.add(
        f"Sliced-W1 ({num_samples} samples, mean ± std over {seeds} seed(s)) between DDIM samples and a draw of the "
        f"mixture; the noise floor, the distance between two draws of the mixture, is {floor['mean']:.4f} ± "
        f"{floor['std']:.4f} (threshold mean + 4 std = {floor['threshold']:.4f})."
    )
    report.add(markdown_table(header, rows))
    at = {s: i for i, s in enumerate(steps_list)}

    def steps_to_threshold(eta):
        below = [s for i, s in enumerate(steps_list) if mean[eta][i] < floor["threshold"]]
        return str(below[0]) if below else f"> {steps_list[-1]}"

    report.add(
        "Fewest steps whose mean distance is under the noise threshold: "
        + ", ".join(f"η = {eta:g}: {steps_to_threshold(eta)}" for eta in ETAS)
        + f". At 10 steps η = 1 is {mean[1.0][at[10]] / mean[0.0][at[10]]:.2f}x as far from the data as η = 0."
    )
    verdicts = {
        "at 5 and 10 steps eta = 0 is closer to the data than eta = 1": all(
            mean[0.0][at[s]] < mean[1.0][at[s]] for s in (5, 10)
        ),
        "eta = 1 improves from 5 to 200 steps by more than 3x": mean[1.0][at[5]] > 3 * mean[1.0][at[200]],
        "at 200 steps every eta is within 2x the noise threshold": all(
            mean[eta][at[200]] < 2 * floor["threshold"] for eta in ETAS
        ),
    }
    report.write(
        {
            "steps": list(steps_list),
            "num_samples": num_samples,
            "seeds": seeds,
            "noise_floor": floor,
            "sliced_w1": {f"{eta:g}": distances[eta] for eta in ETAS},
            "sliced_w1_mean": {f"{eta:g}": mean[eta] for eta in ETAS},
        },
        verdicts,
    )


if __name__ == "__main__":
    args = parse_args(__doc__)
    main(args.out, args.quick)
