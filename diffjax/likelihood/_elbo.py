"""DDPM's variational bound in bits per dimension: the VAE view of article (二)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr

from .._checks import check_choice
from ..predictions import Predictor
from ..samplers import _check_predictor, _check_shape
from ._bits import check_grid

SIGMA_TYPES = ("posterior", "beta")


def elbo_tables(process, sigma_type: str) -> dict[str, np.ndarray]:
    """The time-only coefficients of the bound, in float64 from Su's scales `abar_t` (t = 0..T).

    For t = 2..T: `kl_const[t-2] = 1/2 (r - 1 - log r)` per dimension with `r = sigma~_t^2 / sigma_t^2`, and
    `kl_weight[t-2] = c_t^2 / (2 sigma_t^2)`, where `c_t = abar_{t-1} beta_t^2 / bbar_t^2` multiplies `x_0` in
    the posterior mean; with the posterior variance `kl_weight = 1/2 (SNR_{t-1} - SNR_t)`.
    `decoder_std` is `beta_1` for `sigma_type="beta"`; the posterior std is 0 at t = 1, so `"posterior"`
    takes `sigma~_2` there (Ho et al.'s clipped convention). `prior_const = 1/2 (bbar_T^2 - 1 - log bbar_T^2)`.
    """
    abar = process.alpha_bars()
    abar2 = abar**2
    bbar2 = 1.0 - abar2
    beta2 = (abar2[:-1] - abar2[1:]) / abar2[:-1]  # Su's beta_t^2 (Ho's beta_t), t = 1..T
    post2 = bbar2[:-1] * beta2 / bbar2[1:]  # posterior variance sigma~_t^2, t = 1..T (0 at t = 1)
    var = post2 if sigma_type == "posterior" else beta2
    ratio = post2[1:] / var[1:]
    c = abar[1:-1] * beta2[1:] / bbar2[2:]
    return {
        "t": np.arange(2, len(abar), dtype=np.int32),
        "alpha": abar[2:],
        "sigma": np.sqrt(bbar2[2:]),
        "kl_const": 0.5 * (ratio - 1.0 - np.log(ratio)),
        "kl_weight": 0.5 * c**2 / var[1:],
        "decoder_std": np.sqrt(beta2[0] if sigma_type == "beta" else post2[1]),
        "prior_alpha2": abar2[-1],
        "prior_const": 0.5 * (bbar2[-1] - 1.0 - np.log(bbar2[-1])),
        "alpha_1": abar[1],
        "sigma_1": np.sqrt(bbar2[1]),
    }


def log_normal_mass(a, b):
    """`log(Phi(b) - Phi(a))` for `a < b` (infinite ends allowed), accurate in both tails."""
    flip = a > 0  # Phi(b) - Phi(a) = Phi(-a) - Phi(-b): keep both ends on the left tail
    lo, hi = jnp.where(flip, -b, a), jnp.where(flip, -a, b)
    log_hi, log_lo = log_ndtr(hi), log_ndtr(lo)
    return log_hi + jnp.log(-jnp.expm1(log_lo - log_hi))


def discretized_gaussian_nll(x0, mean, std, num_bins: int, lo: float, hi: float):
    """DDPM's decoder `-log p(x_0 | x_1)` per example: Gaussian mass of each value's bin (article (二)).

    The bin of a level is `x_0 +- (hi - lo) / (2 (num_bins - 1))`; the edge bins at `lo` and `hi` extend to
    `-inf` and `+inf`, so the masses of the `num_bins` levels sum to one.
    """
    half = (hi - lo) / (2 * (num_bins - 1))
    lower = jnp.where(x0 < lo + half, -jnp.inf, x0 - half)
    upper = jnp.where(x0 > hi - half, jnp.inf, x0 + half)
    log_mass = log_normal_mass((lower - mean) / std, (upper - mean) / std)
    return -jnp.sum(log_mass.reshape(x0.shape[0], -1), axis=-1)


@functools.partial(jax.jit, static_argnames=("process", "sigma_type", "num_bins", "data_range"))
def _elbo(key, predictor, process, x0, cond, sigma_type, num_bins, data_range):
    tab = elbo_tables(process, sigma_type)
    dtype = x0.dtype
    batch = x0.shape[0]
    flat = lambda a: a.reshape(batch, -1)  # noqa: E731

    def x0_hat(t, alpha, sigma):
        eps = jax.random.normal(jax.random.fold_in(key, t), x0.shape, dtype)
        x_t = alpha * x0 + sigma * eps
        return predictor.predict(process, x_t, jnp.full((batch,), t, jnp.int32), "x0", **cond)

    def kl_step(_, inputs):
        t, alpha, sigma, const, weight = inputs
        err = jnp.sum(flat(x0 - x0_hat(t, alpha, sigma)) ** 2, axis=-1)
        return None, const * flat(x0).shape[1] + weight * err

    xs = tuple(
        jnp.asarray(tab[k], jnp.int32 if k == "t" else dtype) for k in ("t", "alpha", "sigma", "kl_const", "kl_weight")
    )
    _, kl = jax.lax.scan(kl_step, None, xs)  # (T - 1, B)
    mean_1 = x0_hat(1, jnp.asarray(tab["alpha_1"], dtype), jnp.asarray(tab["sigma_1"], dtype))
    decoder = discretized_gaussian_nll(x0, mean_1, jnp.asarray(tab["decoder_std"], dtype), num_bins, *data_range)
    d = flat(x0).shape[1]
    prior_alpha2, prior_const = (jnp.asarray(tab[k], dtype) for k in ("prior_alpha2", "prior_const"))
    prior = 0.5 * prior_alpha2 * jnp.sum(flat(x0) ** 2, axis=-1) + d * prior_const
    total = prior + kl.sum(0) + decoder
    info = {"prior": prior, "kl": kl.T, "decoder": decoder, "nfe": jnp.asarray(process.num_steps, jnp.int32)}
    return total / (d * math.log(2.0)), info


def elbo_bits_per_dim(
    key,
    predictor: Predictor,
    process,
    x0,
    *,
    sigma_type: str = "posterior",
    num_bins: int = 256,
    data_range=(-1.0, 1.0),
    cond=None,
    return_info: bool = False,
):
    """DDPM's negative ELBO of discrete data in bits per dimension (article (二); Ho et al., eq. 5).

        -log p(x_0) <= KL(q(x_T|x_0) || N(0, I)) + sum_{t=2..T} E_q KL(q(x_{t-1}|x_t, x_0) || p(x_{t-1}|x_t))
                       - E_q log p(x_0|x_1).

    `p(x_{t-1}|x_t) = N(mu, sigma_t^2 I)` with `mu` the posterior mean of `q(x_{t-1}|x_t, x_0)` at the
    predicted `x̂_0`, so each KL is `d/2 (r - 1 - log r) + ||x_0 - x̂_0||^2 c_t^2 / (2 sigma_t^2)`
    (`elbo_tables`). The last term is the discretised Gaussian decoder at t = 1 (`discretized_gaussian_nll`,
    bins of the `num_bins`-level grid, edge bins open to +-inf). The prior term is the closed-form KL of
    `N(abar_T x_0, bbar_T^2 I)` from `N(0, I)`.

    The sum runs over every t = 2..T (a `lax.scan`, T model evaluations in all), not over sampled times;
    each term's expectation over `x_t` uses one draw `x_t = abar_t x_0 + bbar_t eps_t`, `eps_t` from
    `fold_in(key, t)`. The value is thus an unbiased one-draw estimate of the bound, with no time-sampling
    noise.

    Args:
        key: PRNG key for the `x_t` draws.
        predictor: the model on `process` (any kind but `velocity`).
        process: the discrete `ddpm` process.
        x0: `(batch, ...)` data on the `num_bins`-level grid of `data_range` (uint8 images: `x / 127.5 - 1`).
        sigma_type: the reverse variance, `posterior` (`sigma~_t`) or `beta` (`beta_t`) (article (二)).
        num_bins, data_range: the data grid.
        cond: keyword arguments passed to the model.
        return_info: also return the terms in nats: `prior` `(B,)`, `kl` `(B, T - 1)` for t = 2..T,
            `decoder` `(B,)`, and `nfe` (= T).

    Raises:
        ValueError: for a continuous process (use `bits_per_dim`), a `velocity` predictor, an unknown
            `sigma_type` or data off the grid.
    """
    _check_predictor(predictor)
    if not getattr(process, "is_discrete", False) or not hasattr(process, "alpha_bars"):
        raise ValueError(
            f"elbo_bits_per_dim needs the discrete 'ddpm' process, got {type(process).__name__}; for a "
            "continuous process use dj.bits_per_dim (the exact PF-ODE likelihood)"
        )
    if predictor.kind == "velocity":
        raise ValueError("a 'velocity' predictor needs a continuous process; use kind 'eps', 'x0' or 'v' with 'ddpm'")
    check_choice("sigma_type", sigma_type, SIGMA_TYPES)
    if sigma_type == "posterior" and process.num_steps < 2:
        raise ValueError("sigma_type='posterior' needs T >= 2 (its decoder std is sigma~_2); use sigma_type='beta'")
    lo, hi = check_grid(x0, num_bins, data_range)
    x0 = jnp.asarray(x0)
    _check_shape(x0.shape)
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        x0 = x0.astype(jnp.result_type(float))
    bpd, info = _elbo(
        key, predictor, process, x0, {} if cond is None else dict(cond), sigma_type, int(num_bins), (lo, hi)
    )
    return (bpd, info) if return_info else bpd
