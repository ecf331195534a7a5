"""Predictor–corrector sampling (Song et al.'s score SDE, article (五)): a reverse-SDE step, then Langevin MCMC."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from .._checks import check_choice
from ._base import ContinuousSampler, check_finite_sde
from ._noise import step_noise
from ._sde import reverse_sde_coefficients, reverse_sde_drift

PREDICTORS = ("euler_maruyama", "reverse_diffusion", "ancestral")


def _per_example_norm(x):
    return jnp.sqrt(jnp.sum(x.reshape(x.shape[0], -1) ** 2, axis=-1))


def langevin_step(x, score, noise, snr: float, alpha=1.0):
    """One step of Song et al.'s Langevin corrector: `x + eps score + sqrt(2 eps) z`.

    The step size comes from the target signal-to-noise ratio, `eps = 2 alpha (snr ||z|| / ||score||)^2`, with
    the norms averaged over the batch (score_sde's `LangevinCorrector`); `alpha` is their `1 - beta_i`, here
    `(alpha_t / alpha_s)^2` of the grid step (1 for VE and EDM).
    """
    ratio = snr * _per_example_norm(noise).mean() / _per_example_norm(score).mean()
    step_size = 2.0 * alpha * ratio**2
    return x + step_size * score + jnp.sqrt(2.0 * step_size) * noise


@dataclasses.dataclass(frozen=True)
class PredictorCorrector(ContinuousSampler):
    """Predictor–corrector sampling: at each grid time, `n_corrector` Langevin steps, then a predictor step.

    The corrector is Langevin MCMC with the model's score `-ε̂/sigma_t`, which leaves `p_t` invariant (up to
    its step-size bias); the predictor moves to the next grid time `s` with one of

    * `euler_maruyama`: the reverse SDE of article (五), `x - h [f x - g^2 score] + g sqrt(h) z`;
    * `reverse_diffusion`: the reverse of the grid's own forward step `x_t = alpha_ts x_s + sigma_ts z`,
      `x_s = (2 - alpha_ts) x_t + sigma_ts^2 score + sigma_ts z` (Song et al.'s reverse-diffusion predictor);
    * `ancestral`: DDPM's ancestral step with `sigma = beta` (the `ancestral` sampler's kernel).

    The last grid time is corrected and then jumps to clean data with x̂_0, so `steps` grid times cost
    `steps * (1 + n_corrector)` model evaluations. The predictor draws `step_noise(key, i, ..., noise_rng)` (with
    `n_corrector = 0` and `euler_maruyama` this is the `euler_maruyama` sampler, up to rounding); the corrector draws
    from an independent stream.

    Attributes:
        predictor: `euler_maruyama`, `reverse_diffusion` (default) or `ancestral`.
        snr: the corrector's target signal-to-noise ratio (0.16, score_sde's CIFAR-10 VE setting).
        n_corrector: Langevin steps per grid time (0 leaves the predictor alone).
        steps: grid times (default 1000, score_sde's N).
    """

    predictor: str = "reverse_diffusion"
    snr: float = 0.16
    n_corrector: int = 1
    steps: int | None = 1000

    name = "pc"

    def validate(self, process, predictor):
        super().validate(process, predictor)
        check_choice("pc predictor", self.predictor, PREDICTORS)
        if not float(self.snr) > 0:
            raise ValueError(f"sampler 'pc': snr must be positive, got {self.snr}")
        if int(self.n_corrector) != self.n_corrector or self.n_corrector < 0:
            raise ValueError(f"sampler 'pc': n_corrector must be a non-negative integer, got {self.n_corrector!r}")
        if self.predictor == "euler_maruyama":
            check_finite_sde(self.name, process)

    def run(self, key, model, process, x_init, cond):
        ts = self.grid(process)
        n = ts.shape[0]
        _, corrector_key = jax.random.split(key)

        def score(x, t, sigma):
            return -self.x0_eps(model, process, x, t, cond)[1] / sigma

        def correct(x, i, t, sigma, alpha):
            def body(j, x):
                noise = step_noise(jax.random.fold_in(corrector_key, i), j, x.shape, x.dtype, self.noise_rng)
                return langevin_step(x, score(x, t, sigma), noise, self.snr, alpha).astype(x.dtype)

            return jax.lax.fori_loop(0, int(self.n_corrector), body, x)

        def step(x, inputs):
            i, t, s = inputs
            a_t, s_t, a_s, s_s = process.alpha(t), process.sigma(t), process.alpha(s), process.sigma(s)
            x = correct(x, i, t, s_t, (a_t / a_s) ** 2)
            x0, eps = self.x0_eps(model, process, x, t, cond)
            z = step_noise(key, i, x.shape, x.dtype, self.noise_rng)
            alpha_ts = a_t / a_s
            var_ts = s_t**2 - alpha_ts**2 * s_s**2
            if self.predictor == "ancestral":  # article (三)'s posterior mean, variance beta^2 = var_ts
                mean = (alpha_ts * s_s**2 * x + a_s * var_ts * x0) / s_t**2
                return (mean + jnp.sqrt(var_ts) * z).astype(x.dtype), None
            if self.predictor == "euler_maruyama":
                h, alpha_dot, sigma_dot, g2_over_sigma, noise_std = reverse_sde_coefficients(process, t, s)
                drift = reverse_sde_drift(x0, eps, alpha_dot, sigma_dot, g2_over_sigma, 1.0)
                return (x - h * drift + noise_std * z).astype(x.dtype), None
            x = (2.0 - alpha_ts) * x - var_ts * eps / s_t + jnp.sqrt(var_ts) * z
            return x.astype(x_init.dtype), None

        x, _ = jax.lax.scan(step, x_init, (jnp.arange(n - 1), ts[:-1], ts[1:]))
        t_last = ts[-1]  # its step goes to data: alpha_s = 1
        x = correct(x, n - 1, t_last, process.sigma(t_last), process.alpha(t_last) ** 2)
        x0, _ = self.x0_eps(model, process, x, ts[-1], cond)
        return self.finish(x0), {"nfe": jnp.asarray(n * (1 + int(self.n_corrector)), jnp.int32)}
