"""Training losses of the conditional variance heads of article (八): NPR-DPM and SN-DPM.

Both regress a per-element second moment of the noise at `(x_t, t)`, with the mean model trained first and
frozen (the two-stage recipe of article (八)):

* NPR-DPM ("noise prediction residual"): `g_phi(x_t, t) ~ E[(eps - eps_theta(x_t, t))^2 | x_t]` by
  `E||(eps - eps_theta)^2 - g_phi||^2`; then `var0_t(x_t) = (sigma_t^2/alpha_t^2) g_phi`;
* SN-DPM ("squared noise"): `h_phi(x_t, t) ~ E[eps^2 | x_t]` by `E||eps^2 - h_phi||^2`; then
  `var0_t(x_t) = (sigma_t^2/alpha_t^2)(h_phi - eps_theta^2)`, clipped at 0.

For the exact mean both give the exact diagonal `Var(x_0 | x_t)`: `(sigma^2/alpha^2) Var(eps | x_t)`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from .._checks import check_choice
from ..objectives import time_sampler
from ..predictions import Predictor
from ..processes import GaussianProcess

HEAD_TARGETS = ("npr", "sn")


@dataclasses.dataclass(frozen=True)
class VarianceHeadLoss:
    """`E_{t, x_0, eps} mean_elements((target - head(x_t, t))^2)`, target `(eps - eps_theta)^2` or `eps^2`.

    Call it as `loss(key, head_apply, head_params, x0, cond=None)`; `head_apply(head_params, x_t, t)` (or with
    `cond` as a fourth argument, as in `objectives.Loss`) returns an array shaped like `x_t`. The frozen mean
    model is `mean` (any prediction kind, converted to eps) and receives `cond` as keyword arguments; no
    gradient flows into it. A pytree whose leaves are the mean model's parameters, so a jitted train step can
    take it as an argument.
    """

    target: str
    process: GaussianProcess
    mean: Predictor
    time_sampling: Any

    def __call__(self, key, head_apply, head_params, x0, cond=None):
        x0 = jnp.asarray(x0)
        key_t, key_eps = jax.random.split(key)
        t = self.time_sampling(key_t, self.process, x0.shape[0])
        eps = jax.random.normal(key_eps, x0.shape, x0.dtype)
        x_t = self.process.perturb(x0, t, eps)
        if self.target == "sn":
            target = eps**2
        else:
            eps_theta = self.mean.predict(self.process, x_t, t, "eps", **({} if cond is None else dict(cond)))
            target = (eps - jax.lax.stop_gradient(eps_theta)) ** 2
        head = head_apply(head_params, x_t, t) if cond is None else head_apply(head_params, x_t, t, cond)
        return jnp.mean((target - head) ** 2)


def _head_loss(
    target: str, process: GaussianProcess, mean: Predictor, time_sampling: str | None, **knobs
) -> VarianceHeadLoss:
    check_choice("variance head target", target, HEAD_TARGETS)
    if not isinstance(mean, Predictor):
        raise ValueError(f"the frozen mean model must be a diffjax Predictor, got {type(mean).__name__}")
    return VarianceHeadLoss(target, process, mean, time_sampler(process, time_sampling, **knobs))


def npr_loss(
    process: GaussianProcess, mean: Predictor, *, time_sampling: str | None = None, **knobs
) -> VarianceHeadLoss:
    """NPR-DPM's loss `E||(eps - eps_theta(x_t, t))^2 - g_phi(x_t, t)||^2` with the mean model frozen (article (八)).

    `time_sampling` and `knobs` as in `dj.objective` (default: uniform steps for DDPM, uniform times otherwise).
    Sample with `variance="npr"` and `with_x0_variance(mean, VarianceHead(head_apply, head_params))`.
    """
    return _head_loss("npr", process, mean, time_sampling, **knobs)


def sn_loss(
    process: GaussianProcess, mean: Predictor, *, time_sampling: str | None = None, **knobs
) -> VarianceHeadLoss:
    """SN-DPM's loss `E||eps^2 - h_phi(x_t, t)||^2` (article (八)); the mean model enters only at sampling time.

    Sample with `variance="sn"`, which uses `var0_t(x_t) = (sigma_t^2/alpha_t^2) max(h_phi - eps_theta^2, 0)`.
    """
    return _head_loss("sn", process, mean, time_sampling, **knobs)


jax.tree_util.register_dataclass(
    VarianceHeadLoss, data_fields=["mean"], meta_fields=["target", "process", "time_sampling"]
)
