"""The reverse SDE of article (五) and its equal-marginal family of article (六), by Euler–Maruyama."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ._base import ContinuousSampler, check_finite_sde
from ._noise import step_noise


def reverse_sde_coefficients(process, t, s):
    """The reverse SDE's coefficients for the step `t -> s < t`: `(h, alpha_dot, sigma_dot, g2 / sigma, sqrt(g2 h))`
    at `t`, with the step length `h = t - s`. Computed inside the scan (cheap scalars, compiled with the step)."""
    h, g2 = t - s, process.g2(t)
    return h, process.alpha_dot(t), process.sigma_dot(t), g2 / process.sigma(t), jnp.sqrt(g2 * h)


def reverse_sde_drift(x0, eps, alpha_dot, sigma_dot, g2_over_sigma, sigma_rev: float):
    """The reverse drift `f x - ½(g^2 + sigma_t^2) grad log p_t` with `sigma_t = sigma_rev g`, article (六).

    With the predicted pair `x = alpha x̂_0 + sigma ε̂` and the score `-ε̂/sigma`, `f x - ½ g^2 grad log p`
    is the probability-flow velocity `alpha' x̂_0 + sigma' ε̂`, so the drift is
    `alpha' x̂_0 + (sigma' + ½ sigma_rev^2 g^2/sigma) ε̂`. This form needs no `f = alpha'/alpha`, which is
    infinite at the flow's t = 1.
    """
    if sigma_rev == 0:  # the ODE: no g^2 term, which is infinite at the flow's t = 1
        return alpha_dot * x0 + sigma_dot * eps
    return alpha_dot * x0 + (sigma_dot + 0.5 * sigma_rev**2 * g2_over_sigma) * eps


@dataclasses.dataclass(frozen=True)
class EulerMaruyama(ContinuousSampler):
    """Euler–Maruyama on the reverse SDE `dx = [f x - ½(g^2 + sigma_t^2) grad log p_t] dt + sigma_t dw`.

    With `sigma_t = sigma_rev g_t` this is the family of article (六), which has the marginals of the data
    process for every `sigma_rev` in [0, 1]: `sigma_rev = 1` is the reverse SDE of article (五),
    `dx = [f x - g^2 grad log p_t] dt + g dw`, and `sigma_rev = 0` the Euler method on the probability-flow
    ODE. Going backwards from `t` to `s = t - h` (article (五)):

        x_s = x_t - h [f x_t - ½(1 + sigma_rev^2) g^2 grad log p_t(x_t)] + sigma_rev g sqrt(h) z,

    with the score `-ε̂/sigma_t` of the model (any prediction kind, converted exactly) and `z` the step's
    standard normal draw by `noise_rng` (`step_noise(key, i, ..., noise_rng)`, the same draws as the ancestral
    sampler on the same grid with the same generator).
    The last grid time jumps to clean data with x̂_0 there (Tweedie's `(x + sigma^2 score)/alpha`, the
    noise-free final step of Song et al.); with `steps` grid times that is `steps` model evaluations.
    `sigma_rev = 0` draws no noise.

    Registered as `euler_maruyama` and, for the article-(六) family, `reverse_sde` (same knobs).

    Attributes:
        sigma_rev: the reverse noise scale `sigma_t / g_t` in [0, 1].
        steps: grid times (default 1000, score_sde's N), over the process's `spacing` (default: its own).
    """

    sigma_rev: float = 1.0
    steps: int | None = 1000

    name = "euler_maruyama"

    def validate(self, process, predictor):
        super().validate(process, predictor)
        if not 0.0 <= float(self.sigma_rev) <= 1.0:
            raise ValueError(
                f"sampler {self.name!r}: sigma_rev must lie in [0, 1] (sigma_t = sigma_rev * g_t), got {self.sigma_rev}"
            )
        if self.sigma_rev > 0:
            check_finite_sde(self.name, process)

    def run(self, key, predictor, process, x_init, cond):
        ts = self.grid(process)
        sigma_rev = float(self.sigma_rev)

        def step(x, inputs):
            i, t, s = inputs
            h, alpha_dot, sigma_dot, g2_over_sigma, noise_std = reverse_sde_coefficients(process, t, s)
            x0, eps = self.x0_eps(predictor, process, x, t, cond)
            x = x - h * reverse_sde_drift(x0, eps, alpha_dot, sigma_dot, g2_over_sigma, sigma_rev)
            if sigma_rev > 0:
                x = x + sigma_rev * noise_std * step_noise(key, i, x.shape, x.dtype, self.noise_rng)
            return x.astype(x_init.dtype), None

        x, _ = jax.lax.scan(step, x_init, (jnp.arange(ts.shape[0] - 1), ts[:-1], ts[1:]))
        x0, _ = self.x0_eps(predictor, process, x, ts[-1], cond)
        return self.finish(x0), {"nfe": jnp.asarray(ts.shape[0], jnp.int32)}
