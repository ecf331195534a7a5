"""Articles (五), (六), (二十一) and EDM: sampling error against the number of model evaluations, per solver.

The model is the exact score of a 2-D Gaussian mixture on the VP process, so the probability-flow ODE is known
exactly and every error is the solver's. Deterministic samplers start from the same `x_T` as a very fine reference
solve (diffrax tsit5, rtol = atol = 1e-10, float64); their error is the mean distance of their end points to the
reference's. Every sampler, the stochastic Euler–Maruyama on the reverse SDE included, is also scored by the
sliced Wasserstein-1 distance of its samples to a draw of the mixture. Solvers: EDM's Euler (= DDIM) and Heun on
the rho = 7 grid of sigma/alpha, DPM-Solver++(2M) uniform in log-SNR, Euler–Maruyama (article (五)) uniform in t,
and adaptive tsit5 at several tolerances.

    .venv/bin/python experiments/ode_solvers_nfe.py --out experiments/results
"""

from __future__ import annotations

import time

import jax

jax.config.update("jax_enable_x64", True)  # the reference solve is accurate far below the solvers' errors

import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _common import Report, markdown_table, noise_floor, parse_args, sliced_w1, three_component_mixture  # noqa: E402

import diffjax as dj  # noqa: E402

NAME = "ode_solvers_nfe"
DETERMINISTIC = ("Euler (EDM, = DDIM)", "Heun (EDM)", "DPM-Solver++ 2M", "tsit5 (adaptive)")


def samplers(quick: bool) -> dict:
    """label -> list of (knob value, sampler): steps for the fixed-step solvers, tolerance for tsit5."""
    if quick:
        steps = {"euler": (10, 200), "heun": (5, 100), "dpm": (10, 50), "em": (5, 200), "tol": (1e-3, 1e-6)}
    else:
        steps = {
            "euler": (5, 10, 20, 50, 100, 200, 500),
            "heun": (3, 5, 10, 18, 25, 50, 100, 250),
            "dpm": (5, 10, 20, 50, 100, 200),
            "em": (5, 10, 20, 50, 100, 200, 500, 1000),
            "tol": (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7),
        }
    return {
        "Euler (EDM, = DDIM)": [(n, dj.sampler("euler", steps=n)) for n in steps["euler"]],
        "Heun (EDM)": [(n, dj.sampler("heun", steps=n)) for n in steps["heun"]],
        "DPM-Solver++ 2M": [(n, dj.sampler("dpm_solver", steps=n)) for n in steps["dpm"]],
        "tsit5 (adaptive)": [(tol, dj.sampler("ode", rtol=tol, atol=tol)) for tol in steps["tol"]],
        "Euler–Maruyama (reverse SDE)": [(n, dj.sampler("euler_maruyama", steps=n)) for n in steps["em"]],
    }


def slope(nfe, error, last: int = 3) -> float:
    """The log-log slope of error against NFE over the `last` points: minus the observed order."""
    return float(np.polyfit(np.log(nfe[-last:]), np.log(error[-last:]), 1)[0])


def main(out, quick: bool) -> None:
    report = Report(
        NAME,
        "ODE and SDE samplers: error against model evaluations (articles (五), (六), (二十一), EDM)",
        "The probability-flow ODE (六) turns sampling into a deterministic ODE solve, so the standard numerical "
        "tools apply: Euler (= DDIM) converges at order 1, EDM's Heun at order 2 for 2 evaluations per step, "
        "DPM-Solver++(2M) at order 2 for 1 evaluation per step and best at few evaluations, and adaptive "
        "Runge–Kutta (tsit5) trades evaluations for accuracy through its tolerance; (二十一): at very few "
        "evaluations a second-order step can lose to Euler. The reverse SDE (五) has no pathwise limit to compare "
        "with; its law converges with the steps.",
        out,
        quick,
    )
    num_samples = 2000 if quick else 10000
    data = three_component_mixture()
    process = dj.process("vp")
    predictor = data.predictor(process, "score")
    x_T = process.prior_sample(jax.random.key(0), (num_samples, 2))
    reference_law = data.sample(jax.random.key(100), num_samples)
    floor = noise_floor(data, reference_law, num_draws=4 if quick else 8)

    def run(sampler):
        start = time.perf_counter()
        x, info = dj.sample(jax.random.key(1), predictor, process, sampler, x_T.shape, x_init=x_T, return_info=True)
        return jax.block_until_ready(x), int(info["nfe"]), time.perf_counter() - start

    tight = dj.sampler("ode", rtol=1e-10, atol=1e-10, max_steps=100_000)
    looser = dj.sampler("ode", rtol=1e-9, atol=1e-9, max_steps=100_000)
    x_ref, ref_nfe, _ = run(tight)
    ref_accuracy = float("nan")
    if not quick:
        x_check, _, _ = run(looser)
        ref_accuracy = float(jnp.linalg.norm(x_check - x_ref, axis=-1).mean())

    results = {}
    for label, entries in samplers(quick).items():
        rows = []
        for knob, sampler in entries:
            x, nfe, seconds = run(sampler)
            gap = np.asarray(jnp.linalg.norm(x - x_ref, axis=-1))
            rows.append(
                {
                    "knob": knob,
                    "nfe": nfe,
                    "mean_error": float(gap.mean()),
                    "median_error": float(np.median(gap)),
                    "sliced_w1": sliced_w1(x, reference_law),
                    "seconds": seconds,
                }
            )
        results[label] = rows

    def column(label, key):
        return np.asarray([r[key] for r in results[label]])

    table_rows = []
    for label, rows in results.items():
        knob_name = "tol" if "tsit5" in label else "steps"
        for r in rows:
            error = r["mean_error"] if label in DETERMINISTIC else float("nan")
            table_rows.append([label, f"{knob_name} = {r['knob']:g}", r["nfe"], error, r["sliced_w1"]])
    report.add(
        f"{num_samples} samples from one fixed x_T (float64). End-point error = mean Euclidean distance to the "
        f"reference solve (tsit5 at 1e-10, {ref_nfe} evaluations; "
        + ("not checked in a quick run" if quick else f"its distance to a 1e-9 solve is {ref_accuracy:.1e}")
        + "); it is not defined for the stochastic sampler (nan). Sliced-W1 to a mixture draw: "
        f"noise floor {floor['mean']:.4f} ± {floor['std']:.4f}, threshold {floor['threshold']:.4f}."
    )
    report.add(markdown_table(["sampler", "knob", "NFE", "end-point error", "sliced-W1"], table_rows))

    orders = {label: -slope(column(label, "nfe"), column(label, "mean_error")) for label in DETERMINISTIC[:3]}
    report.add(
        "Observed order (minus the log-log slope of the error over the three largest NFEs): "
        + ", ".join(f"{label}: {order:.2f}" for label, order in orders.items())
        + "."
    )

    def error_at_most(label, budget):
        """The error of `label`'s largest NFE not above `budget`."""
        nfe, err = column(label, "nfe"), column(label, "mean_error")
        return float(err[nfe <= budget][-1])

    euler, heun, dpm = (results[label] for label in DETERMINISTIC[:3])
    tsit = results["tsit5 (adaptive)"]
    em = results["Euler–Maruyama (reverse SDE)"]
    verdicts = {
        "Heun's error at its largest NFE is below Euler's at its largest NFE": heun[-1]["mean_error"]
        < euler[-1]["mean_error"],
        "DPM-Solver++(2M) at 10 evaluations is more accurate than Euler at 10": error_at_most("DPM-Solver++ 2M", 10)
        < error_at_most("Euler (EDM, = DDIM)", 10),
        "Euler converges at order 1 and Heun at order 2 (within ±0.4)": abs(orders["Euler (EDM, = DDIM)"] - 1) < 0.4
        and abs(orders["Heun (EDM)"] - 2) < 0.4,
        "tsit5's error falls as its tolerance tightens": tsit[-1]["mean_error"] < tsit[0]["mean_error"],
        "at 9 or fewer evaluations Heun is less accurate than Euler at 10 (二十一)": error_at_most("Heun (EDM)", 9)
        > error_at_most("Euler (EDM, = DDIM)", 10),
        "the reverse SDE's law is off at 5 steps (sliced-W1 above the noise threshold) and within it at its most "
        "steps": em[-1]["sliced_w1"] < floor["threshold"] < em[0]["sliced_w1"],
    }
    if quick:  # two-point runs have no order to fit
        del verdicts["Euler converges at order 1 and Heun at order 2 (within ±0.4)"]

    fig, (ax_err, ax_law) = plt.subplots(1, 2, figsize=(10, 3.9))
    markers = dict(zip(results, "osD^v", strict=True))
    for label in results:
        nfe = column(label, "nfe")
        if label in DETERMINISTIC:
            ax_err.plot(nfe, column(label, "mean_error"), marker=markers[label], ms=4, label=label)
        ax_law.plot(nfe, column(label, "sliced_w1"), marker=markers[label], ms=4, label=label)
    guide = np.asarray([10.0, 500.0])
    ax_err.plot(guide, 0.5 * (guide / 10) ** -1.0, color="0.6", ls=":", lw=1, label="order 1, order 2 guides")
    ax_err.plot(guide, 0.05 * (guide / 10) ** -2.0, color="0.6", ls=":", lw=1)
    ax_err.set(xscale="log", yscale="log", xlabel="model evaluations (NFE)", ylabel="mean end-point error")
    ax_err.set_title("distance to the exact ODE solution (same x_T)", fontsize=10)
    ax_err.legend(fontsize=7)
    ax_law.axhspan(floor["mean"] - floor["std"], floor["mean"] + floor["std"], color="0.85", label="data vs data")
    ax_law.set(xscale="log", yscale="log", xlabel="model evaluations (NFE)", ylabel="sliced-W1 to the mixture")
    ax_law.set_title("sample quality (exact score, VP)", fontsize=10)
    ax_law.legend(fontsize=7)
    fig.tight_layout()
    report.save_figure(fig)

    report.write(
        {
            "num_samples": num_samples,
            "reference": {"nfe": ref_nfe, "distance_to_1e-9_solve": ref_accuracy},
            "noise_floor": floor,
            "results": results,
            "observed_orders": orders,
        },
        verdicts,
    )


if __name__ == "__main__":
    args = parse_args(__doc__)
    main(args.out, args.quick)
