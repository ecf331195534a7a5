"""`objective(name, process, ...)`: a pure, jit- and grad-able Monte-Carlo training loss."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from .._broadcast import expand_to
from .._checks import check_choice, check_knobs, lookup
from ..predictions import KINDS, from_x0_eps
from ..processes import GaussianProcess
from ._losses import OBJECTIVES
from ._time_sampling import default_time_sampling, knob_names, time_sampler

REDUCTIONS = ("mean", "sum")


@dataclasses.dataclass(frozen=True)
class Loss:
    """A training loss `E_{t, x_0, eps} w(t) ||pred(x_t, t) - target||^2` on `process` (see `objective`).

    Call it as `loss(key, apply_fn, params, x0, cond=None)`; `apply_fn(params, x_t, t)` (or
    `apply_fn(params, x_t, t, cond)`) returns a prediction of kind `prediction`. The value is one Monte-Carlo
    draw: `t` from the time sampling and `eps ~ N(0, I)`, both from `key`. Frozen and hashable.
    """

    name: str
    process: GaussianProcess
    terms: Any  # an entry of OBJECTIVES, holding its knobs
    time_sampling: Any  # an entry of TIME_SAMPLINGS, holding its knobs
    prediction: str = "eps"
    reduction: str = "mean"

    def __call__(self, key, apply_fn, params, x0, cond=None):
        """One Monte-Carlo estimate of the loss: the batch mean of `w(t) reduce(||pred - target||^2)`."""
        x0 = jnp.asarray(x0)

        def net(x, t):
            return apply_fn(params, x, t) if cond is None else apply_fn(params, x, t, cond)

        key_t, key_eps = jax.random.split(key)
        t = self.time_sampling(key_t, self.process, x0.shape[0])
        eps = jax.random.normal(key_eps, x0.shape, x0.dtype)
        x_t = self.process.perturb(x0, t, eps)
        target = from_x0_eps(self.process, x_t, t, x0, eps, self.terms.target_kind)
        pred = self.terms.predict(self.process, net, self.prediction, x_t, t)
        sq = (pred - target) ** 2
        axes = tuple(range(1, sq.ndim))
        per_example = jnp.mean(sq, axis=axes) if self.reduction == "mean" else jnp.sum(sq, axis=axes)
        return jnp.mean(expand_to(self.terms.weight(self.process, t), per_example) * per_example)


def objective(name: str, process: GaussianProcess, *, prediction: str = "eps", reduction: str = "mean",
              time_sampling: str | None = None, **knobs) -> Loss:
    """Builds the training loss `name` on `process`, validated now rather than when called.

    Args:
        name: one of `OBJECTIVES` (`eps_mse`, `elbo`, `x0_mse`, `v_mse`, `dsm`, `edm`, `flow_matching`).
        process: the forward process `x_t = alpha(t) x_0 + sigma(t) eps`.
        prediction: the kind the network outputs (`predictions.KINDS`); it is converted exactly to the
            objective's target kind, so any objective trains any kind.
        reduction: `mean` or `sum` of the squared error over the non-batch dims (Su sums, article (二));
            the batch is always averaged.
        time_sampling: one of `TIME_SAMPLINGS`; by default `log_normal` for `edm`, `uniform_discrete` for a
            discrete process and `uniform` otherwise.
        **knobs: the objective's knobs (`elbo`: sigma_type; `dsm`: weighting; `edm`: precond, sigma_data,
            weighting) and the time sampling's (`uniform`: t_min, t_max; `log_normal`: p_mean, p_std;
            `logit_normal`: logit_mean, logit_std).

    Uniform times are drawn from the open interval (t_min, t_max): on the `flow` process sigma(0) = 0 and
    alpha(1) = 0 leave some kinds undefined at the ends.

    Raises:
        ValueError: for an unknown name, kind, reduction, time sampling or knob (listing the valid ones), or
            a combination that does not fit `process` (naming the fix).
    """
    cls = lookup("objective", OBJECTIVES, name)
    check_choice("prediction kind", prediction, KINDS)
    check_choice("reduction", reduction, REDUCTIONS)
    if time_sampling is None:
        time_sampling = cls.default_time_sampling or default_time_sampling(process)
    own = [f.name for f in dataclasses.fields(cls)]
    sampling_knobs = knob_names(time_sampling)
    check_knobs(f"objective {name!r} with time_sampling {time_sampling!r}", knobs, own + list(sampling_knobs))
    terms = cls(**{k: v for k, v in knobs.items() if k in own})
    terms.check(process)
    uses_prediction = not (name == "edm" and terms.precond is not None)
    if uses_prediction and prediction == "velocity" and process.is_discrete:
        raise ValueError(f"prediction 'velocity' needs a continuous process (it is d x_t / dt), got "
                         f"{type(process).__name__}; use prediction 'eps', 'x0', 'v' or 'score', or process 'flow'")
    sampler = time_sampler(process, time_sampling, **{k: v for k, v in knobs.items() if k in sampling_knobs})
    return Loss(name, process, terms, sampler, prediction, reduction)
