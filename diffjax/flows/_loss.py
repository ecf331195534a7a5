"""The flow-matching loss on an interpolation path, for independent or explicitly coupled pairs."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from .._checks import check_choice, lookup
from ..objectives._time_sampling import time_sampler
from ..processes import Flow
from ._paths import PATHS, Path
from ._priors import GaussianPrior, UniformPrior

REDUCTIONS = ("mean", "sum")


@dataclasses.dataclass(frozen=True)
class FlowMatchingLoss:
    """`E_{t, (x_0, x_1), eps} ||v(x_t, t) - d x_t / dt||^2` on `path` (articles (十五), (十七)); see `flow_matching`.

    Call it as `loss(key, apply_fn, params, x0, x1=None, cond=None)`. `apply_fn(params, x_t, t)` (or
    `apply_fn(params, x_t, t, cond)`) returns the velocity. Without `x1`, the prior is drawn independently of
    `x0` (1-rectified flow); with `x1`, the pairs `(x0[i], x1[i])` are used as given (a coupling such as reflow's,
    `reflow_pairs`). Frozen and hashable.
    """

    path: Path
    prior: Any  # GaussianPrior | UniformPrior | None (standard normal of x0's shape)
    time_sampling: Any  # an entry of objectives.TIME_SAMPLINGS, holding its knobs
    t_min: float = 0.0
    t_max: float = 1.0
    reduction: str = "mean"

    def __call__(self, key, apply_fn, params, x0, x1=None, cond=None):
        """One Monte-Carlo estimate: the batch mean of `reduce(||v - target||^2)` over the data dimensions."""
        x0 = jnp.asarray(x0)
        n = x0.shape[0]
        key_t, key_x1 = jax.random.split(key)
        # The time domain [t_min, t_max] is the flow process's, so its time samplings apply unchanged.
        t = self.time_sampling(key_t, Flow(t_eps=self.t_min, t_end=self.t_max), n).astype(x0.dtype)
        if self.prior is not None and self.prior.shape != x0.shape[1:]:
            raise ValueError(f"the prior's shape {self.prior.shape} must be the data shape {x0.shape[1:]}")
        if x1 is None:
            x1 = (
                jax.random.normal(key_x1, x0.shape, x0.dtype)
                if self.prior is None
                else self.prior.sample(key_x1, n, x0.dtype)
            )
        elif jnp.shape(x1) != x0.shape:
            raise ValueError(f"coupled x1 must have the shape of x0 {x0.shape}, got {jnp.shape(x1)}")
        eps = jax.random.normal(jax.random.fold_in(key, 2), x0.shape, x0.dtype) if self.path.has_noise else None
        x_t = self.path.interpolate(t, x0, x1, eps)
        target = self.path.velocity(t, x0, x1, eps)
        pred = apply_fn(params, x_t, t) if cond is None else apply_fn(params, x_t, t, cond)
        sq = (pred - target) ** 2
        axes = tuple(range(1, sq.ndim))
        per_example = jnp.mean(sq, axis=axes) if self.reduction == "mean" else jnp.sum(sq, axis=axes)
        return jnp.mean(per_example)


def flow_matching(
    path: str | Path = "straight",
    prior=None,
    *,
    time_sampling: str = "uniform",
    t_min: float = 0.0,
    t_max: float = 1.0,
    reduction: str = "mean",
    **time_knobs,
) -> FlowMatchingLoss:
    """Builds the (conditional) flow-matching loss `E ||v_theta(x_t, t) - d x_t / dt||^2` (articles (十五), (十七)).

    The minimiser is the marginal velocity `E[d x_t / dt | x_t]`, whose ODE, integrated from t = 1 to 0,
    carries the prior to the data. On the straight path with the standard Gaussian prior the target is
    `x_1 - x_0` and the loss is `dj.objective("flow_matching", dj.process("flow"), prediction="velocity")`
    (same key, same value).

    Args:
        path: `straight` (rectified flow), `trigonometric`, or a `Path` such as `Interpolant(mu_fn, sigma_fn)`.
        prior: `GaussianPrior(shape, std)`, `UniformPrior(shape, low, high)`, or None for `N(0, I)` of the
            data's shape.
        time_sampling: a continuous entry of `dj.TIME_SAMPLINGS` (`uniform`, `logit_normal`, `log_normal`) on
            the time domain `[t_min, t_max]`.
        t_min, t_max: the time domain; t_min > 0 keeps models that need sigma > 0 away from t = 0.
        reduction: `mean` or `sum` over the data dimensions (the batch is always averaged).
        **time_knobs: the time sampling's knobs (e.g. `logit_mean`, `logit_std`).

    Raises:
        ValueError: for an unknown path, prior type, reduction, time sampling or knob, or a path that misses
            its ends.
    """
    if isinstance(path, str):
        path = lookup("path", PATHS, path)()
    if not isinstance(path, Path):
        raise ValueError(f"path must be one of {', '.join(PATHS)} or a flows.Path, got {type(path).__name__}")
    path.check()
    if prior is not None and not isinstance(prior, GaussianPrior | UniformPrior):
        raise ValueError(f"prior must be a GaussianPrior, a UniformPrior or None, got {type(prior).__name__}")
    check_choice("reduction", reduction, REDUCTIONS)
    if not 0.0 <= t_min < t_max <= 1.0:
        raise ValueError(f"the time domain needs 0 <= t_min < t_max <= 1, got t_min={t_min}, t_max={t_max}")
    sampling = time_sampler(Flow(t_eps=t_min, t_end=t_max), time_sampling, **time_knobs)
    return FlowMatchingLoss(path, prior, sampling, float(t_min), float(t_max), reduction)
