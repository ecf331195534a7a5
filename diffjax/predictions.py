"""What the network outputs, and the exact conversions between output kinds on any Gaussian process.

With `x_t = alpha x_0 + sigma eps` every kind determines the pair `(x_0, eps)` (FORMULATIONS §1.3):

* `eps`:      `x_0 = (x_t - sigma eps) / alpha`;
* `x0`:       `eps = (x_t - alpha x_0) / sigma`;
* `v`:        `v = alpha eps - sigma x_0` (Salimans & Ho), so `x_0 = (alpha x_t - sigma v) / (alpha^2 + sigma^2)`;
* `score`:    `grad log p_t(x_t) = -eps / sigma`;
* `velocity`: the probability-flow velocity of the path, `u = alpha' x_0 + sigma' eps`
  (for the linear flow `u = eps - x_0`); continuous processes only.

Converting goes through that pair, so `kind -> kind` is the identity and every other conversion is exact
algebra (up to floating point).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from ._broadcast import expand_to
from ._checks import check_choice
from .processes import GaussianProcess

KINDS = ("eps", "x0", "v", "score", "velocity")


def to_x0_eps(process: GaussianProcess, x, t, value, kind: str):
    """Returns the pair `(x_0, eps)` that the prediction `value` of `kind` at `(x_t, t)` stands for."""
    check_choice("prediction kind", kind, KINDS)
    a, s = expand_to(process.alpha(t), x), expand_to(process.sigma(t), x)
    if kind == "eps":
        return (x - s * value) / a, value
    if kind == "x0":
        return value, (x - a * value) / s
    if kind == "score":
        eps = -s * value
        return (x - s * eps) / a, eps
    if kind == "v":
        norm = a**2 + s**2
        return (a * x - s * value) / norm, (s * x + a * value) / norm
    a_dot, s_dot = expand_to(process.alpha_dot(t), x), expand_to(process.sigma_dot(t), x)
    det = a * s_dot - s * a_dot  # = alpha sigma d(log sigma - log alpha)/dt > 0
    return (s_dot * x - s * value) / det, (a * value - a_dot * x) / det


def from_x0_eps(process: GaussianProcess, x, t, x0, eps, kind: str):
    """Returns the prediction of `kind` that the pair `(x_0, eps)` stands for at `(x_t, t)`."""
    check_choice("prediction kind", kind, KINDS)
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    a, s = expand_to(process.alpha(t), x), expand_to(process.sigma(t), x)
    if kind == "score":
        return -eps / s
    if kind == "v":
        return a * eps - s * x0
    return expand_to(process.alpha_dot(t), x) * x0 + expand_to(process.sigma_dot(t), x) * eps


def convert(process: GaussianProcess, x, t, value, from_kind: str, to_kind: str):
    """Converts a prediction at `(x_t, t)` from `from_kind` to `to_kind` (exact on any Gaussian process)."""
    check_choice("prediction kind", to_kind, KINDS)
    if from_kind == to_kind:
        check_choice("prediction kind", from_kind, KINDS)
        return value
    x0, eps = to_x0_eps(process, x, t, value, from_kind)
    return from_x0_eps(process, x, t, x0, eps, to_kind)


@dataclasses.dataclass(frozen=True)
class Predictor:
    """A network's output together with its kind: `Predictor(fn, kind="eps")`.

    `fn(x_t, t, **cond)` returns an array shaped like `x_t`; `t` is the process's own time with shape
    `(batch,)` (integer steps for discrete processes). Pass `params` to keep the weights a traced pytree
    leaf, and `fn(params, x_t, t, **cond)` is called instead: a jitted sampler then compiles once for all
    parameter values, instead of baking weights captured in a closure into the program.

    A `Predictor` is a pytree (only `params` are leaves), so it can be an argument of a jitted function.
    """

    fn: Callable[..., Any]
    kind: str = "eps"
    params: Any = None

    def __post_init__(self):
        if not callable(self.fn):
            raise ValueError(f"Predictor fn must be callable, got {type(self.fn).__name__}")
        check_choice("prediction kind", self.kind, KINDS)

    def __call__(self, x, t, **cond):
        """The raw network output of kind `self.kind`."""
        if self.params is None:
            return self.fn(x, t, **cond)
        return self.fn(self.params, x, t, **cond)

    def x0_eps(self, process: GaussianProcess, x, t, **cond):
        """The `(x_0, eps)` pair predicted at `(x_t, t)`."""
        return to_x0_eps(process, x, t, self(x, t, **cond), self.kind)

    def predict(self, process: GaussianProcess, x, t, kind: str, **cond):
        """The prediction at `(x_t, t)` converted to `kind`."""
        return convert(process, x, t, self(x, t, **cond), self.kind, kind)


jax.tree_util.register_dataclass(Predictor, data_fields=["params"], meta_fields=["fn", "kind"])
