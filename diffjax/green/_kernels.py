"""Isotropic Green's functions of the continuity equation (article (十四)): the kernels `p_t(x_t | x_0)` and their flux.

Article (十四) writes the continuity equation `d_t p_t + div(f_t p_t) = 0` as a divergence-free field
`u = (p_t, f_t p_t)` in the d+1 dimensions `(t, x)`, and builds `u = E_{x_0}[G(t; x_t, x_0)]` from a Green's function
with `div G = 0`, `G_1(0; x_t, x_0) = delta(x_t - x_0)` and `int G_1 dx_t = 1`. Spatially isotropic solutions are

    G_1 = phi_t(r),   G_{>1} = varphi_t(r) (x_t - x_0),   r = ||x_t - x_0||,
    d_t phi_t + r^{1-d} d_r(varphi_t r^d) = 0,

so `G_1 = p_t(x_t | x_0)` is the perturbation kernel and the sampling ODE is
`dx/dt = E[varphi (x_t - x_0)] / E[phi] = E_{x_0 | x_t}[(varphi/phi)(r) (x_t - x_0)]`. Every kernel here gives
`log phi_t(r)` (`log_density`), the ratio `varphi_t/phi_t` (`ratio`, the coefficient of the conditional velocity
`(varphi/phi)(r) (x_t - x_0)`), the radial CDF `P(||x_t - x_0|| <= r)` and a sampler of `x_t - x_0`. All of them
depend on the data dimension `d`, which is read from the arrays they are called with.

* `Gravity`: space-time isotropy, `G = C_d (t, x_t - x_0) / (t^2 + r^2)^{(d+1)/2}` (= PFGM, article (十三)), with
  `C_d = Gamma((d+1)/2) / pi^{(d+1)/2}` (the Poisson kernel of the half-space), so `varphi/phi = 1/t`; sampled as
  `x_t = x_0 + t z`, `z = eps_x / |eps_t|` for `(eps_x, eps_t) ~ N(0, I_{d+1})`: the ratio of norms of PFGM's
  perturbation, whose density is `p(z) ∝ (1 + ||z||^2)^{-(d+1)/2}` (article (十四)'s proof).
* `RadialCDF(psi)`: the inverse construction from a radial CDF `psi_t(r)`: `phi_t = r^{1-d} d_r psi_t / S_d` and
  `varphi_t = -r^{-d} d_t psi_t / S_d`, where `S_d = 2 pi^{d/2} / Gamma(d/2)` is the area of the unit sphere of
  R^d (so that `int phi_t dx = int_0^inf S_d r^{d-1} phi_t dr = psi_t(inf) - psi_t(0) = 1`). `psi` is `tanh`
  (`psi_t(r) = tanh(r/t)`) or `exp` (`1 - e^{-r/t}`); both are scale families `F(r/t)`, for which
  `varphi/phi = -d_t psi / (r d_r psi) = 1/t`. Radii are sampled by inverse CDF, `r = t F^{-1}(U)`.
* `Gaussian(sigma_fn)`: `phi_t = N(r; 0, sigma_t^2 I_d)`, `varphi_t = (sigma_t'/sigma_t) phi_t`, so that
  `dx/dt = -sigma_t' sigma_t grad log p_t(x)`: the heat-equation ODE of article (十二) (default `sigma_t = t`).
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jax.scipy.special import betainc, gammainc

from .._checks import check_choice


def log_sphere_area(d: int) -> float:
    """`log S_d`, the log-area of the unit sphere of R^d: `S_d = 2 pi^{d/2} / Gamma(d/2)` (S_1 = 2, S_2 = 2 pi)."""
    return math.log(2.0) + 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d)


def random_directions(key, n: int, d: int, dtype=None):
    """`n` directions uniform on the unit sphere of R^d, shape `(n, d)`: normalised standard normal draws."""
    dtype = jnp.result_type(float) if dtype is None else dtype
    g = jax.random.normal(key, (n, d), dtype)
    return g / jnp.linalg.norm(g, axis=-1, keepdims=True)


def _column(t, n: int, dtype):
    """`t` (scalar or `(n,)`) as an `(n,)` array of `dtype`."""
    return jnp.broadcast_to(jnp.asarray(t, dtype), (n,))


class Kernel(abc.ABC):
    """An isotropic Green's function of article (十四): `G_1 = phi_t(r)`, `G_{>1} = varphi_t(r) (x_t - x_0)`.

    A kernel is a frozen, hashable dataclass (a static argument of jitted functions). Its methods broadcast over
    `t` and `r`; `d` is the data dimension.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def log_density(self, t, r, d: int):
        """`log phi_t(r)`: the log-density of `x_t` given `x_0` at distance `r`, a density over R^d."""

    @abc.abstractmethod
    def ratio(self, t, r, d: int):
        """`varphi_t(r) / phi_t(r)`: the conditional velocity is `ratio * (x_t - x_0)`."""

    @abc.abstractmethod
    def radial_cdf(self, t, r, d: int):
        """`P(||x_t - x_0|| <= r)` under the kernel."""

    @abc.abstractmethod
    def sample_radius(self, key, t, n: int, d: int, dtype=None):
        """`n` draws of `||x_t - x_0||`, shape `(n,)`; `t` is a scalar or `(n,)`."""

    def flux(self, t, r, d: int):
        """`varphi_t(r) = phi_t(r) * ratio`, the coefficient of `G_{>1} = varphi_t (x_t - x_0)`."""
        return jnp.exp(self.log_density(t, r, d)) * self.ratio(t, r, d)

    def sample(self, key, t, shape, dtype=None):
        """A draw of the displacement `x_t - x_0`, shape `shape = (n, *data_shape)`; `t` is a scalar or `(n,)`."""
        n, d = shape[0], math.prod(shape[1:])
        k_radius, k_direction = jax.random.split(key)
        radius = self.sample_radius(k_radius, t, n, d, dtype)
        return (radius[:, None] * random_directions(k_direction, n, d, radius.dtype)).reshape(shape)


@dataclasses.dataclass(frozen=True)
class Gravity(Kernel):
    """Space-time isotropy: `p_t(x_t | x_0) = C_d t / (t^2 + r^2)^{(d+1)/2}`, `C_d = Gamma((d+1)/2) / pi^{(d+1)/2}`.

    The field lines are PFGM's (article (十三)): with `z = t`, `dx/dt = E_x / E_z` of the Poisson field of the data.
    """

    name: ClassVar[str] = "gravity"

    def log_density(self, t, r, d):
        log_c = math.lgamma(0.5 * (d + 1)) - 0.5 * (d + 1) * math.log(math.pi)
        return log_c + jnp.log(t) - 0.5 * (d + 1) * jnp.log(t**2 + r**2)

    def ratio(self, t, r, d):
        return jnp.ones_like(r) / t

    def radial_cdf(self, t, r, d):
        """`I_{r^2/(r^2+t^2)}(d/2, 1/2)`: `||z||^2 = B/(1-B)` with `B ~ Beta(d/2, 1/2)`."""
        r2 = jnp.asarray(r) ** 2
        return betainc(0.5 * d, 0.5, r2 / (r2 + jnp.asarray(t) ** 2))

    def sample_radius(self, key, t, n, d, dtype=None):
        """`t ||eps_x|| / |eps_t|`, `(eps_x, eps_t) ~ N(0, I_{d+1})`: the ratio-of-norms sampler of article (十四)."""
        dtype = jnp.result_type(float) if dtype is None else dtype
        k_x, k_t = jax.random.split(key)
        eps_x = jnp.linalg.norm(jax.random.normal(k_x, (n, d), dtype), axis=-1)
        eps_t = jnp.abs(jax.random.normal(k_t, (n,), dtype))
        return _column(t, n, dtype) * eps_x / eps_t


# Scale families psi_t(r) = F(r/t): F, its inverse and log F'.
_PSI = {
    "tanh": (jnp.tanh, jnp.arctanh, lambda s: 2.0 * (math.log(2.0) - s - jnp.log1p(jnp.exp(-2.0 * s)))),
    "exp": (lambda s: -jnp.expm1(-s), lambda u: -jnp.log1p(-u), lambda s: -s),
}


@dataclasses.dataclass(frozen=True)
class RadialCDF(Kernel):
    """The inverse construction of article (十四) from a radial CDF `psi_t(r) = F(r/t)`.

    `phi_t = r^{1-d} d_r psi_t / S_d`, `varphi_t = -r^{-d} d_t psi_t / S_d`; for a scale family
    `d_t psi = -(r/t^2) F'` and `d_r psi = F'/t`, so `varphi/phi = 1/t`. For d > 1 the density has an integrable
    `r^{1-d}` peak at `x_0`.

    Attributes:
        psi: `tanh` (`F(s) = tanh s`) or `exp` (`F(s) = 1 - e^{-s}`).
    """

    psi: str = "tanh"
    name: ClassVar[str] = "cdf"

    def __post_init__(self):
        check_choice("radial CDF psi", self.psi, _PSI)

    def log_density(self, t, r, d):
        log_dF = _PSI[self.psi][2]
        return (1 - d) * jnp.log(r) + log_dF(r / t) - jnp.log(t) - log_sphere_area(d)

    def ratio(self, t, r, d):
        return jnp.ones_like(r) / t

    def radial_cdf(self, t, r, d):
        return _PSI[self.psi][0](jnp.asarray(r) / t)

    def sample_radius(self, key, t, n, d, dtype=None):
        """`t F^{-1}(U)`, `U ~ U(0, 1)`: inverse-CDF sampling."""
        dtype = jnp.result_type(float) if dtype is None else dtype
        u = jax.random.uniform(key, (n,), dtype, minval=0.0, maxval=1.0)
        return _column(t, n, dtype) * _PSI[self.psi][1](u)


def _identity(t):
    return t


@dataclasses.dataclass(frozen=True)
class Gaussian(Kernel):
    """`p_t(x_t | x_0) = N(x_0, sigma_t^2 I)`, `varphi/phi = sigma_t'/sigma_t`: the heat-equation ODE of article (十二).

    Attributes:
        sigma_fn: `t -> sigma_t`, elementwise, increasing, `sigma_0 = 0` (a hashable callable, e.g. a module-level
            function); None is `sigma_t = t` (EDM's sigma-time).
    """

    sigma_fn: Callable[[Any], Any] | None = None
    name: ClassVar[str] = "gaussian"

    def __post_init__(self):
        if self.sigma_fn is not None and not callable(self.sigma_fn):
            raise ValueError(f"Gaussian kernel sigma_fn must be callable (t -> sigma_t), got {self.sigma_fn!r}")

    def sigma(self, t):
        """`sigma_t`."""
        return (self.sigma_fn or _identity)(jnp.asarray(t, jnp.result_type(float)))

    def sigma_dot(self, t):
        """`d sigma_t / dt`, by forward-mode autodiff."""
        t = jnp.asarray(t, jnp.result_type(float))
        return jax.jvp(self.sigma, (t,), (jnp.ones_like(t),))[1]

    def log_density(self, t, r, d):
        sigma2 = self.sigma(t) ** 2
        return -0.5 * jnp.asarray(r) ** 2 / sigma2 - 0.5 * d * jnp.log(2.0 * math.pi * sigma2)

    def ratio(self, t, r, d):
        return jnp.ones_like(r) * self.sigma_dot(t) / self.sigma(t)

    def radial_cdf(self, t, r, d):
        """The chi law: `P(d/2, r^2 / (2 sigma_t^2))`, the regularised lower incomplete gamma function."""
        return gammainc(0.5 * d, 0.5 * jnp.asarray(r) ** 2 / self.sigma(t) ** 2)

    def sample_radius(self, key, t, n, d, dtype=None):
        dtype = jnp.result_type(float) if dtype is None else dtype
        eps = jnp.linalg.norm(jax.random.normal(key, (n, d), dtype), axis=-1)
        return self.sigma(_column(t, n, dtype)).astype(dtype) * eps

    def sample(self, key, t, shape, dtype=None):
        """`sigma_t eps`, `eps ~ N(0, I)`."""
        dtype = jnp.result_type(float) if dtype is None else dtype
        sigma = self.sigma(_column(t, shape[0], dtype)).astype(dtype)
        return sigma.reshape((-1,) + (1,) * (len(shape) - 1)) * jax.random.normal(key, shape, dtype)


KERNELS = {
    "gravity": Gravity,
    "cdf": RadialCDF,
    "cdf_tanh": lambda: RadialCDF("tanh"),
    "cdf_exp": lambda: RadialCDF("exp"),
    "gaussian": Gaussian,
}


def green_function(kernel: Kernel, t, x_t, x0):
    """`(G_1, G_{>1})` at `x_t` for a source at `x_0` (both `(n, d)`): `(phi_t(r), varphi_t(r) (x_t - x_0))`."""
    diff = jnp.asarray(x_t) - jnp.asarray(x0)
    d = diff.shape[-1]
    r = jnp.linalg.norm(diff, axis=-1)
    return jnp.exp(kernel.log_density(t, r, d)), kernel.flux(t, r, d)[..., None] * diff
