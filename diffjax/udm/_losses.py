"""UDM training losses `E_{t, x_0, eps} -log q(x_0 | F_t(x_0, eps))`, articles (十) and (十一)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from .._checks import check_choice, check_knobs
from ..predictions import to_x0_eps
from ._corruption import Corruption
from ._gaussian import UDMGaussian
from ._sampling import GAUSSIAN_KINDS

NORMS = ("l2", "l1")
REDUCTIONS = ("mean", "sum")


def reduce_error(error, norm: str, reduction: str):
    """Per-example `||error||_2^2` or `||error||_1`, as a mean or a sum over the non-batch axes."""
    values = error**2 if norm == "l2" else jnp.abs(error)
    axes = tuple(range(1, values.ndim))
    return jnp.mean(values, axis=axes) if reduction == "mean" else jnp.sum(values, axis=axes)


def draw_steps(key, corruption: Corruption, n: int):
    """`t ~ U{1, ..., T}` for `n` examples (int32)."""
    return jax.random.randint(key, (n,), 1, corruption.num_steps + 1, dtype=jnp.int32)


@dataclasses.dataclass(frozen=True)
class RestorationLoss:
    """`E_{t, x_0, eps} ||x_0 - G_t(F_t(x_0, eps))||` with t ~ U{1..T}: the UDM loss of a restorer `G_t`.

    `q(x_0|x_t) = N(G_t(x_t), sigmabar_t^2 I)` gives the squared L2 norm (article (十)); Cold Diffusion's Laplace
    `q` the L1 norm (article (十一)). The constant `1/(2 sigmabar_t^2)` (or `1/tau`) is dropped. Call it as
    `loss(key, apply_fn, params, x0, cond=None)`, where `apply_fn(params, x_t, t)` (or with `cond`) returns x̂_0 (kind
    `x0`); on `udm_gaussian` it may return another Gaussian kind, converted to x̂_0, which weights the eps-MSE by
    `1/SNR_t` (article (十一): dropping that weight is DDPM's `eps_mse`). One Monte-Carlo draw of t and eps, from
    `key`; the batch mean.

    Attributes:
        corruption: the forward process.
        norm: `l2` (`udm_l2`) or `l1` (`udm_l1`).
        prediction: what `apply_fn` returns (`x0`; any Gaussian kind on `udm_gaussian`).
        reduction: `mean` or `sum` over the non-batch axes.
    """

    corruption: Corruption
    norm: str = "l2"
    prediction: str = "x0"
    reduction: str = "mean"

    def __post_init__(self):
        if not isinstance(self.corruption, Corruption):
            raise ValueError(
                f"a UDM loss needs a UDM corruption (dj.udm.corruption(...)), got {type(self.corruption).__name__}"
            )
        check_choice("UDM loss norm", self.norm, NORMS)
        check_choice("reduction", self.reduction, REDUCTIONS)
        kinds = GAUSSIAN_KINDS if isinstance(self.corruption, UDMGaussian) else ("x0",)
        check_choice(f"prediction kind on {type(self.corruption).__name__}", self.prediction, kinds)

    def __call__(self, key, apply_fn, params, x0, cond=None):
        x0 = jnp.asarray(x0)
        key_t, key_eps = jax.random.split(key)
        t = draw_steps(key_t, self.corruption, x0.shape[0])
        x_t = self.corruption.forward(x0, t, self.corruption.sample_noise(key_eps, x0.shape, x0.dtype))
        out = apply_fn(params, x_t, t) if cond is None else apply_fn(params, x_t, t, cond)
        if self.prediction != "x0":
            out = to_x0_eps(self.corruption.process, x_t, t, out, self.prediction)[0]
        return jnp.mean(reduce_error(out - x0, self.norm, self.reduction))


def udm_l2(corruption: Corruption, **knobs) -> RestorationLoss:
    """The Gaussian-q UDM loss `||x_0 - G_t(F_t(x_0, eps))||^2` (knobs: prediction='x0', reduction='mean')."""
    check_knobs("objective 'udm_l2'", knobs, ("prediction", "reduction"))
    return RestorationLoss(corruption, "l2", **knobs)


def udm_l1(corruption: Corruption, **knobs) -> RestorationLoss:
    """Cold Diffusion's loss `||x_0 - G_t(F_t(x_0, eps))||_1` (knobs: prediction='x0', reduction='mean')."""
    check_knobs("objective 'udm_l1'", knobs, ("prediction", "reduction"))
    return RestorationLoss(corruption, "l1", **knobs)
