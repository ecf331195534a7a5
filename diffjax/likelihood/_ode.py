"""The exact log-likelihood of a Gaussian-process model through its probability-flow ODE (article (六))."""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

from .._checks import check_choice
from ..predictions import Predictor
from ..processes import GaussianProcess
from ..samplers import _check_predictor, _check_shape
from ._solvers import adaptive_solve, check_tolerances

DIVERGENCES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")


def pf_ode_drift(predictor: Predictor, process: GaussianProcess, x, t, cond):
    """The probability-flow drift `f(t) x - 1/2 g(t)^2 grad log p_t(x)` (article (六)).

    On a Gaussian process it equals `E[alpha'(t) x_0 + sigma'(t) eps | x_t]`, the `velocity` prediction, so
    it is formed by the exact conversion of any prediction kind to `velocity`. That form needs no division by
    `alpha(t)` for `x0`, `v` and `velocity` predictions, which keeps the flow's `t = 1` (alpha = 0) finite.
    """
    return predictor.predict(process, x, jnp.full((x.shape[0],), t, dtype=x.dtype), "velocity", **cond)


def exact_divergence(jvp, x):
    """`tr(d drift / dx)` per example, from one Jacobian-vector product per data dimension."""
    d = math.prod(x.shape[1:])
    basis = jnp.eye(d, dtype=x.dtype).reshape((d, 1) + x.shape[1:])
    columns = jax.vmap(lambda e: jvp(jnp.broadcast_to(e, x.shape)))(basis)  # (d, B, *dims)
    return jnp.einsum("jbj->b", columns.reshape(d, x.shape[0], d))


def hutchinson_divergence(jvp, probes):
    """Hutchinson's unbiased estimate `mean_k v_k^T (d drift / dx) v_k` with `E[v v^T] = I`."""
    products = jax.vmap(jvp)(probes)  # (K, B, *dims)
    axes = tuple(range(2, probes.ndim))
    return jnp.mean(jnp.sum(probes * products, axis=axes), axis=0)


def draw_probes(key, probe: str, num_probes: int, shape, dtype):
    """`num_probes` probe vectors per example with identity covariance, drawn once and fixed along the path."""
    shape = (num_probes,) + tuple(shape)
    if probe == "gaussian":
        return jax.random.normal(key, shape, dtype)
    return jax.random.rademacher(key, shape, dtype)


def gaussian_log_prob(x, std):
    """`log N(x; 0, std^2 I)` per example of `x` `(B, ...)`."""
    d = math.prod(x.shape[1:])
    sq = jnp.sum(x.reshape(x.shape[0], -1) ** 2, axis=-1)
    return -0.5 * sq / std**2 - 0.5 * d * jnp.log(2.0 * jnp.pi * jnp.asarray(std, x.dtype) ** 2)


@dataclasses.dataclass(frozen=True)
class _Options:
    divergence: str
    probe: str
    num_probes: int
    solver: str
    rtol: float
    atol: float
    max_steps: int


@functools.partial(jax.jit, static_argnames=("process", "options"))
def _log_likelihood(key, predictor, process, x, cond, options):
    exact = options.divergence == "exact"
    probes = None if exact else draw_probes(key, options.probe, options.num_probes, x.shape, x.dtype)

    def field(t, state, args):
        predictor, cond, probes = args
        x, _ = state
        drift, jvp = jax.linearize(lambda y: pf_ode_drift(predictor, process, y, t, cond), x)
        div = exact_divergence(jvp, x) if exact else hutchinson_divergence(jvp, probes)
        return drift, div

    start = (x, jnp.zeros((x.shape[0],), x.dtype))
    (x_T, log_det), num_steps, nfe = adaptive_solve(
        field,
        start,
        (predictor, cond, probes),
        float(process.t_min),
        float(process.t_max),
        options.solver,
        options.rtol,
        options.atol,
        options.max_steps,
    )
    prior = gaussian_log_prob(x_T, process.prior_std())
    info = {
        "nfe": jnp.asarray(nfe, jnp.int32),
        "num_steps": jnp.asarray(num_steps, jnp.int32),
        "x_T": x_T,
        "prior_log_prob": prior,
        "log_det_jacobian": log_det,
    }
    return prior + log_det, info


def check_process(process, predictor: Predictor, what: str) -> None:
    """Raises `ValueError` unless the PF-ODE of `process` can be solved with `predictor` from t_min to t_max."""
    if not isinstance(process, GaussianProcess):
        raise ValueError(f"{what} needs a Gaussian process from dj.process(...), got {type(process).__name__}")
    if process.is_discrete:
        raise ValueError(
            f"{what} needs a continuous process; for the discrete {type(process).__name__} use "
            "dj.elbo_bits_per_dim (the article-(二) ELBO), or a continuous process such as 'vp'"
        )
    ends = jnp.asarray([process.t_min, process.t_max], jnp.float32)
    alpha_min, alpha_max = (float(a) for a in process.alpha(ends))
    sigma_min = float(process.sigma(ends)[0])
    if sigma_min == 0.0 and predictor.kind != "velocity":
        raise ValueError(
            f"{what}: sigma(t_min) = 0, where a {predictor.kind!r} prediction has no velocity; use a "
            "process with t_eps > 0 (e.g. dj.process('flow', t_eps=1e-3)) or a 'velocity' predictor"
        )
    if alpha_max == 0.0 and predictor.kind in ("eps", "score"):
        raise ValueError(
            f"{what}: alpha(t_max) = 0, where an {predictor.kind!r} prediction has no velocity; use "
            "a process with t_end < 1 or an 'x0', 'v' or 'velocity' predictor"
        )
    if alpha_min <= 0.0:
        raise ValueError(f"{what}: alpha(t_min) must be positive, got {alpha_min}")


def log_likelihood(
    key,
    predictor: Predictor,
    process: GaussianProcess,
    x,
    *,
    divergence: str = "exact",
    probe: str = "rademacher",
    num_probes: int = 1,
    solver: str = "tsit5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
    cond=None,
    return_info: bool = False,
):
    """`log p_{t_min}(x)` in nats per example, by the probability-flow ODE (article (六)).

    Along the ODE `dx/dt = f(t) x - 1/2 g(t)^2 grad log p_t(x)` the density obeys
    `d log p_t(x_t)/dt = -div f~_t(x_t)`, so

        log p_{t_min}(x) = log N(x_T; 0, prior_std^2 I) + int_{t_min}^{t_max} div f~_t(x_t) dt,

    with `x_T` the solution at `t_max` from `x` at `t_min`. The augmented ODE `(x, int div)` is solved with
    diffrax (adaptive steps) on the device, in one jitted call.

    The value is the log-density of the model's marginal at `t_min`, not of clean data: no correction for
    `t_min` is made (on VP with `t_eps = 1e-3`, `alpha = 1 - 5e-5` and `sigma = 0.01`; on VE `sigma_min` stays;
    on the flow with `t_eps = 0` it is the data density itself). It also takes the prior as exact: the
    mismatch between `q(x_{t_max})` and `N(0, prior_std^2 I)` enters the value unchanged.

    Args:
        key: PRNG key for Hutchinson's probes (unused with the exact divergence).
        predictor: the model, of any kind (converted exactly to the PF-ODE velocity).
        process: a continuous Gaussian process (`vp`, `subvp`, `ve`, `edm`, `flow`).
        x: points `(batch, *data_shape)`.
        divergence: `exact` (one Jacobian-vector product per data dimension: for small dimensions) or
            `hutchinson` (unbiased, `num_probes` products per evaluation; the probes are drawn once per
            solve from `key` and fixed along the path, so the estimate is a smooth ODE).
        probe: `rademacher` or `gaussian` probe vectors.
        num_probes: probes per example.
        solver: an adaptive diffrax solver: `tsit5`, `dopri5`, `dopri8` or `heun`.
        rtol, atol: the step-size controller's tolerances.
        max_steps: diffrax's step budget; exceeding it raises at run time.
        cond: keyword arguments passed to the model at every evaluation.
        return_info: also return `{"nfe", "num_steps", "x_T", "prior_log_prob", "log_det_jacobian"}`; `nfe`
            counts evaluations of the augmented field (each one model evaluation, linearised).

    Raises:
        ValueError: on the host, before tracing, for a discrete process (use `elbo_bits_per_dim`), an
            unknown knob value, a bad shape, or a prediction kind that is undefined at an end of the path.
    """
    _check_predictor(predictor)
    check_process(process, predictor, "log_likelihood")
    check_choice("divergence", divergence, DIVERGENCES)
    check_choice("probe", probe, PROBES)
    if int(num_probes) < 1:
        raise ValueError(f"num_probes must be a positive integer, got {num_probes}")
    check_tolerances(solver, rtol, atol, max_steps)
    x = jnp.asarray(x)
    _check_shape(x.shape)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    options = _Options(divergence, probe, int(num_probes), solver, float(rtol), float(atol), int(max_steps))
    logp, info = _log_likelihood(key, predictor, process, x, {} if cond is None else dict(cond), options)
    return (logp, info) if return_info else logp
