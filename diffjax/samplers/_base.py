"""What every sampler shares: the interface, the time grid and its coefficients, the prior and clipping."""

from __future__ import annotations

import abc
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_choice
from ..predictions import Predictor
from ..processes import GaussianProcess
from ._noise import NOISE_RNGS, normal


class Sampler(abc.ABC):
    """A reverse process: rebuilds data from the prior with a `Predictor`.

    A sampler is a frozen, hashable dataclass of knobs (a static argument of the jitted `sample`).
    `validate` runs on the host before anything is traced, so an incompatible choice fails with one clear
    `ValueError` before compilation; `run` is traced once and must not leave the device.
    """

    def validate(self, process, predictor: Predictor) -> None:
        """Raises `ValueError` when this sampler cannot run on `process` with `predictor`."""
        if not isinstance(process, GaussianProcess):
            raise ValueError(f"sampler {type(self).__name__} needs a Gaussian process, got {type(process).__name__}")
        if process.is_discrete and predictor.kind == "velocity":
            raise ValueError(
                "a 'velocity' predictor needs a continuous process; use kind 'eps', 'x0' or 'v' with 'ddpm'"
            )

    def prior(self, key, process, shape):
        """The starting point `x_T`, drawn from the process's prior."""
        return process.prior_sample(key, shape)

    @abc.abstractmethod
    def run(self, key, predictor: Predictor, process, x_init, cond):
        """Returns `(x_0, info)`, where `info["nfe"]` counts the model evaluations."""


@dataclasses.dataclass(frozen=True)
class GridSampler(Sampler):
    """A fixed-step sampler over a descending time grid, run as one `lax.scan`.

    Attributes:
        steps: number of model evaluations on the grid; None takes every step of a discrete process
            (or `default_steps` for a continuous one).
        spacing: the process's time grid (`leading`, `trailing`, `linspace`, `uniform`, `edm`, `log_snr`);
            None takes the process's default.
        rho: EDM's rho for `spacing="edm"`.
        timesteps: an explicit descending sub-sequence of times, overriding `steps` and `spacing`.
        clip_x0: clip the predicted x_0 to `clip_range` at every step (Ho's reference code).
        clip_final: clip the returned sample to `clip_range` (Su's code).
        clip_range: the data range.
        noise_rng: the generator of the prior draw and of every step's noise, `pcg` (default: a counter-based
            hash, 8-10x faster than threefry on CPU) or `threefry` (`jax.random.normal`, bit for bit the
            draws of plain JAX); see `diffjax.samplers._noise`. Either gives the same draws for the same key
            on every run and device count; the two give different draws.
    """

    steps: int | None = None
    spacing: str | None = None
    rho: float = 7.0
    timesteps: tuple | None = None
    clip_x0: bool = False
    clip_final: bool = False
    clip_range: tuple[float, float] = (-1.0, 1.0)
    noise_rng: str = "pcg"

    default_steps = 1000

    def validate(self, process, predictor):
        super().validate(process, predictor)
        check_choice("noise_rng", self.noise_rng, NOISE_RNGS)
        if self.timesteps is not None:
            ts = [float(t) for t in self.timesteps]
            if any(b >= a for a, b in zip(ts, ts[1:], strict=False)) or not ts:
                raise ValueError("timesteps must be a non-empty, strictly decreasing sequence")
            if ts[0] > process.t_max or ts[-1] < process.t_min:
                raise ValueError(f"timesteps must lie in [{process.t_min}, {process.t_max}] for this process")
        elif self.spacing is not None:
            check_choice(f"spacing for {type(process).__name__}", self.spacing, process.spacings)
        if self.steps is not None and process.is_discrete and not 1 <= self.steps <= process.num_steps:
            raise ValueError(f"steps must be between 1 and T={process.num_steps}, got {self.steps}")

    def prior(self, key, process, shape):
        """`x_T ~ N(0, prior_std^2 I)` drawn by `noise_rng`, in the default float dtype (as
        `GaussianProcess.prior_sample`, which it equals with `noise_rng="threefry"`); a process of another family
        draws its own prior."""
        if not isinstance(process, GaussianProcess):
            return super().prior(key, process, shape)
        dtype = jnp.result_type(float)
        return jnp.asarray(process.prior_std(), dtype) * normal(key, shape, dtype, self.noise_rng)

    def grid(self, process):
        """The descending times at which the model is evaluated (a constant, even under `jit`)."""
        with jax.ensure_compile_time_eval():
            return self._grid(process)

    def _grid(self, process):
        if self.timesteps is not None:
            dtype = jnp.int32 if process.is_discrete else jnp.float32
            return jnp.asarray(self.timesteps, dtype=dtype)
        if self.steps is None:
            steps = process.num_steps if process.is_discrete else self.default_steps
        else:
            steps = self.steps
        return process.timesteps(steps, self.spacing, self.rho)

    def run(self, key, predictor, process, x_init, cond):
        """Scans `update` over the grid, one model evaluation per step, then clips if asked."""
        ts = self.grid(process)
        coefs = grid_coefficients(process, ts)

        def step(x, inputs):
            i, t, *step_coefs = inputs
            x0, eps, extras = self.predict(predictor, process, x, batched_time(t, x), cond)
            return self.update(key, i, x, x0, eps, *step_coefs, **extras), None

        x, _ = jax.lax.scan(step, x_init, (jnp.arange(ts.shape[0]), ts, *coefs))
        if self.clip_final:
            x = self.clip(x)
        return x, {"nfe": jnp.asarray(ts.shape[0], jnp.int32)}

    def predict(self, predictor, process, x, t, cond):
        """`(x̂_0, eps, extras)` at `(x_t, t)`: one model evaluation, and keyword arguments for `update` beyond
        the pair (none here; e.g. the x_0 variance of the optimal-variance samplers)."""
        x0, eps = predictor.x0_eps(process, x, t, **cond)
        return x0, eps, {}

    def update(self, key, step, x, x0, eps, alpha_t, sigma_t, alpha_s, sigma_s):
        """One step t -> s from `x` given the predicted `(x0, eps)`; grid samplers implement it."""
        raise NotImplementedError

    def clip(self, x):
        lo, hi = self.clip_range
        return jnp.clip(x, lo, hi)


def grid_coefficients(process, ts):
    """`(alpha_t, sigma_t, alpha_s, sigma_s)` for each step t -> s of the grid; the last s is clean data."""
    alpha_t, sigma_t = process.alpha(ts), process.sigma(ts)
    alpha_s = jnp.concatenate([alpha_t[1:], jnp.ones((1,), alpha_t.dtype)])
    sigma_s = jnp.concatenate([sigma_t[1:], jnp.zeros((1,), sigma_t.dtype)])
    return alpha_t, sigma_t, alpha_s, sigma_s


def batched_time(t, x):
    """The scalar time `t` repeated for each example of `x`, as the model sees it."""
    return jnp.full((x.shape[0],), t, dtype=t.dtype)


# ---- shared by the continuous-time samplers (articles (五), (六), EDM, DPM-Solver++) ------------------------------
def check_continuous(name: str, process, predictor: Predictor) -> None:
    """Raises `ValueError` unless sampler `name` can query `predictor` along the continuous `process`.

    The sampler needs real-valued time, and at `t_max` an `eps` or `score` prediction must be convertible to
    x̂_0, which fails where `alpha(t_max) = 0` (the flow at t = 1).
    """
    if process.is_discrete:
        raise ValueError(
            f"sampler {name!r} needs a continuous-time process; use process 'vp' (the continuous "
            f"DDPM) or, for {type(process).__name__}, sampler 'ancestral', 'ddim' or 'dpm_solver'"
        )
    check_alpha_at_t_max(name, process, predictor)


def check_alpha_at_t_max(name: str, process, predictor: Predictor) -> None:
    """Raises `ValueError` for an `eps`/`score` prediction where `alpha(t_max) = 0` (x̂_0 = (x - sigma ε̂)/0)."""
    if predictor.kind in ("eps", "score") and float(process.alpha(jnp.float32(process.t_max))) == 0.0:
        raise ValueError(
            f"sampler {name!r}: alpha(t_max) = 0, where an {predictor.kind!r} prediction gives no "
            "x_0; use an 'x0', 'v' or 'velocity' predictor, or a process with t_end < 1 "
            "(e.g. dj.process('flow', t_end=0.999))"
        )


def check_finite_sde(name: str, process) -> None:
    """Raises `ValueError` where the reverse SDE is singular at `t_max` (the flow at t = 1: g^2 = 2t/(1-t))."""
    t_max = jnp.float32(process.t_max)
    if not (np.isfinite(float(process.drift_coef(t_max))) and np.isfinite(float(process.g2(t_max)))):
        raise ValueError(
            f"sampler {name!r}: the reverse SDE of {type(process).__name__} is singular at "
            f"t_max = {process.t_max} (f or g^2 infinite); use a process with t_end < 1 (e.g. "
            "dj.process('flow', t_end=0.999)) or a deterministic sampler ('ode', 'heun', 'dpm_solver')"
        )


def check_steps(name: str, steps, minimum: int = 1) -> None:
    """Raises `ValueError` unless `steps` is None or an integer >= `minimum`."""
    if steps is not None and (int(steps) != steps or steps < minimum):
        raise ValueError(f"sampler {name!r} needs steps >= {minimum}, got {steps!r}")


def check_above_data(name: str, process, ts) -> None:
    """Raises `ValueError` when the grid touches clean data (sigma = 0), where the model cannot be queried."""
    if float(process.sigma(jnp.asarray(ts[-1], jnp.float32))) == 0.0:
        raise ValueError(
            f"sampler {name!r}: timesteps must stay above clean data (sigma(t) > 0); every sampler "
            "ends with its own step from the last time to data"
        )


def predict_x0_eps(predictor: Predictor, process, x, t, cond, clip_range=None):
    """The predicted `(x̂_0, ε̂)` at the scalar time `t`; with `clip_range`, x̂_0 is clipped and ε̂ recomputed.

    `ε̂ = (x_t - alpha x̂_0)/sigma` after clipping keeps the pair consistent with `x_t`, so every update built
    on it (score `-ε̂/sigma`, velocity `alpha' x̂_0 + sigma' ε̂`) sees the clipped prediction.
    """
    x0, eps = predictor.x0_eps(process, x, batched_time(t, x), **cond)
    if clip_range is not None:
        x0 = jnp.clip(x0, *clip_range)
        eps = (x - process.alpha(t) * x0) / process.sigma(t)
    return x0, eps


@dataclasses.dataclass(frozen=True)
class ContinuousSampler(GridSampler):
    """A `GridSampler` whose steps need continuous time: the SDE, PC, ODE and EDM samplers.

    It keeps the grid knobs of `GridSampler` (`steps` grid points, each evaluated once by first-order steps,
    `spacing`, `rho`, `timesteps`, clipping) and the convention that the last grid time jumps to clean data
    with the prediction x̂_0 there (the Euler step of `d(x/alpha) = ε d(sigma/alpha)` to sigma = 0).
    """

    name = "continuous"

    def validate(self, process, predictor):
        Sampler.validate(self, process, predictor)
        check_continuous(self.name, process, predictor)
        check_steps(self.name, self.steps)
        super().validate(process, predictor)
        if self.timesteps is not None:
            check_above_data(self.name, process, self.timesteps)

    def x0_eps(self, predictor, process, x, t, cond):
        """`(x̂_0, ε̂)` at the scalar time `t`, clipped when `clip_x0` is set."""
        return predict_x0_eps(predictor, process, x, t, cond, self.clip_range if self.clip_x0 else None)

    def finish(self, x):
        """The returned sample: clipped when `clip_final` is set."""
        return self.clip(x) if self.clip_final else x
