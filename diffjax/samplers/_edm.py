"""EDM's deterministic and stochastic samplers (Karras et al. 2022, Algorithm 2) on any Gaussian process."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_choice
from ._base import ContinuousSampler, batched_time
from ._noise import step_noise

VARIABLES = ("sigma", "t")


@dataclasses.dataclass(frozen=True)
class EDMHeun(ContinuousSampler):
    """EDM's Algorithm 2: Heun's method on the probability-flow ODE, with optional churn (EDM note).

    Any Gaussian process is written in EDM's scaled variables `x~ = x/alpha`, `sigma~ = sigma/alpha`, where
    `x~ = x_0 + sigma~ eps` and the probability-flow ODE is the DDIM ODE of articles (四)/(六),

        dx~/dsigma~ = ε̂ = (x~ - D(x~; sigma~)) / sigma~,    D = x̂_0,

    and the model is queried at `x = alpha(t) x~` and the time t of the level sigma~ (a grid time, or for a
    churned level `process.t_from_log_snr(-2 log sigma~)`). On the grid of the times' levels
    `sigma~_0 > ... > sigma~_{N-1}`, `sigma~_N = 0` (EDM's rho-schedule by default: `steps = 18`, rho = 7),
    step i first churns, `gamma_i = min(S_churn/N, sqrt(2) - 1)` where `S_tmin <= sigma~_i <= S_tmax`:

        sigma^ = (1 + gamma_i) sigma~_i,   x^ = x~_i + sqrt(sigma^^2 - sigma~_i^2) S_noise z,

    then takes an Euler step `x~_{i+1} = x^ + (sigma~_{i+1} - sigma^) d(x^)` and, unless sigma~_{i+1} = 0,
    Heun's correction with the average of `d(x^)` and `d(x~_{i+1})`. The last step, to sigma~ = 0, is Euler:
    it returns x̂_0 at the last grid time. Heun costs `2N - 1` model evaluations (35 for N = 18), Euler
    (`order = 1`, the `euler` sampler, which is deterministic DDIM on the same grid) `N`.

    Step i's churn noise `z` is `step_noise(key, i, ..., noise_rng)`. With `S_churn = 0` (the default) the
    sampler is deterministic and draws no random numbers at all.
    The churn's `sigma^` may exceed `sigma~(t_max)` at the first step (`S_tmax = inf`); the model is then
    queried at the time whose log-SNR matches, beyond t_max where the process's closed form allows it.

    `variable = "t"` steps the same ODE in the process's own time instead, `dx/dt = alpha' x̂_0 + sigma' ε̂`
    (the `velocity` prediction): the rectified-flow convention, needed where `sigma~(t_max)` is infinite
    (the flow at t = 1, where alpha = 0), and the default for the flow. Its default grid is the process's own
    (uniform in t for the flow). Churn is still measured in sigma~ in that mode.

    Attributes:
        order: 2 (Heun, default) or 1 (Euler).
        S_churn: total churn; 0 is deterministic. EDM's ImageNet-64 setting: 40.
        S_tmin, S_tmax: the sigma~ range in which churn is applied.
        S_noise: the churn noise's inflation (EDM: 1.003 to 1.007).
        variable: `sigma` (EDM's sigma~) or `t`; None takes `sigma` where sigma~ runs between finite, positive
            ends (`vp`, `subvp`, `ve`, `edm`), else `t` (the flow, whose sigma~ runs from infinity, or from
            t_end < 1, down to 0: the rho-schedule to sigma~ = 0 leaves too few steps at moderate noise).
        steps: grid times N (default 18); `spacing` defaults to `edm` (rho-schedule) in sigma~ mode and to
            the process's own spacing in `t` mode.
    """

    order: int = 2
    S_churn: float = 0.0
    S_tmin: float = 0.0
    S_tmax: float = float("inf")
    S_noise: float = 1.0
    variable: str | None = None
    steps: int | None = 18

    name = "heun"

    def validate(self, process, predictor):
        super().validate(process, predictor)
        if self.order not in (1, 2):
            raise ValueError(f"sampler {self.name!r}: order must be 1 (Euler) or 2 (Heun), got {self.order!r}")
        if self.variable is not None:
            check_choice(f"{self.name} variable", self.variable, VARIABLES)
        if not (self.S_churn >= 0 and self.S_noise >= 0 and self.S_tmin <= self.S_tmax):
            raise ValueError(
                f"sampler {self.name!r}: need S_churn >= 0, S_noise >= 0 and S_tmin <= S_tmax, got "
                f"{self.S_churn}, {self.S_noise}, {self.S_tmin}, {self.S_tmax}"
            )
        first = self.grid(process)[:1]
        if self.resolved_variable(process) == "sigma" and not np.isfinite(float(process.edm_sigma(first)[0])):
            raise ValueError(
                f"sampler {self.name!r}: sigma/alpha is infinite at the first time "
                f"{float(first[0])} (alpha = 0); use variable='t', or a process with t_end < 1"
            )

    def resolved_variable(self, process) -> str:
        """`variable`, or by default `sigma` where sigma~ spans a finite, positive range, else `t`."""
        if self.variable is not None:
            return self.variable
        with jax.ensure_compile_time_eval():
            ends = process.edm_sigma(jnp.asarray([process.t_max, process.t_min], jnp.float32))
            sigma_max, sigma_min = (float(v) for v in ends)
        return "sigma" if np.isfinite(sigma_max) and sigma_min > 0 else "t"

    def _grid(self, process):
        if self.timesteps is not None or self.spacing is not None:
            return super()._grid(process)
        spacing = "edm" if self.resolved_variable(process) == "sigma" else process.default_spacing
        return process.timesteps(self.steps, spacing, self.rho)

    def run(self, key, predictor, process, x_init, cond):
        ts = self.grid(process)
        n = ts.shape[0]
        sigma_mode = self.resolved_variable(process) == "sigma"
        gamma = min(float(self.S_churn) / n, math.sqrt(2.0) - 1.0)

        def level(t):
            """`(tau, alpha)` at time t: the integration variable (sigma~ or t) and the scale x = alpha x~."""
            return (process.edm_sigma(t) if sigma_mode else t), process.alpha(t)

        def churn(y, i, t):
            """EDM's churn at grid time t: returns `(y^, t^, tau^, alpha^)`; the identity when S_churn = 0."""
            tau, alpha = level(t)
            if self.S_churn == 0:
                return y, t, tau, alpha
            sigma_tilde = process.edm_sigma(t)
            on = (self.S_tmin <= sigma_tilde) & (sigma_tilde <= self.S_tmax) & jnp.isfinite(sigma_tilde)
            sigma_hat = jnp.where(on, sigma_tilde * (1.0 + gamma), 1.0)
            t_hat = jnp.where(on, process.t_from_edm_sigma(sigma_hat), t).astype(t.dtype)
            tau_hat, alpha_hat = level(t_hat)
            std = jnp.where(on, jnp.sqrt(sigma_hat**2 - jnp.where(on, sigma_tilde, 0.0) ** 2), 0.0) * self.S_noise
            z = step_noise(key, i, y.shape, y.dtype, self.noise_rng)
            if sigma_mode:  # x~^ = x~ + std z
                return (y + std * z).astype(y.dtype), t_hat, tau_hat, alpha_hat
            # x^ = alpha^ (x / alpha + std z) in the process's own variable (alpha > 0 wherever churn is on).
            scale = jnp.where(on, alpha_hat / jnp.where(on, alpha, 1.0), 1.0)
            return (scale * y + alpha_hat * std * z).astype(y.dtype), t_hat, tau_hat, alpha_hat

        def derivative(y, t, alpha):
            if sigma_mode:  # d x~ / d sigma~ = ε̂ at x = alpha x~
                return self.x0_eps(predictor, process, alpha * y, t, cond)[1]
            if self.clip_x0:
                x0, eps = self.x0_eps(predictor, process, y, t, cond)
                return process.alpha_dot(t) * x0 + process.sigma_dot(t) * eps
            return predictor.predict(process, y, batched_time(t, y), "velocity", **cond)

        def step(y, inputs):
            i, t, t_next = inputs
            y, t_hat, tau_hat, alpha_hat = churn(y, i, t)
            tau_next, alpha_next = level(t_next)
            d = derivative(y, t_hat, alpha_hat)
            y_next = y + (tau_next - tau_hat) * d
            if self.order == 2:
                y_next = y + (tau_next - tau_hat) * 0.5 * (d + derivative(y_next, t_next, alpha_next))
            return y_next.astype(y.dtype), None

        y0 = (x_init / process.alpha(ts[0])).astype(x_init.dtype) if sigma_mode else x_init
        y, _ = jax.lax.scan(step, y0, (jnp.arange(n - 1), ts[:-1], ts[1:]))
        y, t_hat, _, alpha_hat = churn(y, n - 1, ts[-1])
        x = (alpha_hat * y).astype(x_init.dtype) if sigma_mode else y
        x0, _ = self.x0_eps(predictor, process, x, t_hat, cond)
        nfe = 2 * n - 1 if self.order == 2 else n
        return self.finish(x0), {"nfe": jnp.asarray(nfe, jnp.int32)}


@dataclasses.dataclass(frozen=True)
class EDMEuler(EDMHeun):
    """EDM's sampler with Euler steps (`order = 1`): deterministic DDIM on the same grid when S_churn = 0."""

    order: int = 1

    name = "euler"
