"""The forward process of a Green's-function ODE (article (十四)): `x_t = x_0 + displacement ~ p_t(. | x_0)`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from .._checks import check_knobs, lookup
from ._kernels import KERNELS, Kernel


@dataclasses.dataclass(frozen=True)
class GreenProcess:
    """Data destroyed by an isotropic Green's-function kernel: `x_t ~ p_t(x_t | x_0) = G_1(t; x_t, x_0)`, t in
    `[t_min, T]`, t = 0 being data (article (十四)).

    The prior is the kernel's marginal at `T` with all the data moved to `prior_center`: `x_T = prior_center +
    displacement`, the displacement drawn from `p_T(. | 0)`. For `T` much larger than the data's spread the data's
    own offsets are negligible against the kernel's scale (`~T` for the gravity and CDF kernels, `sigma_T sqrt(d)`
    for the Gaussian); the error is of the order `spread / T` (first order vanishes when `prior_center` is the
    data mean). Samplers query the network at times in `[t_min, T]` and return the state at `t_min` (no final
    jump: the kernel at `t_min` is nearly a Dirac at the data).

    A frozen, hashable dataclass: a static argument of the jitted `dj.sample`. Every knob is a field, so
    `GreenProcess(kernel="cdf", psi="exp", T=40.0)` (or `dj.process`-style tables) can build one from a config;
    a kernel name is replaced by its `Kernel` object on construction.

    Attributes:
        kernel: a kernel name (`gravity` (= PFGM), `cdf` with `psi`, `cdf_tanh`, `cdf_exp`, `gaussian` with
            `sigma_fn`) or a `Kernel` (`Gravity()`, `RadialCDF("tanh")`, `Gaussian(sigma_fn)`).
        T: the prior's time (Su: 40-100 for images; default 40).
        t_min: the last time at which the network is queried (default 1e-3).
        prior_center: where the prior is centred (a scalar, broadcast over the data; data in [-1, 1] has mean
            near 0).
        psi: the radial CDF of the `cdf` kernel, `tanh` or `exp` (only with `kernel="cdf"`).
        sigma_fn: the Gaussian kernel's `t -> sigma_t` (only with `kernel="gaussian"`; default `sigma_t = t`,
            article (十二)).
    """

    kernel: Kernel | str = "gravity"
    T: float = 40.0
    t_min: float = 1e-3
    prior_center: float = 0.0
    psi: str | None = None
    sigma_fn: Callable[[Any], Any] | None = None

    def __post_init__(self):
        if isinstance(self.kernel, str):
            builder = lookup("green kernel", KERNELS, self.kernel)
            knobs = {k: v for k, v in (("psi", self.psi), ("sigma_fn", self.sigma_fn)) if v is not None}
            allowed = [f.name for f in dataclasses.fields(builder)] if isinstance(builder, type) else []
            check_knobs(f"green kernel {self.kernel!r}", knobs, allowed)
            object.__setattr__(self, "kernel", builder(**knobs))
            object.__setattr__(self, "psi", None)
            object.__setattr__(self, "sigma_fn", None)
        elif not isinstance(self.kernel, Kernel):
            raise ValueError(
                f"GreenProcess kernel must be a kernel name ({', '.join(KERNELS)}) or a green Kernel, got "
                f"{type(self.kernel).__name__}"
            )
        elif self.psi is not None or self.sigma_fn is not None:
            raise ValueError("psi and sigma_fn only go with a kernel name; a Kernel object already holds its knobs")
        if not 0.0 < self.t_min < self.T:
            raise ValueError(f"GreenProcess needs 0 < t_min < T, got t_min={self.t_min}, T={self.T}")
        if not math.isfinite(float(self.prior_center)):
            raise ValueError(f"GreenProcess prior_center must be a finite number, got {self.prior_center!r}")

    @property
    def t_max(self) -> float:
        """The prior's time `T` (the name the Gaussian processes use)."""
        return float(self.T)

    def perturb(self, key, x0, t):
        """Returns `(x_t, velocity)`: `x_t ~ p_t(. | x_0)` and the conditional velocity
        `(varphi_t/phi_t)(r) (x_t - x_0)`, the regression target of `green_velocity`; `t` is a scalar or `(n,)`."""
        x0 = jnp.asarray(x0)
        displacement = self.kernel.sample(key, t, x0.shape, x0.dtype)
        flat = displacement.reshape(x0.shape[0], -1)
        r = jnp.linalg.norm(flat, axis=-1)
        ratio = self.kernel.ratio(jnp.asarray(t, x0.dtype), r, flat.shape[1]).astype(x0.dtype)
        return x0 + displacement, ratio.reshape((-1,) + (1,) * (x0.ndim - 1)) * displacement

    def prior_sample(self, key, shape, dtype=None):
        """`x_T = prior_center + displacement`, the displacement from the kernel at `T`; shape `(n, *data_shape)`."""
        dtype = jnp.result_type(float) if dtype is None else dtype
        return jnp.asarray(self.prior_center, dtype) + self.kernel.sample(key, self.T, tuple(shape), dtype)


def green_process(kernel="gravity", **knobs) -> GreenProcess:
    """Builds a `GreenProcess` (article (十四)): `green_process("cdf_tanh", T=40.0)`; the knobs are its fields.

    Raises:
        ValueError: for an unknown kernel or knob (naming the valid ones), or bad times.
    """
    check_knobs("process 'green'", knobs, [f.name for f in dataclasses.fields(GreenProcess) if f.name != "kernel"])
    return GreenProcess(kernel, **knobs)
