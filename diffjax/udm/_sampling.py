"""What the UDM samplers share: the step grid, the x̂_0 estimate and one `lax.scan` over the steps."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ..predictions import KINDS, Predictor, to_x0_eps
from ..samplers import GridSampler
from ..samplers._base import batched_time
from ._corruption import Corruption
from ._gaussian import UDMGaussian

GAUSSIAN_KINDS = tuple(k for k in KINDS if k != "velocity")  # velocity needs continuous time


def check_corruption(name: str, process, predictor: Predictor) -> None:
    """Raises `ValueError` unless sampler `name` can run on the corruption `process` with `predictor`."""
    if not isinstance(process, Corruption):
        raise ValueError(
            f"sampler {name!r} needs a UDM corruption (dj.udm.corruption('udm_gaussian' | 'cold_blur' | "
            f"'mask_pixels')), got {type(process).__name__}; for DDPM use dj.udm.udm_gaussian with its knobs"
        )
    if isinstance(process, UDMGaussian):
        if predictor.kind not in GAUSSIAN_KINDS:
            raise ValueError(
                f"sampler {name!r} on udm_gaussian takes a predictor of kind "
                f"{', '.join(map(repr, GAUSSIAN_KINDS))}, got {predictor.kind!r}"
            )
    elif predictor.kind != "x0":
        raise ValueError(
            f"sampler {name!r} on {type(process).__name__} needs a restorer predictor of kind 'x0' "
            f"(fn returns x̂_0), got {predictor.kind!r}"
        )


@dataclasses.dataclass(frozen=True)
class CorruptionSampler(GridSampler):
    """A sampler over the steps T..1 of a UDM corruption: predict x̂_0 at `(x_t, t)`, then move to the next step.

    It keeps the grid knobs of `dj.samplers.GridSampler`: `steps` (None: all T), `spacing` (`leading`, `trailing`,
    `linspace`), `timesteps` (an explicit descending sub-sequence), `clip_x0`, `clip_final`, `clip_range`. The last
    grid step moves to t = 0, where `F_0(x̂_0, .) = x̂_0`.

    Attributes:
        record_x0: also return every step's x̂_0 as `info["x0_hat"]`, shape `(steps, *x.shape)`.
        noise_rng: always `"threefry"`: the steps draw their corruption's own noise (`sample_noise`, with
            `jax.random`), not the Gaussian samplers' generator; a Gaussian sampler given
            `noise_rng="threefry"` draws the same numbers.
    """

    record_x0: bool = False
    noise_rng: str = "threefry"

    name = "udm"

    def __post_init__(self):
        # Sequences from a config become tuples: the sampler is a static, hashed argument of the jitted `sample`.
        for field in ("timesteps", "clip_range", "sigma_bar"):
            value = getattr(self, field, None)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, field, tuple(value))

    def validate(self, process, predictor):
        check_corruption(self.name, process, predictor)
        if self.noise_rng != "threefry":
            raise ValueError(f"sampler {self.name!r} draws its corruption's own noise with jax.random; drop "
                             f"noise_rng={self.noise_rng!r} (only 'threefry')")
        if self.steps is not None and (int(self.steps) != self.steps or not 1 <= self.steps <= process.num_steps):
            raise ValueError(f"steps must be between 1 and T={process.num_steps}, got {self.steps}")
        if self.timesteps is not None:
            ts = list(self.timesteps)
            if not ts or any(int(t) != t for t in ts) or any(b >= a for a, b in zip(ts, ts[1:], strict=False)):
                raise ValueError("timesteps must be a non-empty, strictly decreasing sequence of integer steps")
            if ts[0] > process.t_max or ts[-1] < process.t_min:
                raise ValueError(f"timesteps must lie in [1, {process.t_max}] for this corruption")
        elif self.spacing is not None and self.spacing not in process.spacings:
            raise ValueError(
                f"unknown spacing {self.spacing!r} for {type(process).__name__}; valid choices: "
                f"{', '.join(map(repr, process.spacings))}"
            )

    def estimate_x0(self, key, step, predictor, process, x, t, cond):
        """x̂_0 at `(x_t, t)`: the predictor's output, converted through the DDPM process for a Gaussian kind."""
        t = batched_time(t, x)
        value = predictor(x, t, **cond)
        if predictor.kind != "x0":
            value = to_x0_eps(process.process, x, t, value, predictor.kind)[0]
        return self.clip(value) if self.clip_x0 else value

    def kernel(self, key, step, process, x, x0, t, s):
        """`x_s` from `x_t` given x̂_0; the step's randomness is `fold_in(key, step)`."""
        raise NotImplementedError

    def run(self, key, predictor, process, x_init, cond):
        """Scans predict-then-move over the grid: one model evaluation per step."""
        ts = self.grid(process)
        ss = jnp.concatenate([ts[1:], jnp.zeros((1,), ts.dtype)])

        def body(x, inputs):
            i, t, s = inputs
            x0 = self.estimate_x0(key, i, predictor, process, x, t, cond)
            return self.kernel(key, i, process, x, x0, t, s), (x0 if self.record_x0 else None)

        x, x0s = jax.lax.scan(body, x_init, (jnp.arange(ts.shape[0]), ts, ss))
        info = {"nfe": jnp.asarray(ts.shape[0], jnp.int32)}
        if self.record_x0:
            info["x0_hat"] = x0s
        return (self.clip(x) if self.clip_final else x), info
