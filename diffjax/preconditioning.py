"""EDM's preconditioning: `D(x̂; σ) = c_skip(σ) x̂ + c_out(σ) F(c_in(σ) x̂; c_noise(σ))` (EDM Table 1).

Here `x̂ = x_t / alpha(t)` and `σ = sigma(t) / alpha(t)` are the rescaled variable and noise level of any
Gaussian process, so a preconditioned network plugs into every sampler as an `x0` predictor. Rows:

| row | c_skip            | c_out               | c_in              | c_noise           | λ(σ)                   |
|-----|-------------------|---------------------|-------------------|-------------------|------------------------|
| vp  | 1                 | -σ                  | 1/sqrt(σ²+1)      | (M-1) t_vp(σ)     | 1/σ²                   |
| ve  | 1                 | σ                   | 1                 | ln(σ/2)           | 1/σ²                   |
| edm | σ_d²/(σ²+σ_d²)    | σσ_d/sqrt(σ²+σ_d²)  | 1/sqrt(σ²+σ_d²)   | ¼ ln σ            | (σ²+σ_d²)/(σσ_d)²      |
| fm  | 1/(1+σ)           | -σ/(1+σ)            | 1/(1+σ)           | σ/(1+σ)           | (1+σ)²/σ²              |

In every row `λ(σ) c_out(σ)² = 1`: the effective regression target of F has unit weight.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from ._broadcast import expand_to
from ._checks import check_choice
from .predictions import Predictor
from .processes import GaussianProcess

PRECONDITIONINGS = ("vp", "ve", "edm", "fm")

# EDM's VP row: c_noise is (M - 1) times the VP time of sigma, with beta_d = 19.9, beta_min = 0.1, M = 1000.
_VP_BETA_D, _VP_BETA_MIN, _VP_M = 19.9, 0.1, 1000


def edm_coefficients(precond: str, sigma, sigma_data: float = 0.5):
    """Returns `(c_skip, c_out, c_in, c_noise)` at EDM noise level `sigma` for the row `precond`."""
    check_choice("preconditioning", precond, PRECONDITIONINGS)
    sigma = jnp.asarray(sigma, dtype=jnp.result_type(float))
    one = jnp.ones_like(sigma)
    if precond == "vp":
        t_vp = (jnp.sqrt(_VP_BETA_MIN**2 + 2 * _VP_BETA_D * jnp.log1p(sigma**2)) - _VP_BETA_MIN) / _VP_BETA_D
        return one, -sigma, 1 / jnp.sqrt(sigma**2 + 1), (_VP_M - 1) * t_vp
    if precond == "ve":
        return one, sigma, one, jnp.log(0.5 * sigma)
    if precond == "edm":
        sd2 = sigma_data**2
        return (sd2 / (sigma**2 + sd2), sigma * sigma_data / jnp.sqrt(sigma**2 + sd2),
                1 / jnp.sqrt(sigma**2 + sd2), 0.25 * jnp.log(sigma))
    return 1 / (1 + sigma), -sigma / (1 + sigma), 1 / (1 + sigma), sigma / (1 + sigma)


def edm_loss_weight(precond: str, sigma, sigma_data: float = 0.5):
    """EDM's loss weight λ(σ) = 1 / c_out(σ)² for the row `precond`."""
    return 1.0 / edm_coefficients(precond, sigma, sigma_data)[1] ** 2


def precondition(raw_fn: Callable[..., Any], process: GaussianProcess, precond: str = "edm",
                 sigma_data: float = 0.5, params: Any = None) -> Predictor:
    """Wraps a raw network `F(x_in, c_noise, **cond)` (or `F(params, x_in, c_noise, **cond)` when `params`
    is given) as an `x0` predictor on `process` through the preconditioning row `precond`."""
    check_choice("preconditioning", precond, PRECONDITIONINGS)

    def denoise(*args, **cond):
        p, (x, t) = (args[0], args[1:]) if params is not None else (None, args)
        x_hat = x / expand_to(process.alpha(t), x)
        sigma = process.edm_sigma(t)
        c_skip, c_out, c_in, c_noise = edm_coefficients(precond, sigma, sigma_data)
        inner = expand_to(c_in, x) * x_hat
        out = raw_fn(inner, c_noise, **cond) if p is None else raw_fn(p, inner, c_noise, **cond)
        return expand_to(c_skip, x) * x_hat + expand_to(c_out, x) * out

    return Predictor(denoise, kind="x0", params=params)
