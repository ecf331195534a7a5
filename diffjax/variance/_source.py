"""Where a sampler finds `var0_t`, the variance of x_0 given x_t: a cached table or a variance head.

Articles (七) and (八) add `gamma_t^2 var0_t` to the reverse variance. `var0_t` is either a table over time
(Analytic-DPM, one number or one array of the data shape per time, estimated once per checkpoint by
`estimate_x0_variance`) or a network head evaluated at `(x_t, t)` (NPR-DPM, SN-DPM). Both travel with the
model: `with_x0_variance(predictor, source)` returns a `VariancePredictor`, a `Predictor` whose pytree also holds
the table or the head's parameters. They are traced arguments of the jitted `dj.sample`, so a new checkpoint's
table reuses the compiled sampler, and a diagonal table of image shape does not become a huge static constant.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .._broadcast import expand_to
from .._checks import check_choice
from ..predictions import Predictor

X0_VARIANCE_RULES = ("analytic", "npr", "sn")


@dataclasses.dataclass(frozen=True)
class VarianceTable:
    """`var0_t` on a grid of times, as `estimate_x0_variance` returns it; a pytree of two arrays.

    Save it next to the checkpoint it was estimated for, e.g. `np.savez(path, times=table.times,
    values=table.values)`, and rebuild it with `VarianceTable(**np.load(path))`.

    Attributes:
        times: `(n,)` process times (integer steps for DDPM), in any order.
        values: `(n,)` isotropic variances, or `(n, *data_shape)` per-element (diagonal) variances.
    """

    times: jax.Array
    values: jax.Array

    @property
    def diagonal(self) -> bool:
        return jnp.ndim(self.values) > 1

    def check(self) -> None:
        """Raises `ValueError` when the two arrays do not describe one table."""
        times, values = jnp.shape(self.times), jnp.shape(self.values)
        if len(times) != 1 or times[0] < 1 or len(values) < 1 or values[0] != times[0]:
            raise ValueError(
                f"a VarianceTable needs times of shape (n,) and values of shape (n,) or "
                f"(n, *data_shape), got {times} and {values}"
            )

    def at(self, t):
        """`var0` at times `t` (any shape), linear in t between the table's times and constant beyond them.

        At a time of the table the stored value is returned exactly, so a DDPM table over all steps serves
        every DDIM sub-sequence without interpolation error. Returns `t.shape + values.shape[1:]`.
        """
        values = jnp.asarray(self.values)
        times = jnp.asarray(self.times).astype(values.dtype)
        order = jnp.argsort(times)
        times, values = times[order], values[order]
        t = jnp.asarray(t).astype(values.dtype)
        if times.shape[0] == 1:
            return jnp.broadcast_to(values[0], t.shape + values.shape[1:])
        i = jnp.clip(jnp.searchsorted(times, t, side="right") - 1, 0, times.shape[0] - 2)
        w = jnp.clip((t - times[i]) / (times[i + 1] - times[i]), 0.0, 1.0)
        w = w.reshape(w.shape + (1,) * (values.ndim - 1))
        return (1.0 - w) * values[i] + w * values[i + 1]


@dataclasses.dataclass(frozen=True)
class VarianceHead:
    """A network predicting a per-element second moment of the noise at `(x_t, t)` (article (八)).

    NPR-DPM trains it towards `E[(eps - eps_theta)^2 | x_t]`, SN-DPM towards `E[eps^2 | x_t]` (see `npr_loss` and
    `sn_loss`); the sampler's `variance` knob says which. Called like a `Predictor`: `fn(params, x_t, t, **cond)`,
    or `fn(x_t, t, **cond)` when `params` is None. A pytree whose only leaves are `params`.
    """

    fn: Callable[..., Any]
    params: Any = None

    def __post_init__(self):
        if not callable(self.fn):
            raise ValueError(f"VarianceHead fn must be callable, got {type(self.fn).__name__}")

    def __call__(self, x, t, **cond):
        return self.fn(x, t, **cond) if self.params is None else self.fn(self.params, x, t, **cond)


@dataclasses.dataclass(frozen=True)
class VariancePredictor(Predictor):
    """A `Predictor` that also carries `var0_t`: a `VarianceTable` or a `VarianceHead` (see `with_x0_variance`).

    Every sampler can use it as a plain predictor; the `ancestral` and `ddim` samplers with `variance` in
    {"analytic", "npr", "sn"} also read `x0_variance`.
    """

    source: VarianceTable | VarianceHead | None = None

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.source, VarianceTable | VarianceHead):
            raise ValueError(
                "with_x0_variance needs a VarianceTable (from estimate_x0_variance) or a VarianceHead, "
                f"got {type(self.source).__name__}"
            )

    def x0_variance(self, rule: str, process, x, t, eps, **cond):
        """`var0_t(x_t)` broadcastable against `x`, under `rule` (article (七) or (八)).

        * `analytic`: the table at `t` (isotropic or diagonal);
        * `npr`: `(sigma_t^2/alpha_t^2) max(g_phi(x_t, t), 0)` with `g_phi ~ E[(eps - eps_theta)^2 | x_t]`;
        * `sn`: `(sigma_t^2/alpha_t^2) max(h_phi(x_t, t) - eps_theta^2, 0)` with `h_phi ~ E[eps^2 | x_t]`.

        `t` has shape `(batch,)` and `eps` is the mean model's noise prediction at `(x_t, t)`.
        """
        check_choice("x0 variance rule", rule, X0_VARIANCE_RULES)
        if rule == "analytic":
            values = self.source.at(t)  # (B,) or (B, *data_shape)
            if values.ndim > 1 and values.shape != x.shape:
                raise ValueError(
                    f"the diagonal variance table has data shape {values.shape[1:]}, but samples have "
                    f"{x.shape[1:]}; estimate it on data of the sample shape"
                )
            return (values if values.ndim > 1 else expand_to(values, x)).astype(x.dtype)
        ratio = expand_to(process.sigma(t) ** 2 / process.alpha(t) ** 2, x)
        moment = self.source(x, t, **cond)
        if rule == "sn":
            moment = moment - eps**2
        return (ratio * jnp.maximum(moment, 0.0)).astype(x.dtype)


def with_x0_variance(predictor: Predictor, source: VarianceTable | VarianceHead) -> VariancePredictor:
    """Attaches `var0_t` to a model, for the `analytic`, `npr` and `sn` variances of `ancestral` and `ddim`.

    Example (article (七), Analytic-DDIM with 10 steps)::

        table = dj.variance.estimate_x0_variance(key, predictor, process, data, jnp.arange(1, 1001))
        x = dj.sample(key, dj.variance.with_x0_variance(predictor, table), process,
                      dj.sampler("ddim", steps=10, eta=1.0, variance="analytic"), shape)
    """
    if not isinstance(predictor, Predictor):
        raise ValueError(f"expected a diffjax Predictor, got {type(predictor).__name__}")
    if isinstance(source, VarianceTable):
        source.check()
    return VariancePredictor(predictor.fn, predictor.kind, predictor.params, source)


def check_x0_variance_source(rule: str, predictor) -> None:
    """Raises `ValueError` unless `predictor` carries the variance source `rule` needs."""
    wanted = "a VarianceTable" if rule == "analytic" else "a VarianceHead"
    fix = (
        f"variance={rule!r} needs {wanted}: pass dj.variance.with_x0_variance(predictor, "
        f"{'estimate_x0_variance(...)' if rule == 'analytic' else 'VarianceHead(head_fn, params)'})"
    )
    if not isinstance(predictor, VariancePredictor):
        raise ValueError(fix)
    if isinstance(predictor.source, VarianceTable) != (rule == "analytic"):
        raise ValueError(fix)


jax.tree_util.register_dataclass(VarianceTable, data_fields=["times", "values"], meta_fields=[])
jax.tree_util.register_dataclass(VarianceHead, data_fields=["params"], meta_fields=["fn"])
jax.tree_util.register_dataclass(VariancePredictor, data_fields=["params", "source"], meta_fields=["fn", "kind"])
