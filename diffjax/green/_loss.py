"""Regression on the conditional velocity of a Green's-function ODE (article (十四))."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from .._checks import check_choice
from ._process import GreenProcess

TIME_SAMPLINGS = ("log_uniform", "uniform")


@dataclasses.dataclass(frozen=True)
class GreenVelocityLoss:
    """`E_{t, x_0, x_t ~ p_t(.|x_0)} ||v_theta(x_t, t) - (varphi_t/phi_t)(r) (x_t - x_0)||^2` (article (十四)).

    The minimiser is `E_{x_0 | x_t}[(varphi/phi)(r)(x_t - x_0)] = E[varphi (x_t - x_0)] / E[phi]`, the velocity
    of the ODE `dx/dt = u_{>1}/u_1` (as in conditional flow matching, article (十五)). Called as
    `loss(key, apply_fn, params, x0, cond=None)`; `apply_fn(params, x_t, t)` (or with `cond`) returns the velocity,
    `t` of shape `(batch,)` being the process's time. Squared errors are summed over the data dimensions and
    averaged over the batch. Note that for the gravity kernel `||x_t - x_0|| / t` has a Cauchy-like tail (its
    mean is infinite), so the per-example targets are heavy-tailed even though the minimiser is finite.

    Attributes:
        process: the `GreenProcess` (kernel, T, t_min).
        time_sampling: `log_uniform` (`log t ~ U[log t_low, log t_high]`, the spread of PFGM's `(1+tau)^m` with
            `m ~ U[0, M]`) or `uniform` (`t ~ U[t_low, t_high]`).
        t_low, t_high: the training times; None takes the process's `t_min` and `T`.
    """

    process: GreenProcess = GreenProcess()
    time_sampling: str = "log_uniform"
    t_low: float | None = None
    t_high: float | None = None

    def __post_init__(self):
        if not isinstance(self.process, GreenProcess):
            raise ValueError(
                f"green_velocity needs a GreenProcess (green.green_process(...)), got {type(self.process).__name__}"
            )
        check_choice("green_velocity time_sampling", self.time_sampling, TIME_SAMPLINGS)
        lo, hi = self.bounds
        if not 0.0 < lo < hi:
            raise ValueError(f"green_velocity needs 0 < t_low < t_high, got t_low={lo}, t_high={hi}")

    @property
    def bounds(self) -> tuple[float, float]:
        lo = self.process.t_min if self.t_low is None else self.t_low
        hi = self.process.T if self.t_high is None else self.t_high
        return float(lo), float(hi)

    def sample_times(self, key, n: int, dtype=None):
        """`n` training times from `time_sampling` on `[t_low, t_high]`."""
        dtype = jnp.result_type(float) if dtype is None else dtype
        lo, hi = self.bounds
        u = jax.random.uniform(key, (n,), dtype)
        if self.time_sampling == "uniform":
            return lo + (hi - lo) * u
        return jnp.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u)

    def __call__(self, key, apply_fn, params, x0, cond=None):
        x0 = jnp.asarray(x0)
        key_t, key_x = jax.random.split(key)
        t = self.sample_times(key_t, x0.shape[0], x0.dtype)
        x_t, target = self.process.perturb(key_x, x0, t)
        pred = apply_fn(params, x_t, t) if cond is None else apply_fn(params, x_t, t, cond)
        sq = (pred - target) ** 2
        return jnp.mean(jnp.sum(sq.reshape(sq.shape[0], -1), axis=-1))
