"""DDPM's ancestral sampler, articles (一)–(三), on any Gaussian process and any sub-sequence of times."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from .._checks import check_choice
from ._base import GridSampler, step_noise

VARIANCES = ("beta", "posterior")


@dataclasses.dataclass(frozen=True)
class Ancestral(GridSampler):
    """Samples `x_s ~ N(mu(x_t), sigma_ts^2 I)` with the posterior mean of article (三):

    `p(x_{t-1}|x_t, x_0) = N((alpha_t bbar_{t-1}^2/bbar_t^2) x_t + (abar_{t-1} beta_t^2/bbar_t^2) x_0,
    (bbar_{t-1}^2 beta_t^2/bbar_t^2) I)`, with `x_0` replaced by the prediction `x̂_0(x_t)`.

    Written for any step t -> s of a Gaussian process (alpha_{t|s} = alpha_t/alpha_s,
    sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2), it is DDPM's sampler on consecutive steps.

    Attributes:
        variance: `beta` (sigma_ts^2 = beta_t^2: exact for N(0, I) data; Su's default) or `posterior`
            (sigma_ts^2 = bbar_{t-1}^2 beta_t^2 / bbar_t^2: exact for a single data point), article (二).
    """

    variance: str = "beta"

    def validate(self, process, predictor):
        super().validate(process, predictor)
        check_choice("ancestral variance", self.variance, VARIANCES)

    def update(self, key, step, x, x0, eps, alpha_t, sigma_t, alpha_s, sigma_s):
        if self.clip_x0:
            x0 = self.clip(x0)
        alpha_ts = alpha_t / alpha_s
        var_ts = sigma_t**2 - alpha_ts**2 * sigma_s**2
        mean = (alpha_ts * sigma_s**2 * x + alpha_s * var_ts * x0) / sigma_t**2
        var = var_ts if self.variance == "beta" else var_ts * sigma_s**2 / sigma_t**2
        return mean + jnp.sqrt(var).astype(x.dtype) * step_noise(key, step, x.shape, x.dtype)
