"""DDPM's discrete-time process, articles (一)–(四)."""

from __future__ import annotations

import dataclasses
import functools

import jax.numpy as jnp
import numpy as np

from .._checks import check_choice
from ._gaussian import GaussianProcess, rho_spacing

SCHEDULES = ("linear", "cosine", "su")


@functools.lru_cache(maxsize=32)
def _alpha_bar_scales(num_steps: int, schedule: str, beta_start: float, beta_end: float,
                      cosine_s: float, max_beta: float) -> np.ndarray:
    """Su's `abar_t` (a scale, not Ho's variance) for t = 0..T, with `abar_0 = 1`, in float64."""
    T = num_steps
    t = np.arange(1, T + 1, dtype=np.float64)
    if schedule == "linear":  # Ho et al.: beta^Ho linear from 1e-4 to 0.02.
        beta_ho = np.linspace(beta_start, beta_end, T, dtype=np.float64)
    elif schedule == "su":  # (一): alpha_t = sqrt(1 - 0.02 t / T), i.e. beta^Ho_t = 0.02 t / T.
        beta_ho = 0.02 * t / T
    else:  # improved DDPM: abar^Ho(t) = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) pi/2), beta clipped.
        f = np.cos((np.arange(T + 1, dtype=np.float64) / T + cosine_s) / (1 + cosine_s) * np.pi / 2) ** 2
        beta_ho = np.minimum(1.0 - f[1:] / f[:-1], max_beta)
    abar_ho = np.concatenate([[1.0], np.cumprod(1.0 - beta_ho)])
    return np.sqrt(abar_ho)


@dataclasses.dataclass(frozen=True)
class DDPM(GaussianProcess):
    """DDPM's Markov chain `x_t = alpha_t x_{t-1} + beta_t eps_t` with `alpha_t^2 + beta_t^2 = 1`, t = 1..T.

    Its marginal is `x_t = abar_t x_0 + bbar_t eps` with `abar_t = alpha_1...alpha_t` and
    `bbar_t = sqrt(1 - abar_t^2)` (article (一)); `alpha(t)` and `sigma(t)` return Su's scales `abar_t` and
    `bbar_t` (Ho's variances are their squares). Time is the integer step; t = 0 is data.

    Attributes:
        num_steps: T.
        schedule: `linear` (Ho: beta^Ho from `beta_start` to `beta_end`), `cosine` (improved DDPM, with
            offset `cosine_s` and beta^Ho clipped at `max_beta`) or `su` (`alpha_t = sqrt(1 - 0.02 t/T)`).
    """

    num_steps: int = 1000
    schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    cosine_s: float = 0.008
    max_beta: float = 0.999

    is_discrete = True
    default_spacing = "leading"
    spacings = ("leading", "trailing", "linspace", "uniform", "edm")

    def __post_init__(self):
        check_choice("DDPM schedule", self.schedule, SCHEDULES)
        if int(self.num_steps) != self.num_steps or self.num_steps < 1:
            raise ValueError(f"num_steps must be a positive integer, got {self.num_steps!r}")

    @property
    def t_min(self) -> int:
        return 1

    @property
    def t_max(self) -> int:
        return self.num_steps

    def alpha_bars(self) -> np.ndarray:
        """`abar_t` for t = 0..T as a float64 NumPy array."""
        return _alpha_bar_scales(int(self.num_steps), self.schedule, float(self.beta_start),
                                 float(self.beta_end), float(self.cosine_s), float(self.max_beta))

    def _table(self, values: np.ndarray, t):
        t = jnp.asarray(t)
        if not jnp.issubdtype(t.dtype, jnp.integer):
            t = jnp.round(t).astype(jnp.int32)
        return jnp.asarray(values, dtype=jnp.result_type(float))[t]

    def alpha(self, t):
        return self._table(self.alpha_bars(), t)

    def prior_std(self):
        """DDPM's prior is `N(0, I)`: `abar_T^2 + bbar_T^2 = 1` and `abar_T` is near zero."""
        return 1.0

    def sigma(self, t):
        return self._table(np.sqrt(1.0 - self.alpha_bars() ** 2), t)

    def log_snr(self, t):
        abar2 = self.alpha_bars() ** 2
        with np.errstate(divide="ignore"):
            table = np.log(abar2) - np.log1p(-abar2)
        return self._table(table, t)

    def step_alpha(self, t):
        """Su's per-step `alpha_t = abar_t / abar_{t-1}`."""
        abar = self.alpha_bars()
        return self._table(np.concatenate([[1.0], abar[1:] / abar[:-1]]), t)

    def step_beta(self, t):
        """Su's per-step `beta_t = sqrt(1 - alpha_t^2)` (Ho's beta_t is its square)."""
        abar = self.alpha_bars()
        step_alpha = np.concatenate([[1.0], abar[1:] / abar[:-1]])
        return self._table(np.sqrt(1.0 - step_alpha**2), t)

    def drift_coef(self, t):
        """The one-step analogue of f: `x_t = (1 + f_t) x_{t-1} + g_t eps_t`, so `f_t = alpha_t - 1`."""
        return self.step_alpha(t) - 1.0

    def g2(self, t):
        """The one-step analogue of g^2: `g_t^2 = beta_t^2` (Ho's beta_t)."""
        return self.step_beta(t) ** 2

    def alpha_dot(self, t):
        raise ValueError("a discrete DDPM process has no time derivative; use a continuous process "
                         "('vp', 'subvp', 've', 'edm', 'flow') for velocity predictions")

    sigma_dot = alpha_dot

    def t_from_log_snr(self, log_snr):
        """The step whose log-SNR is nearest to `log_snr` (log-SNR decreases in t), by binary search."""
        neg = -jnp.asarray(self.log_snr(jnp.arange(1, self.num_steps + 1)))  # increasing in t
        target = -jnp.asarray(log_snr, dtype=neg.dtype)
        hi = jnp.clip(jnp.searchsorted(neg, target), 1, self.num_steps - 1) if self.num_steps > 1 else \
            jnp.zeros(jnp.shape(target), jnp.int32)
        lo = jnp.maximum(hi - 1, 0)
        nearest = jnp.where(jnp.abs(neg[lo] - target) <= jnp.abs(neg[hi] - target), lo, hi)
        return (nearest + 1).astype(jnp.int32)

    def timesteps(self, num_steps: int, spacing: str | None = None, rho: float = 7.0):
        """The descending integer steps of a `num_steps`-step sub-sequence (article (四)).

        `leading` (Su's `ddim.py`: 1, 1+k, 1+2k, ... with stride k = T // n), `trailing` (T, T-k, ...),
        `linspace`/`uniform` (rounded linspace from T to 1), or `edm` (the nearest steps to EDM's
        rho-spaced sigma/alpha; duplicates are merged, so it may return fewer steps).
        """
        spacing = self.default_spacing if spacing is None else spacing
        check_choice("spacing for DDPM", spacing, self.spacings)
        T, n = int(self.num_steps), int(num_steps)
        if not 1 <= n <= T:
            raise ValueError(f"num_steps must be between 1 and T={T}, got {num_steps}")
        if spacing == "leading":
            steps = np.arange(n) * (T // n) + 1
        elif spacing == "trailing":
            steps = np.round(np.arange(n, 0, -1) * T / n).astype(np.int64)
        elif spacing in ("linspace", "uniform"):
            steps = np.round(np.linspace(T, 1, n)).astype(np.int64)
        else:
            abar = self.alpha_bars()
            edm_sigma = np.sqrt(1 - abar[1:] ** 2) / abar[1:]
            targets = rho_spacing(edm_sigma[-1], edm_sigma[0], n, rho)
            steps = np.abs(np.log(edm_sigma)[None, :] - np.log(targets)[:, None]).argmin(-1) + 1
        return jnp.asarray(np.unique(steps)[::-1].copy(), dtype=jnp.int32)
