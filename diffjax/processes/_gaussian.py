"""The interface every Gaussian forward process implements: `x_t = alpha(t) x_0 + sigma(t) eps`."""

from __future__ import annotations

import abc

import jax
import jax.numpy as jnp
import numpy as np

from .._broadcast import expand_to
from .._checks import check_choice


def time_derivative(fn, t):
    """Elementwise d fn / dt for an elementwise `fn`, by forward-mode autodiff."""
    t = jnp.asarray(t, dtype=jnp.result_type(float))
    return jax.jvp(fn, (t,), (jnp.ones_like(t),))[1]


def rho_spacing(sigma_max: float, sigma_min: float, num: int, rho: float) -> np.ndarray:
    """EDM's time steps: `sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho`.

    Descending, `sigma_0 = sigma_max`, `sigma_{N-1} = sigma_min`; rho = 1 is uniform spacing (EDM eq. 5).
    """
    if num == 1:
        return np.array([sigma_max], dtype=np.float64)
    i = np.arange(num, dtype=np.float64)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    return (hi + i / (num - 1) * (lo - hi)) ** rho


class GaussianProcess(abc.ABC):
    """A forward process with Gaussian marginals `q(x_t | x_0) = N(alpha(t) x_0, sigma(t)^2 I)`.

    Time runs from data (t = 0) to noise (t = t_max). A process is a frozen, hashable dataclass: it holds
    only Python numbers and builds arrays only when its methods are called, so it is a static argument of
    any jitted function.

    The linear forward SDE with these marginals is `dx = f(t) x dt + g(t) dw` with (article (五))
    `f(t) = d log alpha / dt` and `g(t)^2 = d sigma^2/dt - 2 f(t) sigma^2`. Subclasses override these with
    closed forms where they have them; the defaults differentiate `alpha` and `sigma` by autodiff.
    """

    is_discrete: bool = False
    default_spacing: str = "uniform"
    spacings: tuple[str, ...] = ("uniform", "linspace", "edm", "log_snr")

    # ---- the marginal ------------------------------------------------------------------------------
    @abc.abstractmethod
    def alpha(self, t):
        """The signal scale alpha(t) of `x_t = alpha(t) x_0 + sigma(t) eps`."""

    @abc.abstractmethod
    def sigma(self, t):
        """The noise scale sigma(t) of `x_t = alpha(t) x_0 + sigma(t) eps`."""

    @property
    @abc.abstractmethod
    def t_min(self) -> float:
        """Smallest time the samplers evaluate the model at (the last step then jumps to clean data)."""

    @property
    @abc.abstractmethod
    def t_max(self) -> float:
        """The time of the prior, where sampling starts."""

    def log_snr(self, t):
        """log SNR(t) = log(alpha(t)^2 / sigma(t)^2)."""
        return 2.0 * (jnp.log(self.alpha(t)) - jnp.log(self.sigma(t)))

    def edm_sigma(self, t):
        """The EDM noise level of the rescaled variable `x_t / alpha(t) = x_0 + (sigma/alpha) eps`."""
        return self.sigma(t) / self.alpha(t)

    def perturb(self, x0, t, eps):
        """Returns `x_t = alpha(t) x_0 + sigma(t) eps`; `t` is a scalar or has shape `(batch,)`."""
        return expand_to(self.alpha(t), x0) * x0 + expand_to(self.sigma(t), x0) * eps

    def prior_std(self):
        """The standard deviation of the prior `N(0, prior_std^2 I)` that approximates `q(x_{t_max})`.

        `sigma(t_max)` here (VE, EDM: `alpha(t_max) x_0` is negligible); variance-preserving processes
        override it with 1, the `N(0, I)` of DDPM."""
        return self.sigma(jnp.asarray(self.t_max))

    def prior_sample(self, key, shape, dtype=None):
        """A draw from the prior `N(0, prior_std^2 I)`."""
        dtype = jnp.result_type(float) if dtype is None else dtype
        return jnp.asarray(self.prior_std(), dtype) * jax.random.normal(key, shape, dtype)

    # ---- the forward SDE ---------------------------------------------------------------------------
    def drift_coef(self, t):
        """f(t) = d log alpha(t) / dt, the drift coefficient of `dx = f(t) x dt + g(t) dw`."""
        return time_derivative(lambda s: jnp.log(self.alpha(s)), t)

    def g2(self, t):
        """g(t)^2 = d sigma^2 / dt - 2 f(t) sigma(t)^2, the squared diffusion coefficient."""
        sigma2 = lambda s: self.sigma(s) ** 2  # noqa: E731
        return time_derivative(sigma2, t) - 2.0 * self.drift_coef(t) * sigma2(t)

    def alpha_dot(self, t):
        """d alpha / dt (continuous processes only)."""
        return time_derivative(self.alpha, t)

    def sigma_dot(self, t):
        """d sigma / dt (continuous processes only)."""
        return time_derivative(self.sigma, t)

    # ---- time grids --------------------------------------------------------------------------------
    def t_from_log_snr(self, log_snr):
        """Inverts the (strictly decreasing) log-SNR by 64 bisection steps on [t_min, t_max]."""
        log_snr = jnp.asarray(log_snr, dtype=jnp.result_type(float))
        lo = jnp.full_like(log_snr, self.t_min)
        hi = jnp.full_like(log_snr, self.t_max)

        def body(_, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            above = self.log_snr(mid) > log_snr
            return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

        lo, hi = jax.lax.fori_loop(0, 64, body, (lo, hi))
        return 0.5 * (lo + hi)

    def t_from_edm_sigma(self, edm_sigma):
        """The time whose `sigma(t)/alpha(t)` equals `edm_sigma`."""
        return self.t_from_log_snr(-2.0 * jnp.log(edm_sigma))

    def timesteps(self, num_steps: int, spacing: str | None = None, rho: float = 7.0):
        """The descending times at which a `num_steps`-step sampler evaluates the model.

        The grid runs from `t_max` down to `t_min`; every sampler ends with one more step from `t_min` to
        clean data (alpha = 1, sigma = 0). Spacings: `uniform`/`linspace` (equal steps in t), `edm`
        (EDM's rho-spacing of sigma/alpha, eq. 5), `log_snr` (equal steps in log-SNR).
        """
        spacing = self.default_spacing if spacing is None else spacing
        check_choice(f"spacing for {type(self).__name__}", spacing, self.spacings)
        if int(num_steps) < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        n = int(num_steps)
        # Where t_min is already clean data (sigma = 0, e.g. the flow at t = 0) the model is not evaluated
        # there: the grid takes n + 1 points and drops the last, as DDPM's T..1 drops step 0.
        at_data = float(self.sigma(jnp.asarray(self.t_min, jnp.float32))) == 0.0
        m = n + 1 if at_data else n
        if spacing in ("uniform", "linspace"):
            grid = jnp.asarray(np.linspace(self.t_max, self.t_min, m), dtype=jnp.float32)
        elif spacing == "edm":
            s_max = float(self.edm_sigma(jnp.asarray(self.t_max, jnp.float32)))
            s_min = float(self.edm_sigma(jnp.asarray(self.t_min, jnp.float32)))
            if np.isfinite(s_max):
                grid = self.t_from_edm_sigma(jnp.asarray(rho_spacing(s_max, s_min, m, rho), jnp.float32))
            else:  # sigma/alpha is unbounded (the flow at t = 1): rho-space t itself, as in article (二十一).
                grid = jnp.asarray(rho_spacing(self.t_max, self.t_min, m, rho), jnp.float32)
        else:
            if at_data:
                raise ValueError(f"log_snr spacing needs sigma(t_min) > 0; give {type(self).__name__} a t_eps > 0")
            ends = jnp.asarray([self.t_max, self.t_min], dtype=jnp.float32)
            l_min, l_max = (float(v) for v in self.log_snr(ends))
            grid = self.t_from_log_snr(jnp.asarray(np.linspace(l_min, l_max, m), jnp.float32))
        return grid[:n]
