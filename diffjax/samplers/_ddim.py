"""DDIM, article (四): a free-variance family of reverse kernels over any sub-sequence, and its inversion; with the
optimal variances of articles (七)–(八)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from .._checks import check_choice
from ..variance import X0_VARIANCE_RULES, check_x0_variance_source
from ._ancestral import with_x0_variance_extra
from ._base import GridSampler, batched_time
from ._noise import step_noise

VARIANCES = ("eta", *X0_VARIANCE_RULES)


@dataclasses.dataclass(frozen=True)
class DDIM(GridSampler):
    """Samples `x_s = alpha_s x̂_0 + sqrt(sigma_s^2 - sigma~^2) ε̂ + sigma~ z` (article (四)).

    `sigma~ = eta * sigma_{t|s} sigma_s / sigma_t` is eta times the posterior standard deviation, so eta = 1
    is DDPM with the posterior variance and eta = 0 the deterministic DDIM, the Euler discretisation of
    `d(x/alpha) = ε d(sigma/alpha)`. With `clip_x0`, ε̂ is recomputed from the clipped x̂_0. Step i's `z` is
    `step_noise(key, i, ..., noise_rng)`, the ancestral sampler's draw on the same grid.

    Attributes:
        eta: the noise scale in [0, 1].
        steps: number of steps (default 50) over the process's grid (`spacing`: `leading`, `trailing` or
            `linspace` for DDPM).
        variance: `eta` (the kernel variance sigma~^2 above) or sigma~^2 + gamma^2 var0_t, with
            `gamma = alpha_s - alpha_t sqrt(sigma_s^2 - sigma~^2)/sigma_t` the coefficient of x̂_0 in the step and
            `var0_t` the variance of x_0 given x_t (article (七)): from a table (`analytic`: Analytic-DDIM,
            isotropic or diagonal, indexed at the sub-sequence's times) or from a head (`npr`, `sn`: article
            (八)). These three need the model wrapped by `dj.variance.with_x0_variance`; with eta = 0 they still
            add noise, as article (七) notes.
    """

    eta: float = 0.0
    steps: int | None = 50
    variance: str = "eta"

    def validate(self, process, predictor):
        super().validate(process, predictor)
        if not 0.0 <= float(self.eta) <= 1.0:
            raise ValueError(f"DDIM eta must lie in [0, 1], got {self.eta}")
        check_choice("DDIM variance", self.variance, VARIANCES)
        if self.variance in X0_VARIANCE_RULES:
            check_x0_variance_source(self.variance, predictor)

    def predict(self, predictor, process, x, t, cond):
        """Adds `x0_var`, the variance of x_0 given x_t, for the optimal variances (七)–(八)."""
        return with_x0_variance_extra(
            self, predictor, process, x, t, cond, *super().predict(predictor, process, x, t, cond)
        )

    def update(self, key, step, x, x0, eps, alpha_t, sigma_t, alpha_s, sigma_s, *, x0_var=None):
        """One step t -> s; `x0_var` is `var0_t` for the optimal variances, supplied by `run`."""
        if self.clip_x0:
            x0 = self.clip(x0)
            eps = (x - alpha_t * x0) / sigma_t
        if self.eta == 0 and self.variance == "eta":
            return alpha_s * x0 + sigma_s * eps
        alpha_ts = alpha_t / alpha_s
        var_ts = sigma_t**2 - alpha_ts**2 * sigma_s**2
        noise_std = self.eta * jnp.sqrt(var_ts) * sigma_s / sigma_t
        direction = jnp.sqrt(jnp.maximum(sigma_s**2 - noise_std**2, 0.0))
        if self.variance in X0_VARIANCE_RULES:
            gamma = alpha_s - alpha_t * direction / sigma_t
            noise_std = jnp.sqrt(noise_std**2 + gamma**2 * x0_var)
        z = step_noise(key, step, x.shape, x.dtype, self.noise_rng)
        return alpha_s * x0 + direction * eps + noise_std.astype(x.dtype) * z

    def invert(self, predictor, process, x0, cond):
        """Runs deterministic DDIM forwards, data -> `x_T`, on the reversed grid of this sampler.

        From time s to the next larger time t (DDIM paper, eq. 13 reversed): `ε̂ = ε(x_s, s)`,
        `x̂_0 = (x_s - sigma_s ε̂)/alpha_s` and `x_t = alpha_t x̂_0 + sigma_t ε̂`. The first step leaves clean
        data, where the model cannot be evaluated; it uses the smallest grid time instead. Sampling back
        with `eta = 0` on the same grid recovers `x_0` up to the discretisation error of both passes.
        """
        ts = self.grid(process)[::-1]
        eval_ts = jnp.concatenate([ts[:1], ts[:-1]])
        alpha_to, sigma_to = process.alpha(ts), process.sigma(ts)
        alpha_from = jnp.concatenate([jnp.ones((1,), alpha_to.dtype), alpha_to[:-1]])
        sigma_from = jnp.concatenate([jnp.zeros((1,), sigma_to.dtype), sigma_to[:-1]])

        def step(x, inputs):
            t, a_from, s_from, a_to, s_to = inputs
            eps = predictor.predict(process, x, batched_time(t, x), "eps", **cond)
            x0_hat = (x - s_from * eps) / a_from
            return a_to * x0_hat + s_to * eps, None

        x, _ = jax.lax.scan(step, x0, (eval_ts, alpha_from, sigma_from, alpha_to, sigma_to))
        return x, {"nfe": jnp.asarray(ts.shape[0], jnp.int32)}
