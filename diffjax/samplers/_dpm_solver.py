"""DPM-Solver++ (Lu et al. 2022): exponential integrators of the data-prediction ODE in log(alpha/sigma)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_choice
from ._base import GridSampler, check_above_data, check_alpha_at_t_max, check_steps, predict_x0_eps

METHODS = ("multistep", "singlestep")


def discrete_log_snr_grid(process, num_steps: int):
    """The integer steps nearest to `num_steps` log-SNRs spaced uniformly from step T to step 1, descending;
    steps that round together are merged, so it may return fewer."""
    ends = process.log_snr(jnp.asarray([process.t_max, process.t_min]))
    targets = jnp.linspace(ends[0], ends[1], int(num_steps))
    steps = np.unique(np.asarray(process.t_from_log_snr(targets)))[::-1]
    return jnp.asarray(steps.copy(), dtype=jnp.int32)


@dataclasses.dataclass(frozen=True)
class DPMSolver(GridSampler):
    """DPM-Solver++: solves the probability-flow ODE in `lambda = log(alpha/sigma)` with data prediction.

    In `lambda` the ODE's linear part integrates exactly; with `D = x̂_0` a step t -> s, `h = lambda_s -
    lambda_t`, is (DPM-Solver++, Algorithms 1 and 2)

        x_s = (sigma_s / sigma_t) x_t - alpha_s (e^{-h} - 1) D_t,

    first order (= deterministic DDIM, article (四)), one model evaluation. Second order corrects `D`:

    * `multistep` (2M, default): `D = D_t + (D_t - D_prev) h / (2 h_prev)` with the previous step's
      prediction, still one evaluation per step (the first step is first order: there is no previous one);
    * `singlestep` (2S): an intermediate time `u` at `lambda_t + h/2` (rounded to the process's time),
      `x_u` by the first-order step, `D = D_t + (D(x_u) - D_t) / (2 r)` with `r = (lambda_u - lambda_t)/h`,
      two evaluations per step.

    The last grid time jumps to clean data (`lambda = inf`) with x̂_0 there: the first-order step to sigma = 0,
    as the paper recommends for the final step (`lower_order_final`). So `steps` grid times cost `steps`
    evaluations with `multistep` or order 1, and `2 steps - 1` with `singlestep` order 2. A step from
    alpha = 0 (the flow at t = 1, lambda = -inf) is first order, since `e^{-h} = 0` there.

    Unlike the ODE samplers in t it runs on a discrete process too (DDPM's integer steps): it needs only
    `alpha` and `sigma` at the times it queries.

    Attributes:
        method: `multistep` or `singlestep`.
        order: 1 or 2.
        steps: grid times (default 20: 20 evaluations for 2M).
        spacing: None takes `log_snr` (uniform in lambda, the paper's choice) where the log-SNR is finite at
            both ends of the process (on DDPM: the nearest integer steps, merged where they coincide); else the
            process's default (uniform t for the flow, whose log-SNR is infinite at t = 0 and t = 1).
    """

    method: str = "multistep"
    order: int = 2
    steps: int | None = 20

    name = "dpm_solver"

    def validate(self, process, predictor):
        own_spacing = process.is_discrete and self.spacing == "log_snr"  # not among DDPM's own spacings
        GridSampler.validate(dataclasses.replace(self, spacing=None) if own_spacing else self, process, predictor)
        check_choice("dpm_solver method", self.method, METHODS)
        if self.order not in (1, 2):
            raise ValueError(f"sampler 'dpm_solver': order must be 1 or 2, got {self.order!r}")
        if not process.is_discrete:
            check_steps(self.name, self.steps)
        check_alpha_at_t_max(self.name, process, predictor)
        check_above_data(self.name, process, self.grid(process))

    def resolved_spacing(self, process) -> str:
        if self.spacing is not None:
            return self.spacing
        if process.is_discrete:
            return "log_snr"
        with jax.ensure_compile_time_eval():
            ends = jnp.asarray([process.t_max, process.t_min], jnp.float32)
            finite = bool(jnp.all(jnp.isfinite(process.log_snr(ends))))
        if "log_snr" in process.spacings and finite:
            return "log_snr"
        return process.default_spacing

    def _grid(self, process):
        if self.timesteps is not None:
            return super()._grid(process)
        steps = self.steps if self.steps is not None else process.num_steps
        spacing = self.resolved_spacing(process)
        if process.is_discrete and spacing == "log_snr":
            return discrete_log_snr_grid(process, steps)
        return process.timesteps(steps, spacing, self.rho)

    def x0(self, predictor, process, x, t, cond):
        return predict_x0_eps(predictor, process, x, t, cond, self.clip_range if self.clip_x0 else None)[0]

    def run(self, key, predictor, process, x_init, cond):
        ts = self.grid(process)
        n = ts.shape[0]
        dtype = x_init.dtype

        def log_alpha_sigma(t):
            """`(lambda, alpha, sigma)` at t; lambda = -inf where alpha = 0."""
            alpha, sigma = process.alpha(t), process.sigma(t)
            return jnp.log(alpha) - jnp.log(sigma), alpha, sigma

        def first_order(x, x0, sigma_t, alpha_s, sigma_s, h):
            """`x_s = (sigma_s/sigma_t) x_t + alpha_s (1 - e^{-h}) x̂_0`, exact for h = inf (from alpha = 0)."""
            return ((sigma_s / sigma_t) * x - alpha_s * jnp.expm1(-h) * x0).astype(dtype)

        if self.order == 1 or self.method == "multistep":

            def step(carry, inputs):
                x, x0_prev, h_prev = carry
                t, s = inputs
                lam_t, _, sigma_t = log_alpha_sigma(t)
                lam_s, alpha_s, sigma_s = log_alpha_sigma(s)
                h = lam_s - lam_t
                x0 = self.x0(predictor, process, x, t, cond)
                x0_hat = x0
                if self.order == 2:  # 2M: weight h / (2 h_prev), 0 on the first step and after one from lambda = -inf
                    finite = jnp.isfinite(h_prev)
                    weight = jnp.where(finite, h / (2.0 * jnp.where(finite, h_prev, 1.0)), 0.0)
                    x0_hat = x0 + weight * (x0 - x0_prev)
                return (first_order(x, x0_hat, sigma_t, alpha_s, sigma_s, h), x0, h), None

            with jax.ensure_compile_time_eval():
                h_start = jnp.full((), jnp.inf, log_alpha_sigma(ts[0])[0].dtype)
            start = (x_init, jnp.zeros_like(x_init), h_start)
            (x, _, _), _ = jax.lax.scan(step, start, (ts[:-1], ts[1:]))
            nfe = n
        else:
            x, nfe = self._singlestep(predictor, process, x_init, ts, cond, log_alpha_sigma, first_order)
        x0 = self.x0(predictor, process, x, ts[-1], cond)
        return self.clip(x0) if self.clip_final else x0, {"nfe": jnp.asarray(nfe, jnp.int32)}

    def _singlestep(self, predictor, process, x_init, ts, cond, log_alpha_sigma, first_order):
        """DPM-Solver++(2S) over the grid; a step from lambda = -inf is first order. Returns `(x, nfe)`."""
        n = ts.shape[0]
        with jax.ensure_compile_time_eval():
            first = 1 if n > 1 and float(process.alpha(ts[0])) == 0.0 else 0

        def step(x, inputs):
            t, s = inputs
            lam_t, _, sigma_t = log_alpha_sigma(t)
            lam_s, alpha_s, sigma_s = log_alpha_sigma(s)
            h = lam_s - lam_t
            u = process.t_from_log_snr(lam_t + lam_s).astype(t.dtype)  # log-SNR 2 lambda at the midpoint
            lam_u, alpha_u, sigma_u = log_alpha_sigma(u)
            r = (lam_u - lam_t) / h  # 1/2 up to the rounding of u; 0 if u rounds onto t: then first order
            x0 = self.x0(predictor, process, x, t, cond)
            x_u = first_order(x, x0, sigma_t, alpha_u, sigma_u, lam_u - lam_t)
            weight = jnp.where(r > 0, 0.5 / jnp.where(r > 0, r, 1.0), 0.0)
            x0_u = self.x0(predictor, process, x_u, u, cond)
            return first_order(x, x0 + weight * (x0_u - x0), sigma_t, alpha_s, sigma_s, h), None

        x = x_init
        if first:
            lam_t, _, sigma_t = log_alpha_sigma(ts[0])
            lam_s, alpha_s, sigma_s = log_alpha_sigma(ts[1])
            x = first_order(x, self.x0(predictor, process, x, ts[0], cond), sigma_t, alpha_s, sigma_s, lam_s - lam_t)
        x, _ = jax.lax.scan(step, x, (ts[first:-1], ts[first + 1 :]))
        return x, first + 2 * (n - 1 - first) + 1
