"""The UDM forward process: any corruption `x_t = F_t(x_0, eps)`, `eps ~ q(eps)`, article (十)."""

from __future__ import annotations

import abc

import jax
import jax.numpy as jnp
import numpy as np

from .._broadcast import expand_to
from .._checks import check_choice

SPACINGS = ("leading", "trailing", "linspace", "uniform")


def integer_timesteps(num_steps: int, n: int, spacing: str) -> np.ndarray:
    """The descending steps of an `n`-step sub-sequence of `1..T`, article (四).

    `leading` (1, 1+k, 1+2k, ... with k = T // n, Su's `ddim.py`), `trailing` (T, T-k, ...) or
    `linspace`/`uniform` (rounded linspace from T to 1), the same grids as the DDPM process.
    """
    T = int(num_steps)
    if not 1 <= int(n) <= T:
        raise ValueError(f"num_steps must be between 1 and T={T}, got {n}")
    n = int(n)
    if spacing == "leading":
        steps = np.arange(n) * (T // n) + 1
    elif spacing == "trailing":
        steps = np.round(np.arange(n, 0, -1) * T / n).astype(np.int64)
    else:
        steps = np.round(np.linspace(T, 1, n)).astype(np.int64)
    return np.unique(steps)[::-1].copy()


class Corruption(abc.ABC):
    """A UDM forward process `x_t = F_t(x_0, eps)`, `eps ~ q(eps)`, on the steps t = 0..T (article (十)).

    t = 0 is data (`F_0(x_0, eps) = x_0`) and reconstructing x_0 gets harder as t grows, nearly impossible at
    T. The reverse process (`dj.udm.UDM`) samples predict-then-correct: `x̂_0 ~ q(x_0 | x_t)`, then
    `x_{t-1} ~ p(x_{t-1} | x_t, x_0 = x̂_0)`. Subclasses are frozen, hashable dataclasses of Python numbers (static
    arguments of a jitted sampler); they build arrays only when called.

    Attributes:
        invertible: whether `eps = F_t^{-1}(x_0, x_t)` exists (the deterministic and mixed reverse designs need it).
        gaussian_noise: whether `q(eps) = N(0, I)` (the mixed design needs it).
    """

    is_discrete = True
    invertible: bool = False
    gaussian_noise: bool = False
    default_spacing = "leading"
    spacings: tuple[str, ...] = SPACINGS

    num_steps: int

    @property
    def t_min(self) -> int:
        return 1

    @property
    def t_max(self) -> int:
        return int(self.num_steps)

    @abc.abstractmethod
    def forward(self, x0, t, eps):
        """`x_t = F_t(x_0, eps)`; `t` is a scalar or a `(B,)` integer array."""

    @abc.abstractmethod
    def sample_noise(self, key, shape, dtype=None):
        """A draw of `eps ~ q(eps)` of `shape`."""

    def invert_noise(self, x0, t, x_t):
        """`eps = F_t^{-1}(x_0, x_t)`, the noise that carries `x_0` to `x_t` (only where `invertible`)."""
        raise ValueError(f"{type(self).__name__} is not invertible in its noise; use reverse='baseline'")

    @abc.abstractmethod
    def prior_sample(self, key, shape, dtype=None):
        """A draw of `x_T`, where sampling starts."""

    def timesteps(self, num_steps: int, spacing: str | None = None, rho: float = 7.0):
        """The descending integer steps of a `num_steps`-step sub-sequence of 1..T (see `integer_timesteps`)."""
        del rho  # the integer grids have no rho; the argument keeps the process interface
        spacing = self.default_spacing if spacing is None else spacing
        check_choice(f"spacing for {type(self).__name__}", spacing, self.spacings)
        return jnp.asarray(integer_timesteps(self.num_steps, num_steps, spacing), dtype=jnp.int32)


class AdditiveCorruption(Corruption):
    """`x_t = D_t(x_0) + s_t eps`, `eps ~ N(0, I)`: a degradation plus Gaussian noise, article (十一).

    The Gaussian diffusion (`D_t x_0 = abar_t x_0`, `s_t = bbar_t`) and Cold Diffusion's degradations with a
    small noise (`s_t = sigma` for t >= 1) are of this form. `D_0` is the identity and `s_0 = 0`. With `s_t > 0`
    it is invertible, `eps = (x_t - D_t(x_0)) / s_t`, and `q(eps)` is Gaussian, so all three reverse designs of
    article (十) apply.
    """

    gaussian_noise = True

    @property
    def invertible(self) -> bool:
        """`s_t > 0` for every t >= 1."""
        return True

    @abc.abstractmethod
    def degrade(self, x0, t):
        """The noise-free degradation `D_t(x_0)`; `t` is a scalar or a `(B,)` integer array."""

    @abc.abstractmethod
    def noise_std(self, t):
        """The noise scale `s_t` (zero at t = 0)."""

    def forward(self, x0, t, eps):
        return self.degrade(x0, t) + expand_to(self.noise_std(t), x0).astype(x0.dtype) * eps

    def sample_noise(self, key, shape, dtype=None):
        return jax.random.normal(key, shape, jnp.result_type(float) if dtype is None else dtype)

    def invert_noise(self, x0, t, x_t):
        if not self.invertible:
            super().invert_noise(x0, t, x_t)
        return (x_t - self.degrade(x0, t)) / expand_to(self.noise_std(t), x_t).astype(x_t.dtype)


def integer_time(t):
    """`t` as an integer array (the steps of a discrete corruption)."""
    t = jnp.asarray(t)
    return t if jnp.issubdtype(t.dtype, jnp.integer) else jnp.round(t).astype(jnp.int32)
