"""Training-time distributions: which `t` a loss is evaluated at (the outer expectation `E_t` of every loss).

A time sampling is a small frozen dataclass whose fields are its knobs; `TIME_SAMPLINGS` maps names to them:

* `uniform_discrete`: `t ~ U{1, ..., T}` (DDPM, article (一)); discrete processes only;
* `uniform`: `t ~ U(t_min, t_max)` (article (五), flow matching (十五)); continuous processes only;
* `log_normal`: `ln sigma ~ N(p_mean, p_std^2)` for the EDM noise level `sigma = sigma(t)/alpha(t)`
  (EDM unification note), mapped to the process's time and clipped into `[t_min, t_max]`;
* `logit_normal`: `t = t_min + (t_max - t_min) sigmoid(z)`, `z ~ N(logit_mean, logit_std^2)` (SD3);
  continuous processes only.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from .._checks import check_knobs, lookup
from ..processes import GaussianProcess


def _float_dtype():
    return jnp.result_type(float)


def _require_continuous(name: str, process: GaussianProcess) -> None:
    if process.is_discrete:
        raise ValueError(f"time sampling {name!r} draws real times, but {type(process).__name__} is discrete; "
                         "use time_sampling='uniform_discrete' (or 'log_normal', which picks the nearest step)")


@dataclasses.dataclass(frozen=True)
class UniformDiscrete:
    """DDPM's `t ~ U{1, ..., T}` (article (一)); returns int32 steps."""

    def check(self, process: GaussianProcess) -> None:
        """Raises `ValueError` unless `process` is discrete."""
        if not process.is_discrete:
            raise ValueError(f"time sampling 'uniform_discrete' needs a discrete process such as 'ddpm', but "
                             f"{type(process).__name__} is continuous; use 'uniform', 'log_normal' or "
                             "'logit_normal' instead")

    def __call__(self, key, process: GaussianProcess, n: int):
        return jax.random.randint(key, (n,), process.t_min, process.t_max + 1, dtype=jnp.int32)


@dataclasses.dataclass(frozen=True)
class Uniform:
    """`t ~ U(t_min, t_max)`, open at both ends; the bounds default to the process's own `t_min` and `t_max`."""

    t_min: float | None = None
    t_max: float | None = None

    def bounds(self, process: GaussianProcess) -> tuple[float, float]:
        lo = process.t_min if self.t_min is None else self.t_min
        hi = process.t_max if self.t_max is None else self.t_max
        return float(lo), float(hi)

    def check(self, process: GaussianProcess) -> None:
        """Raises `ValueError` for a discrete process or empty bounds."""
        _require_continuous("uniform", process)
        lo, hi = self.bounds(process)
        if not lo < hi:
            raise ValueError(f"time sampling 'uniform' needs t_min < t_max, got t_min={lo}, t_max={hi}")

    def __call__(self, key, process: GaussianProcess, n: int):
        # Open at both ends: the flow's t = 0 (sigma = 0) and t = 1 (alpha = 0) leave some kinds undefined,
        # and a single NaN there would poison a long run.
        lo, hi = self.bounds(process)
        dtype = _float_dtype()
        u = jax.random.uniform(key, (n,), dtype, minval=jnp.finfo(dtype).eps, maxval=1.0)
        return lo + (hi - lo) * u


@dataclasses.dataclass(frozen=True)
class LogNormal:
    """EDM's `ln sigma ~ N(p_mean, p_std^2)` with `sigma = sigma(t)/alpha(t)`, then `t = t(sigma)` clipped.

    On a discrete process `t(sigma)` is the step with the nearest log-SNR (int32).
    """

    p_mean: float = -1.2
    p_std: float = 1.2

    def check(self, process: GaussianProcess) -> None:
        """Raises `ValueError` for a non-positive `p_std`."""
        if not self.p_std > 0:
            raise ValueError(f"time sampling 'log_normal' needs p_std > 0, got {self.p_std}")

    def __call__(self, key, process: GaussianProcess, n: int):
        log_sigma = self.p_mean + self.p_std * jax.random.normal(key, (n,), _float_dtype())
        t = process.t_from_edm_sigma(jnp.exp(log_sigma))
        return jnp.clip(t, process.t_min, process.t_max)


@dataclasses.dataclass(frozen=True)
class LogitNormal:
    """`t = t_min + (t_max - t_min) sigmoid(z)`, `z ~ N(logit_mean, logit_std^2)` (continuous processes)."""

    logit_mean: float = 0.0
    logit_std: float = 1.0

    def check(self, process: GaussianProcess) -> None:
        """Raises `ValueError` for a discrete process or a non-positive `logit_std`."""
        _require_continuous("logit_normal", process)
        if not self.logit_std > 0:
            raise ValueError(f"time sampling 'logit_normal' needs logit_std > 0, got {self.logit_std}")

    def __call__(self, key, process: GaussianProcess, n: int):
        z = self.logit_mean + self.logit_std * jax.random.normal(key, (n,), _float_dtype())
        return process.t_min + (process.t_max - process.t_min) * jax.nn.sigmoid(z)


TIME_SAMPLINGS = {
    "uniform_discrete": UniformDiscrete,
    "uniform": Uniform,
    "log_normal": LogNormal,
    "logit_normal": LogitNormal,
}


def knob_names(name: str) -> tuple[str, ...]:
    """The knobs of the time sampling `name`."""
    return tuple(f.name for f in dataclasses.fields(lookup("time sampling", TIME_SAMPLINGS, name)))


def default_time_sampling(process: GaussianProcess) -> str:
    """`uniform_discrete` for a discrete process, else `uniform`."""
    return "uniform_discrete" if process.is_discrete else "uniform"


def time_sampler(process: GaussianProcess, time_sampling: str | None = None, **knobs):
    """Builds and validates the time sampling `time_sampling` (default: `default_time_sampling(process)`).

    Raises:
        ValueError: for an unknown name or knob, or a sampling that does not fit `process`.
    """
    name = default_time_sampling(process) if time_sampling is None else time_sampling
    cls = lookup("time sampling", TIME_SAMPLINGS, name)
    check_knobs(f"time sampling {name!r}", knobs, knob_names(name))
    sampler = cls(**knobs)
    sampler.check(process)
    return sampler


def sample_times(key, process: GaussianProcess, n: int, time_sampling: str | None = None, **knobs):
    """Draws `n` training times, shape `(n,)`: int32 steps for discrete processes, floats otherwise."""
    return time_sampler(process, time_sampling, **knobs)(key, process, n)
