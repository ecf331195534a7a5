"""Sample-based distances between two point clouds: sliced Wasserstein and the kernel MMD.

Both are pure JAX and jit-able (`num_projections`, `p` and `bandwidths` are static). They compare a
sampler's output with draws from an exact oracle (e.g. `GaussianMixture.sample`); their noise floors
depend on the sample sizes, so tests measure the null spread between two samples of one law.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _wasserstein_1d_pow(xs, ys, p):
    """`W_p^p` between the empirical laws of the sorted columns `xs` `(n, P)` and `ys` `(m, P)`, per column.

    The quantile functions of both laws are step functions, constant between the levels `i/n` and `j/m`;
    `W_p^p = int_0^1 |F^-1(u) - G^-1(u)|^p du` is then an exact finite sum over the merged levels.
    """
    n, m = xs.shape[0], ys.shape[0]
    levels = jnp.sort(jnp.concatenate([jnp.arange(1, n + 1) / n, jnp.arange(1, m + 1) / m]))
    widths = jnp.diff(levels, prepend=0.0)
    mid = levels - 0.5 * widths  # inside each interval; the quantile index there is floor(u n)
    ix = jnp.clip(jnp.floor(mid * n).astype(jnp.int32), 0, n - 1)
    iy = jnp.clip(jnp.floor(mid * m).astype(jnp.int32), 0, m - 1)
    gap = jnp.abs(xs[ix] - ys[iy]) ** p  # (n + m, P)
    return (widths.astype(gap.dtype)[:, None] * gap).sum(0)


def sliced_wasserstein(key, x, y, num_projections: int = 256, p: float = 1):
    """The Monte-Carlo sliced Wasserstein-p distance between the empirical laws of `x` `(n, d)` and `y` `(m, d)`.

    `SW_p(x, y) = (E_theta W_p^p(<theta, x>, <theta, y>))^(1/p)` with `theta` uniform on the unit sphere,
    estimated with `num_projections` random directions drawn from `key`. Each 1-D `W_p` between the
    projected empirical laws is exact (quantile functions, so `n != m` is allowed). It is zero for
    identical point sets; for two laws differing only by a shift `delta`, `SW_1 = E_theta |<theta, delta>|`
    (`2|delta|/pi` in 2-D).

    Args:
        key: PRNG key for the projection directions.
        x: `(n, d)` points.
        y: `(m, d)` points, same `d`.
        num_projections: number of random unit directions.
        p: the Wasserstein order, `p >= 1`.

    Returns:
        A scalar.

    Raises:
        ValueError: if `x` and `y` are not 2-D with the same number of columns, or `p < 1`.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"point clouds must be (n, d) and (m, d) with the same d, got {x.shape} and {y.shape}")
    if p < 1:
        raise ValueError(f"the Wasserstein order p must be >= 1, got {p}")
    return _sliced_wasserstein(key, x, y, int(num_projections), float(p))


@functools.partial(jax.jit, static_argnames=("num_projections", "p"))
def _sliced_wasserstein(key, x, y, num_projections, p):
    dtype = jnp.result_type(x.dtype, y.dtype, jnp.float32)
    theta = jax.random.normal(key, (x.shape[1], num_projections), dtype)
    theta = theta / jnp.linalg.norm(theta, axis=0, keepdims=True)
    xs = jnp.sort(x.astype(dtype) @ theta, axis=0)
    ys = jnp.sort(y.astype(dtype) @ theta, axis=0)
    return _wasserstein_1d_pow(xs, ys, p).mean() ** (1.0 / p)


def _kernel_sum(sq_dist, bandwidths):
    return sum(jnp.exp(-sq_dist / (2.0 * b**2)) for b in bandwidths)


def _sq_dist(a, b):
    return jnp.maximum((a**2).sum(-1)[:, None] + (b**2).sum(-1)[None, :] - 2.0 * a @ b.T, 0.0)


def mmd(x, y, bandwidths: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0, 5.0)):
    """The unbiased estimate of the squared maximum mean discrepancy between samples `x` `(n, d)` and `y` `(m, d)`.

    With the kernel `k(a, b) = sum_h exp(-|a - b|^2 / (2 h^2))` over the `bandwidths` h,
    `MMD^2 = sum_{i != j} k(x_i, x_j) / (n(n-1)) + sum_{i != j} k(y_i, y_j) / (m(m-1)) - 2 mean_{i,j} k(x_i, y_j)`
    (Gretton et al. 2012, eq. 3). It is unbiased, so it fluctuates around zero (and may be negative) when
    both samples come from one law.

    Raises:
        ValueError: if `x` and `y` are not 2-D with the same number of columns, or hold fewer than 2 rows.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"samples must be (n, d) and (m, d) with the same d, got {x.shape} and {y.shape}")
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 points per sample, got {n} and {m}")
    return _mmd(x, y, tuple(float(b) for b in bandwidths))


@functools.partial(jax.jit, static_argnames=("bandwidths",))
def _mmd(x, y, bandwidths):
    n, m = x.shape[0], y.shape[0]
    dtype = jnp.result_type(x.dtype, y.dtype, jnp.float32)
    x, y = x.astype(dtype), y.astype(dtype)
    k_xx = _kernel_sum(_sq_dist(x, x), bandwidths)
    k_yy = _kernel_sum(_sq_dist(y, y), bandwidths)
    k_xy = _kernel_sum(_sq_dist(x, y), bandwidths)
    xx = (k_xx.sum() - jnp.trace(k_xx)) / (n * (n - 1))
    yy = (k_yy.sum() - jnp.trace(k_yy)) / (m * (m - 1))
    return xx + yy - 2.0 * k_xy.mean()


def sliced_wasserstein_null(key, draw, reference, num_draws: int = 8, num_sigmas: float = 4.0,
                            num_projections: int = 256):
    """A threshold for "these samples follow the reference's law": the null spread of sliced-W1, measured.

    Computes the sliced-W1 distance between `reference` and `num_draws` fresh samples `draw(key_i)` of the
    same law (same size as the samples under test) and returns `mean + num_sigmas * std`. A correct sampler
    lands below it with high probability; the projection directions come from `key` and should be reused for
    the distance under test.

    Returns:
        `(threshold, null_distances)` with the distances as a NumPy array.
    """
    keys = jax.random.split(jax.random.fold_in(key, 1), num_draws)
    null = np.array([float(sliced_wasserstein(key, draw(k), reference, num_projections)) for k in keys])
    return float(null.mean() + num_sigmas * null.std()), null
