"""Samplers: how data is rebuilt. `sampler(name, **knobs)` builds one; `sample(...)` runs it, jitted once."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from .._checks import check_knobs, lookup
from ..predictions import Predictor
from ._ancestral import Ancestral as Ancestral
from ._base import ContinuousSampler as ContinuousSampler
from ._base import GridSampler as GridSampler
from ._base import Sampler as Sampler
from ._ddim import DDIM as DDIM
from ._dpm_solver import DPMSolver as DPMSolver
from ._edm import EDMEuler as EDMEuler
from ._edm import EDMHeun as EDMHeun
from ._interpolation import slerp as slerp
from ._noise import NOISE_RNGS as NOISE_RNGS
from ._ode import ProbabilityFlowODE as ProbabilityFlowODE
from ._pc import PredictorCorrector as PredictorCorrector
from ._sde import EulerMaruyama as EulerMaruyama

SAMPLERS = {
    "ancestral": Ancestral,
    "ddim": DDIM,
    "euler_maruyama": EulerMaruyama,
    "reverse_sde": EulerMaruyama,
    "pc": PredictorCorrector,
    "ode": ProbabilityFlowODE,
    "heun": EDMHeun,
    "euler": EDMEuler,
    "dpm_solver": DPMSolver,
}


def sampler(name: str, **knobs) -> Sampler:
    """Builds the sampler `name` with defaults from FORMULATIONS.md, overridden by `knobs`.

    Every sampler takes the grid knobs `steps` (grid times, each queried once by first-order steps; the last
    one jumps to clean data with x̂_0 there), `spacing`, `rho`, `timesteps`, `clip_x0`, `clip_final`,
    `clip_range`, and `noise_rng` (the generator of the prior and of the steps' noise, in `NOISE_RNGS`: `pcg`,
    the default, or `threefry`, `jax.random.normal`). Names and their own knobs:

    * `ancestral` (variance in {beta, posterior, analytic, npr, sn}, guidance in {eps, mean}; steps = all of
      DDPM's) and `ddim` (eta=0, steps=50, variance in {eta, analytic, npr, sn}), articles (一)–(四), on any
      Gaussian process; the `analytic`/`npr`/`sn` variances of (七)–(八) need the model wrapped by
      `dj.variance.with_x0_variance`, and `guidance="mean"` (九) a `dj.guidance.classifier_guidance` model;
    * `euler_maruyama`, alias `reverse_sde`: the reverse SDE of article (五) by Euler–Maruyama, and with
      `sigma_rev` in [0, 1] (default 1) the equal-marginal family of article (六), `sigma_rev = 0` being the
      Euler method on the probability-flow ODE (steps=1000);
    * `pc`: predictor–corrector (predictor in {euler_maruyama, reverse_diffusion, ancestral}, default
      reverse_diffusion; Langevin corrector with snr=0.16, n_corrector=1; steps=1000);
    * `ode`: the probability-flow ODE through diffrax (solver in {euler, heun, midpoint, tsit5, dopri5},
      default tsit5; adaptive=True with rtol=atol=1e-5 and max_steps, or fixed steps on the grid; steps=100);
    * `heun` and `euler`: EDM's Algorithm 2 in sigma/alpha on any continuous process (S_churn=0, S_tmin,
      S_tmax, S_noise, order, variable in {sigma, t}; steps=18, rho-spacing: 35 evaluations for Heun);
    * `dpm_solver`: DPM-Solver++ in log(alpha/sigma) (method in {multistep, singlestep}, order in {1, 2};
      steps=20, uniform in log-SNR: 20 evaluations for 2M); also on the discrete DDPM.

    The SDE, PC, ODE and EDM samplers need continuous time (`vp`, `subvp`, `ve`, `edm`, `flow`); those
    with noise need a finite SDE at t_max (the flow with t_end < 1). `dj.sample(..., return_info=True)`
    reports the model evaluations as `info["nfe"]`.

    Raises:
        ValueError: for an unknown name or knob, naming the valid ones.
    """
    cls = lookup("sampler", SAMPLERS, name)
    check_knobs(f"sampler {name!r}", knobs, [f.name for f in dataclasses.fields(cls)])
    if isinstance(knobs.get("timesteps"), Sequence | jax.Array) and not isinstance(knobs["timesteps"], tuple):
        knobs["timesteps"] = tuple(int(t) if float(t).is_integer() else float(t) for t in knobs["timesteps"])
    if "clip_range" in knobs:
        knobs["clip_range"] = tuple(float(v) for v in knobs["clip_range"])
    return cls(**knobs)


def _check_shape(shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"shape must be a tuple of ints (batch, ...), got {shape!r}") from None
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ValueError(f"shape must be (batch, *data_shape) with positive sizes, e.g. (64, 2), got {shape}")
    return shape


def _check_predictor(predictor) -> None:
    if not isinstance(predictor, Predictor):
        raise ValueError(f"expected a diffjax Predictor (dj.Predictor(fn, kind=...)), got {type(predictor).__name__}")


@functools.partial(jax.jit, static_argnames=("process", "sampler", "shape"))
def _sample(key, predictor, process, sampler, shape, cond, x_init):
    if x_init is None:
        key, prior_key = jax.random.split(key)
        x_init = sampler.prior(prior_key, process, shape)
    return sampler.run(key, predictor, process, x_init, cond)


def sample(
    key, predictor: Predictor, process, sampler: Sampler, shape, *, cond=None, x_init=None, return_info: bool = False
):
    """Draws `shape[0]` samples: `x_T` from the prior, then the reverse process of `sampler`.

    Pure and jitted once per (predictor function, process, sampler, shape); a second call with a new key,
    new `params` in the predictor or new `cond` arrays reuses the compiled program. Incompatible choices
    raise `ValueError` before anything is compiled.

    Args:
        key: a PRNG key.
        predictor: the model, `dj.Predictor(fn, kind)`.
        process: the forward process the model was trained on.
        sampler: from `dj.sampler(name, ...)`.
        shape: `(batch, *data_shape)`.
        cond: keyword arguments passed to the model at every evaluation (e.g. class labels).
        x_init: start from this `x_T` instead of a prior draw (e.g. the output of `ddim_invert`).
        return_info: also return `{"nfe": number of model evaluations}`.
    """
    _check_predictor(predictor)
    shape = _check_shape(shape)
    if not isinstance(sampler, Sampler):
        raise ValueError(f"expected a sampler from dj.sampler(...), got {type(sampler).__name__}")
    sampler.validate(process, predictor)
    if x_init is not None and tuple(jnp.shape(x_init)) != shape:
        raise ValueError(f"x_init must have the sample shape {shape}, got {tuple(jnp.shape(x_init))}")
    x, info = _sample(key, predictor, process, sampler, shape, {} if cond is None else dict(cond), x_init)
    return (x, info) if return_info else x


@functools.partial(jax.jit, static_argnames=("process", "sampler"))
def _invert(predictor, process, sampler, x0, cond):
    return sampler.invert(predictor, process, x0, cond)


def ddim_invert(
    predictor: Predictor,
    process,
    x0,
    *,
    steps: int = 50,
    spacing=None,
    timesteps=None,
    cond=None,
    return_info: bool = False,
):
    """Maps data `x0` to its prior noise `x_T` by running deterministic DDIM forwards (article (四)).

    Sampling back with `dj.sampler("ddim", eta=0, steps=steps, spacing=spacing)` from `x_init=x_T` returns
    `x0` up to the discretisation error of both passes.
    """
    _check_predictor(predictor)
    ddim = sampler("ddim", eta=0.0, steps=steps, spacing=spacing, timesteps=timesteps)
    ddim.validate(process, predictor)
    x, info = _invert(predictor, process, ddim, jnp.asarray(x0), {} if cond is None else dict(cond))
    return (x, info) if return_info else x
