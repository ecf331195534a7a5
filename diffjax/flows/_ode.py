"""Sampling a velocity model by its ODE, reflow couplings and the straightness of paths (article (十七))."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_choice
from ..likelihood._solvers import ADAPTIVE_SOLVERS, adaptive_solve, check_tolerances
from ..predictions import Predictor
from ._priors import GaussianPrior, UniformPrior

SOLVERS = ("euler", *ADAPTIVE_SOLVERS)


def as_velocity(model) -> Predictor:
    """`model` as a velocity `Predictor`: a `Predictor` of kind `velocity`, or a callable `fn(x_t, t, **cond)`."""
    if isinstance(model, Predictor):
        if model.kind != "velocity":
            raise ValueError(
                f"the flow ODE needs a 'velocity' model, got kind {model.kind!r}; on the straight path "
                "with a Gaussian prior wrap it: dj.Predictor(lambda x, t: p.predict(dj.process('flow'), "
                "x, t, 'velocity'), kind='velocity')"
            )
        return model
    if callable(model):
        return Predictor(model, kind="velocity")
    raise ValueError(
        f"velocity must be a dj.Predictor of kind 'velocity' or a callable fn(x_t, t), got {type(model).__name__}"
    )


@dataclasses.dataclass(frozen=True)
class _Options:
    solver: str
    steps: int
    rtol: float
    atol: float
    max_steps: int


def _check_options(solver, steps, rtol, atol, max_steps) -> _Options:
    check_choice("ODE solver", solver, SOLVERS)
    if solver == "euler":
        if int(steps) < 1:
            raise ValueError(f"steps must be a positive integer, got {steps}")
    else:
        check_tolerances(solver, rtol, atol, max_steps)
    return _Options(solver, int(steps), float(rtol), float(atol), int(max_steps))


def _euler_grid(t_start: float, t_end: float, steps: int, dtype):
    return jnp.asarray(np.linspace(t_start, t_end, steps + 1), dtype)


def _euler(velocity, x, cond, ts):
    """Euler steps `x <- x + (s - t) v(x, t)` over the grid `ts`; returns the end point and every velocity."""

    def step(x, times):
        t, s = times
        v = velocity(x, jnp.full((x.shape[0],), t, x.dtype), **cond)
        return x + (s - t) * v, v

    return jax.lax.scan(step, x, (ts[:-1], ts[1:]))


@functools.partial(jax.jit, static_argnames=("t_start", "t_end", "options"))
def _solve(velocity, x, cond, t_start, t_end, options):
    if options.solver == "euler":
        x, _ = _euler(velocity, x, cond, _euler_grid(t_start, t_end, options.steps, x.dtype))
        return x, {"nfe": jnp.asarray(options.steps, jnp.int32)}

    def field(t, y, args):
        model, cond = args
        return model(y, jnp.full((y.shape[0],), t, y.dtype), **cond)

    x, num_steps, nfe = adaptive_solve(
        field, x, (velocity, cond), t_start, t_end, options.solver, options.rtol, options.atol, options.max_steps
    )
    return x, {"nfe": jnp.asarray(nfe, jnp.int32), "num_steps": jnp.asarray(num_steps, jnp.int32)}


def solve(
    velocity,
    x,
    *,
    t_start: float = 1.0,
    t_end: float = 0.0,
    solver: str = "euler",
    steps: int = 100,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
    cond=None,
    return_info: bool = False,
):
    """Integrates `dx/dt = v(x, t)` from `t_start` to `t_end` (either direction), jitted once per model and knobs.

    Args:
        velocity: a `dj.Predictor` of kind `velocity` or a callable `fn(x_t, t, **cond)`, `t` of shape `(batch,)`.
        x: the state at `t_start`, `(batch, ...)`.
        t_start, t_end: the time interval; 1 -> 0 samples, 0 -> 1 encodes data to the prior.
        solver: `euler` (`steps` fixed steps of a `lax.scan`, the model never evaluated at `t_end`) or an
            adaptive diffrax solver (`tsit5`, `dopri5`, `dopri8`, `heun`; these also evaluate at `t_end`).
        steps: Euler steps.
        rtol, atol, max_steps: the adaptive solver's tolerances and step budget.
        cond: keyword arguments passed to the model.
        return_info: also return `{"nfe"}` (and `num_steps` for adaptive solvers).
    """
    velocity = as_velocity(velocity)
    options = _check_options(solver, steps, rtol, atol, max_steps)
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"x must be (batch, *data_shape), got shape {x.shape}")
    out, info = _solve(velocity, x, {} if cond is None else dict(cond), float(t_start), float(t_end), options)
    return (out, info) if return_info else out


def _prior_draw(key, prior, n, x_init):
    if x_init is not None:
        return jnp.asarray(x_init)
    if not isinstance(prior, GaussianPrior | UniformPrior):
        raise ValueError(f"prior must be a GaussianPrior or UniformPrior, got {type(prior).__name__}")
    if int(n) < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    return prior.sample(key, int(n))


def sample(
    key,
    velocity,
    prior,
    n: int,
    *,
    t_min: float = 0.0,
    t_max: float = 1.0,
    x_init=None,
    return_info: bool = False,
    **ode_knobs,
):
    """Draws `n` samples: `x_1` from `prior`, then the ODE `dx/dt = v(x, t)` from `t_max` to `t_min` (article (十五)).

    `x_init` replaces the prior draw. `ode_knobs` go to `solve` (solver, steps, rtol, atol, max_steps, cond).
    """
    x1 = _prior_draw(key, prior, n, x_init)
    return solve(velocity, x1, t_start=t_max, t_end=t_min, return_info=return_info, **ode_knobs)


def reflow_pairs(key, velocity, prior, n: int, *, t_min: float = 0.0, t_max: float = 1.0, x_init=None, **ode_knobs):
    """Reflow's coupling `(x_1, x_0)`: `n` prior draws and where the model's ODE takes them (article (十七)).

    The pairs are deterministic in `x_1`: re-solving from `x_1` returns `x_0`, and solving from `x_0` forwards
    returns `x_1` (up to solver error). Training `flow_matching(...)(key, apply_fn, params, x0, x1=x1)` on them
    gives the 2-rectified flow, whose paths are straighter. The default Euler solver runs `steps` fixed steps;
    pass `solver="tsit5"` for the adaptive solve of the rectified-flow code (tolerance 1e-5).
    """
    x1 = _prior_draw(key, prior, n, x_init)
    x0 = solve(velocity, x1, t_start=t_max, t_end=t_min, **ode_knobs)
    return x1, x0


@functools.partial(jax.jit, static_argnames=("t_start", "t_end", "steps", "normalized"))
def _straightness(velocity, x1, cond, t_start, t_end, steps, normalized):
    ts = _euler_grid(t_start, t_end, steps, x1.dtype)
    x0, vs = _euler(velocity, x1, cond, ts)  # vs: (steps, B, ...)
    length = t_start - t_end
    mean_velocity = (x1 - x0) / length
    axes = tuple(range(2, vs.ndim))
    gaps = jnp.sum((vs - mean_velocity[None]) ** 2, axis=axes)  # (steps, B)
    value = jnp.mean(jnp.sum(gaps, axis=0) * (length / steps))
    if normalized:
        value = value / (length * jnp.mean(jnp.sum((mean_velocity**2).reshape(x1.shape[0], -1), axis=-1)))
    return value


def straightness(
    key,
    velocity,
    prior,
    n: int,
    *,
    steps: int = 100,
    t_min: float = 0.0,
    t_max: float = 1.0,
    normalized: bool = False,
    cond=None,
    x_init=None,
):
    """Liu et al.'s straightness of the model's ODE paths, `S = int E ||(x_1 - x_0) - v(x_t, t)||^2 dt`.

    The paths start at `n` prior draws (or `x_init`) and run `steps` Euler steps from `t_max` to `t_min`; the
    integral is the Riemann sum over those steps, with `x_1 - x_0` replaced by the mean velocity
    `(x_{t_max} - x_{t_min}) / (t_max - t_min)` of each Euler path (the two agree on [0, 1]). On an Euler path
    `S` is exactly the spread of the velocity along the path: zero if and only if every path is a straight line
    run at constant speed. `normalized=True` divides by `(t_max - t_min) E ||mean velocity||^2`, a scale-free
    value (0 for straight paths).
    """
    velocity = as_velocity(velocity)
    if int(steps) < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    if not t_min < t_max:
        raise ValueError(f"straightness needs t_min < t_max, got t_min={t_min}, t_max={t_max}")
    x1 = _prior_draw(key, prior, n, x_init)
    return _straightness(
        velocity, x1, {} if cond is None else dict(cond), float(t_max), float(t_min), int(steps), bool(normalized)
    )
