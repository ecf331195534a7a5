"""The exact velocity of a Green's-function ODE for a small weighted point set (article (十四)), usable as a model."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ..predictions import Predictor
from ._kernels import Kernel

_TINY_RADIUS = 1e-30  # keeps log r finite where x_t sits exactly on a data point (its weight then dominates)


@dataclasses.dataclass(frozen=True)
class ExactGreenVelocity:
    """`f_t(x) = sum_i w_i varphi_t(r_i) (x - x_i) / sum_i w_i phi_t(r_i)` for data `sum_i w_i delta(x - x_i)`.

    The ratio of expectations of article (十四), computed as the posterior mean
    `E_{i | x_t}[(varphi/phi)(r_i) (x - x_i)]` with weights `softmax_i(log w_i + log phi_t(r_i))` (log-space,
    so far-away points and high dimensions do not underflow). A pytree of its two arrays; the kernel is static.

    Attributes:
        points: `(K, d)` data points.
        log_weights: `(K,)` log-probabilities of the points.
        kernel: the `Kernel`.
    """

    points: jax.Array
    log_weights: jax.Array
    kernel: Kernel

    def velocity(self, x, t):
        """`dx/dt` at `x` `(B, *data_shape)` (with `prod(data_shape) = d`) and time `t` (scalar or `(B,)`)."""
        flat = x.reshape(x.shape[0], -1)
        d = flat.shape[1]
        t = jnp.broadcast_to(jnp.asarray(t, flat.dtype), (flat.shape[0],))[:, None]
        diff = flat[:, None, :] - self.points[None].astype(flat.dtype)  # (B, K, d)
        r = jnp.maximum(jnp.linalg.norm(diff, axis=-1), _TINY_RADIUS)
        weights = jax.nn.softmax(self.log_weights[None] + self.kernel.log_density(t, r, d), axis=-1)
        coef = weights * self.kernel.ratio(t, r, d)
        return jnp.einsum("bk,bkd->bd", coef, diff).reshape(x.shape)

    def predictor(self) -> Predictor:
        """The exact model as `dj.Predictor(fn, kind="velocity", params=self)`, `fn(params, x_t, t) = dx_t/dt`."""
        return Predictor(_velocity_fn, kind="velocity", params=self)


def _velocity_fn(field: ExactGreenVelocity, x, t, **cond):
    return field.velocity(x, t)


jax.tree_util.register_dataclass(ExactGreenVelocity, data_fields=["points", "log_weights"], meta_fields=["kernel"])


def check_point_set(points, weights):
    """`(points (K, d), weights (K,))` as float arrays; raises `ValueError` for bad shapes or weights."""
    points = jnp.asarray(points, jnp.result_type(float))
    if points.ndim == 1:
        points = points[:, None]
    if points.ndim != 2 or points.shape[0] < 1:
        raise ValueError(f"points must be (K, d) with K >= 1 (or (K,) in 1-D), got shape {points.shape}")
    k = points.shape[0]
    weights = jnp.full((k,), 1.0 / k, points.dtype) if weights is None else jnp.asarray(weights, points.dtype)
    if weights.shape != (k,) or bool(jnp.any(weights < 0)) or abs(float(weights.sum()) - 1.0) > 1e-5:
        raise ValueError(f"weights must be ({k},) non-negative and sum to one, got {weights}")
    return points, weights


def exact_green_velocity(points, weights=None, kernel: Kernel | None = None) -> ExactGreenVelocity:
    """The exact velocity of the Green's-function ODE of `kernel` for the data `sum_i w_i delta(x - x_i)`.

    `points` `(K, d)` (or `(K,)` in 1-D), `weights` `(K,)` (default uniform). Use `.velocity(x, t)` or
    `.predictor()`.
    """
    if not isinstance(kernel, Kernel):
        raise ValueError(f"exact_green_velocity needs a green Kernel (e.g. green.Gravity()), got {kernel!r}")
    points, weights = check_point_set(points, weights)
    return ExactGreenVelocity(points, jnp.log(weights), kernel)


def sample_marginal(key, kernel: Kernel, points, weights, t, n: int):
    """`n` draws of the exact marginal `p_t = sum_i w_i p_t(. | x_i)`, shape `(n, d)`: a point, then a kernel step."""
    points, weights = check_point_set(points, weights)
    k_point, k_step = jax.random.split(key)
    index = jax.random.choice(k_point, points.shape[0], (n,), p=weights)
    return points[index] + kernel.sample(k_step, t, (n, points.shape[1]), points.dtype)
