"""Interpolation paths between data and a prior sample, and their conditional velocities (articles (十五), (十七))."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._broadcast import expand_to


class Path(abc.ABC):
    """An interpolant `x_t = mu_t(x_0, x_1) + sigma_t eps` from data `x_0` (t = 0) to a prior draw `x_1` (t = 1).

    `eps ~ N(0, I)` is independent noise (zero for the deterministic paths); the ends must give `x_0` and `x_1`
    (`sigma_0 = sigma_1 = 0`). With `x_0`, `x_1` and `eps` drawn independently, the ODE
    `dx/dt = E[d x_t / dt | x_t]` carries the prior at t = 1 to the data at t = 0 and is the minimiser of
    `E ||v(x_t, t) - d x_t / dt||^2` (article (十七)). A path is a frozen, hashable dataclass.
    """

    @abc.abstractmethod
    def mu(self, t, x0, x1):
        """The mean part `mu_t(x_0, x_1)`; `t` arrives broadcastable against `x0`."""

    def sigma(self, t):
        """The scale of the extra noise; zero by default."""
        return jnp.zeros_like(t)

    @property
    def has_noise(self) -> bool:
        """Whether `sigma_t` is ever non-zero (then the loss draws `eps`)."""
        return False

    def interpolate(self, t, x0, x1, eps=None):
        """`x_t`, for `t` a scalar or `(batch,)`."""
        t = expand_to(jnp.asarray(t, x0.dtype), x0)
        return self._phi(t, x0, x1, eps)

    def velocity(self, t, x0, x1, eps=None):
        """The conditional velocity `d x_t / dt`, the flow-matching target (by forward-mode autodiff in t)."""
        t = expand_to(jnp.asarray(t, x0.dtype), x0)
        return jax.jvp(lambda s: self._phi(s, x0, x1, eps), (t,), (jnp.ones_like(t),))[1]

    def _phi(self, t, x0, x1, eps):
        x = self.mu(t, x0, x1)
        if eps is not None and self.has_noise:
            x = x + self.sigma(t) * eps
        return jnp.broadcast_to(x, jnp.broadcast_shapes(jnp.shape(x), x0.shape))

    def check(self, shape=(3, 2)) -> None:
        """Raises `ValueError` unless the path meets `x_0` at t = 0 and `x_1` at t = 1 (checked on random points)."""
        with jax.ensure_compile_time_eval():
            x0, x1, eps = jax.random.normal(jax.random.key(0), (3, *shape))
            start = self.interpolate(0.0, x0, x1, eps)
            end = self.interpolate(1.0, x0, x1, eps)
        if not (np.allclose(start, x0, atol=1e-5) and np.allclose(end, x1, atol=1e-5)):
            raise ValueError(
                f"{type(self).__name__} must satisfy x_t = x_0 at t = 0 and x_t = x_1 at t = 1 "
                "(mu_0 = x_0, mu_1 = x_1, sigma_0 = sigma_1 = 0)"
            )


@dataclasses.dataclass(frozen=True)
class Straight(Path):
    """Rectified flow's straight line `x_t = (1 - t) x_0 + t x_1`, velocity `x_1 - x_0` (article (十七)).

    With a standard Gaussian prior this is the `flow` process `x_t = (1 - t) x_0 + t eps`.
    """

    def mu(self, t, x0, x1):
        return (1.0 - t) * x0 + t * x1

    def velocity(self, t, x0, x1, eps=None):
        return x1 - x0


@dataclasses.dataclass(frozen=True)
class Trigonometric(Path):
    """The quarter circle `x_t = cos(pi t / 2) x_0 + sin(pi t / 2) x_1` (an `interp` choice of article (十七))."""

    def mu(self, t, x0, x1):
        angle = 0.5 * jnp.pi * t
        return jnp.cos(angle) * x0 + jnp.sin(angle) * x1


@dataclasses.dataclass(frozen=True)
class Interpolant(Path):
    """A general path `x_t = mu(t, x_0, x_1) + sigma(t) eps` from two callables (articles (十五), (十七)).

    Article (十五)'s family `x_t = mu_t(x_0) + sigma_t x_1` (`mu_0 = x_0`, `mu_1 = 0`, `sigma_0 = 0`,
    `sigma_1 = 1`) is `Interpolant(lambda t, x0, x1: m(t) * x0 + s(t) * x1)`; its conditional field
    `mu'_t + (sigma'_t / sigma_t)(x_t - mu_t)` equals the autodiff velocity `mu'_t + sigma'_t x_1` used here.
    Pass module-level functions (not fresh lambdas per call) so that jitted callers compile once.

    Attributes:
        mu_fn: `mu(t, x0, x1)` with `t` broadcastable against `x0`.
        sigma_fn: `sigma(t)`, the scale of extra independent Gaussian noise, or None for none.
    """

    mu_fn: Callable
    sigma_fn: Callable | None = None

    def mu(self, t, x0, x1):
        return self.mu_fn(t, x0, x1)

    def sigma(self, t):
        return jnp.zeros_like(t) if self.sigma_fn is None else self.sigma_fn(t)

    @property
    def has_noise(self) -> bool:
        return self.sigma_fn is not None


PATHS = {"straight": Straight, "trigonometric": Trigonometric}
