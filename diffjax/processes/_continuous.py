"""Continuous-time Gaussian processes: VP, sub-VP, VE (article (五)), EDM (sigma = t) and the linear flow."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ._gaussian import GaussianProcess


def _float(t):
    return jnp.asarray(t, dtype=jnp.result_type(float))


@dataclasses.dataclass(frozen=True)
class VP(GaussianProcess):
    """Song et al.'s variance-preserving SDE `dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw`, t in [0, 1].

    `beta(t) = beta_min + t (beta_max - beta_min)`, so
    `log alpha(t) = -1/4 t^2 (beta_max - beta_min) - 1/2 t beta_min` and `sigma = sqrt(1 - alpha^2)`;
    `g^2 = -2 f = beta(t)` (article (五)). Sampling stops at `t_min` (score_sde's 1e-3).
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    t_eps: float = 1e-3

    @property
    def t_min(self) -> float:
        return self.t_eps

    @property
    def t_max(self) -> float:
        return 1.0

    def prior_std(self):
        """The VP (and sub-VP) prior is `N(0, I)`."""
        return 1.0

    def beta(self, t):
        return self.beta_min + _float(t) * (self.beta_max - self.beta_min)

    def log_alpha(self, t):
        t = _float(t)
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def alpha(self, t):
        return jnp.exp(self.log_alpha(t))

    def sigma(self, t):
        return jnp.sqrt(-jnp.expm1(2.0 * self.log_alpha(t)))

    def log_snr(self, t):
        la2 = 2.0 * self.log_alpha(t)
        return la2 - jnp.log(-jnp.expm1(la2))

    def drift_coef(self, t):
        return -0.5 * self.beta(t)

    def g2(self, t):
        return self.beta(t)

    def t_from_log_snr(self, log_snr):
        # -log alpha^2 = -log_sigmoid(lambda) = c, and 1/2 d t^2 + beta_min t = c.
        c = -jax.nn.log_sigmoid(_float(log_snr))
        d = self.beta_max - self.beta_min
        return (jnp.sqrt(self.beta_min**2 + 2.0 * d * c) - self.beta_min) / d


@dataclasses.dataclass(frozen=True)
class SubVP(VP):
    """Song et al.'s sub-VP SDE: VP's drift, `g^2 = beta(t) (1 - exp(-2 int_0^t beta))`, `sigma = 1 - alpha^2`."""

    def sigma(self, t):
        return -jnp.expm1(2.0 * self.log_alpha(t))

    def log_snr(self, t):
        la = self.log_alpha(t)
        return 2.0 * la - 2.0 * jnp.log(-jnp.expm1(2.0 * la))

    def g2(self, t):
        return self.beta(t) * -jnp.expm1(4.0 * self.log_alpha(t))

    def t_from_log_snr(self, log_snr):
        return GaussianProcess.t_from_log_snr(self, log_snr)


@dataclasses.dataclass(frozen=True)
class VE(GaussianProcess):
    """The variance-exploding SDE: `alpha = 1`, `sigma(t) = sigma_min (sigma_max / sigma_min)^t`, t in [0, 1].

    `f = 0` and `g^2 = d sigma^2 / dt = 2 sigma^2 log(sigma_max / sigma_min)` (article (五)).
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0

    @property
    def t_min(self) -> float:
        return 0.0

    @property
    def t_max(self) -> float:
        return 1.0

    def alpha(self, t):
        return jnp.ones_like(_float(t))

    def sigma(self, t):
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** _float(t)

    def log_snr(self, t):
        return -2.0 * jnp.log(self.sigma(t))

    def drift_coef(self, t):
        return jnp.zeros_like(_float(t))

    def g2(self, t):
        return 2.0 * self.sigma(t) ** 2 * jnp.log(self.sigma_max / self.sigma_min)

    def t_from_log_snr(self, log_snr):
        return (-0.5 * _float(log_snr) - jnp.log(self.sigma_min)) / jnp.log(self.sigma_max / self.sigma_min)


@dataclasses.dataclass(frozen=True)
class EDM(GaussianProcess):
    """Karras et al.'s process `x_t = x_0 + t eps` (sigma = t, alpha = 1), t in [sigma_min, sigma_max].

    This is the heat-equation ODE of article (十二) with `sigma_t = t`: `f = 0`, `g^2 = 2 t`.
    Default time grid: EDM's rho-spacing (rho = 7).
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0

    default_spacing = "edm"

    @property
    def t_min(self) -> float:
        return self.sigma_min

    @property
    def t_max(self) -> float:
        return self.sigma_max

    def alpha(self, t):
        return jnp.ones_like(_float(t))

    def sigma(self, t):
        return _float(t)

    def log_snr(self, t):
        return -2.0 * jnp.log(_float(t))

    def drift_coef(self, t):
        return jnp.zeros_like(_float(t))

    def g2(self, t):
        return 2.0 * _float(t)

    def t_from_log_snr(self, log_snr):
        return jnp.exp(-0.5 * _float(log_snr))


@dataclasses.dataclass(frozen=True)
class Flow(GaussianProcess):
    """The linear (rectified-flow) path `x_t = (1 - t) x_0 + t eps`, t in [0, 1] (articles (十五), (十七)).

    `f = -1/(1 - t)` and `g^2 = 2t/(1 - t)`, both singular at t = 1: sample it with velocity or x0
    predictions, which need no division by alpha. `t_max` is 1 by default.
    """

    t_eps: float = 0.0
    t_end: float = 1.0

    @property
    def t_min(self) -> float:
        return self.t_eps

    @property
    def t_max(self) -> float:
        return self.t_end

    def alpha(self, t):
        return 1.0 - _float(t)

    def sigma(self, t):
        return _float(t)

    def alpha_dot(self, t):
        return -jnp.ones_like(_float(t))

    def sigma_dot(self, t):
        return jnp.ones_like(_float(t))

    def drift_coef(self, t):
        return -1.0 / (1.0 - _float(t))

    def g2(self, t):
        t = _float(t)
        return 2.0 * t / (1.0 - t)

    def t_from_log_snr(self, log_snr):
        return jax.nn.sigmoid(-0.5 * _float(log_snr))
