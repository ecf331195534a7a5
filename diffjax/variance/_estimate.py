"""Monte-Carlo estimates of `var0_t = E_{x_t} tr Cov(x_0 | x_t) / d` per time, articles (七) and (八).

With the model's `(x̂_0, eps_theta)` at `x_t = alpha_t x_0 + sigma_t eps`, `x_0` drawn from the data:

* `eps_norm` (Analytic-DPM, what Su's `adpm.py` uses): `var0_t = (sigma_t^2/alpha_t^2)(1 - E||eps_theta||^2/d)`;
* `x0_moment` (Su's): `var0_t = E||x_0 - mu_0||^2/d - E||x̂_0 - mu_0||^2/d`, `mu_0` the data mean;
* `mle` (article (八), imperfect mean): `var0_t = (sigma_t^2/(alpha_t^2 d)) E||eps - eps_theta||^2`, the maximum-
  likelihood variance of `N(x_0; x̂_0(x_t), var0 I)` for the model's own mean: the per-t training error.

All three agree for the exact model (`eps_theta = E[eps|x_t]`); the MLE is larger when the mean is off by the
model's error. `diagonal=True` keeps one value per data element (drop the `/d` sums).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .._checks import check_choice
from ..predictions import Predictor
from ..processes import GaussianProcess
from ._kernel import x0_variance_bound
from ._source import VarianceTable

ESTIMATORS = ("eps_norm", "x0_moment", "mle")


def estimate_x0_variance(
    key,
    predictor: Predictor,
    process: GaussianProcess,
    data,
    times,
    *,
    estimator: str = "eps_norm",
    num_samples: int | None = None,
    batch_size: int | None = None,
    diagonal: bool = False,
    clip: bool = True,
    data_range: tuple[float, float] | None = None,
    cond=None,
) -> VarianceTable:
    """Estimates `var0_t`, the variance of x_0 given x_t, at each of `times` (articles (七), (八)).

    Pure and jitted (static: `process` and the keyword knobs). Every time draws its own `x_0` (from `data`) and
    `eps` from `fold_in(key, i)`, so the three estimators given the same key see the same samples. Cache the
    returned table per checkpoint (see `VarianceTable`); evaluating it over every step of a discrete process
    lets any sub-sequence sampler index it exactly.

    Args:
        key: a PRNG key.
        predictor: the trained (mean) model.
        process: the forward process it was trained on.
        data: `(N, *data_shape)` data points, e.g. a few training batches stacked.
        times: `(n,)` process times (integer steps for DDPM).
        estimator: `eps_norm`, `x0_moment` or `mle` (see the module docstring).
        num_samples: draws per time, with replacement from `data` (Su's code uses 160); None uses every row of
            `data` once per time.
        batch_size: model batch; it must divide the number of draws. None evaluates all draws at once.
        diagonal: return one variance per data element, `(n, *data_shape)`, instead of `(n,)`.
        clip: clip `eps_norm` and `x0_moment` to their bounds `[0, min(sigma_t^2/alpha_t^2, Var[x_0])]`
            (article (七); Su's `clip(1 - E eps^2, 0, 1)` is the first), with `Var[x_0]` the variance of `data`
            (per element when `diagonal`). The Monte-Carlo error of `eps_norm` grows like sigma_t^2/alpha_t^2, so
            at high noise the data-variance bound is what keeps it sane. The `mle` estimate is non-negative and
            is not bounded above: it absorbs the mean's error on purpose.
        data_range: `(a, b)`; with `clip`, also bound by `((b - a)/2)^2`.
        cond: keyword arguments for the model, arrays with one row per row of `data` (e.g. labels).

    Returns:
        A `VarianceTable(times, values)`.
    """
    check_choice("x0 variance estimator", estimator, ESTIMATORS)
    if not isinstance(predictor, Predictor):
        raise ValueError(f"expected a diffjax Predictor, got {type(predictor).__name__}")
    data, times = jnp.asarray(data), jnp.asarray(times)
    if data.ndim < 2 or data.shape[0] < 1:
        raise ValueError(f"data must be (N, *data_shape) with N >= 1, got shape {data.shape}")
    if times.ndim != 1 or times.shape[0] < 1:
        raise ValueError(f"times must be a non-empty 1-D array of process times, got shape {times.shape}")
    draws = data.shape[0] if num_samples is None else int(num_samples)
    batch = draws if batch_size is None else int(batch_size)
    if draws < 1 or batch < 1 or draws % batch:
        raise ValueError(f"num_samples ({draws}) must be a positive multiple of batch_size ({batch})")
    cond = {} if cond is None else dict(cond)
    for name, value in cond.items():
        if jnp.shape(value)[:1] != data.shape[:1]:
            raise ValueError(f"cond[{name!r}] must have one row per data row ({data.shape[0]}), got {jnp.shape(value)}")
    if data_range is not None:
        data_range = tuple(float(v) for v in data_range)
    moments = _moments(key, predictor, process, data, times, cond, num_samples=num_samples, batch_size=batch)
    values = _combine(
        moments,
        process,
        data.var(0),
        times,
        estimator=estimator,
        diagonal=bool(diagonal),
        clip=bool(clip),
        data_range=data_range,
    )
    return VarianceTable(times, values)


@functools.partial(jax.jit, static_argnames=("process", "num_samples", "batch_size"))
def _moments(key, predictor, process, data, times, cond, *, num_samples, batch_size):
    """Per time and element: `E eps_theta^2`, `E (eps - eps_theta)^2` and `E[(x_0 - mu_0)^2 - (x̂_0 - mu_0)^2]`.

    One model evaluation per draw serves all three estimators (and one compilation serves all of them).
    """
    n_data = data.shape[0]
    draws = n_data if num_samples is None else num_samples
    mu0 = data.mean(0)

    def chunk_sums(t_key, t, chunk):
        k_idx, k_eps = jax.random.split(jax.random.fold_in(t_key, chunk))
        if num_samples is None:
            idx = chunk * batch_size + jnp.arange(batch_size)
        else:
            idx = jax.random.randint(k_idx, (batch_size,), 0, n_data)
        x0 = data[idx]
        eps = jax.random.normal(k_eps, x0.shape, x0.dtype)
        t_batch = jnp.full((batch_size,), t, dtype=t.dtype)
        x_t = process.perturb(x0, t_batch, eps)
        x0_hat, eps_hat = predictor.x0_eps(process, x_t, t_batch, **{k: v[idx] for k, v in cond.items()})
        return jnp.stack(
            [(eps_hat**2).sum(0), ((eps - eps_hat) ** 2).sum(0), ((x0 - mu0) ** 2 - (x0_hat - mu0) ** 2).sum(0)]
        )

    def per_time(inputs):
        i, t = inputs
        t_key = jax.random.fold_in(key, i)
        total, _ = jax.lax.scan(
            lambda acc, c: (acc + chunk_sums(t_key, t, c), None),
            jnp.zeros((3, *data.shape[1:]), data.dtype),
            jnp.arange(draws // batch_size),
        )
        return total / draws

    return jax.lax.map(per_time, (jnp.arange(times.shape[0]), times))


@functools.partial(jax.jit, static_argnames=("process", "estimator", "diagonal", "clip", "data_range"))
def _combine(moments, process, data_var, times, *, estimator, diagonal, clip, data_range):
    """The estimator's `var0_t` from the moments, averaged over elements unless `diagonal`, then clipped."""
    eps_sq, residual_sq, x0_spread = moments[:, 0], moments[:, 1], moments[:, 2]
    ratio = (process.sigma(times) ** 2 / process.alpha(times) ** 2).astype(moments.dtype)
    ratio = ratio.reshape(ratio.shape + (1,) * (moments.ndim - 2))
    if estimator == "eps_norm":
        value = ratio * (1.0 - eps_sq)
    elif estimator == "mle":
        value = ratio * residual_sq
    else:
        value = x0_spread
    bound = x0_variance_bound(process, times, data_range).astype(moments.dtype)
    if diagonal:
        bound = jnp.minimum(bound.reshape(ratio.shape), data_var)
    else:
        value = value.reshape(value.shape[0], -1).mean(-1)
        bound = jnp.minimum(bound, data_var.mean())
    if clip and estimator != "mle":
        value = jnp.clip(value, 0.0, bound)
    return value
