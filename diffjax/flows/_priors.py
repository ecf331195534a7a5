"""The easy priors that flow-matching paths start from (article (十五): any distribution easy to sample)."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp


def _check_shape(shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"a prior's shape is the data shape, a tuple of ints such as (2,), got {shape!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"a prior's shape is the data shape with positive sizes, such as (2,), got {shape}")
    return shape


@dataclasses.dataclass(frozen=True)
class GaussianPrior:
    """`N(0, std^2 I)` over arrays of the data shape `shape` (the flow process's prior when std = 1)."""

    shape: tuple[int, ...]
    std: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "shape", _check_shape(self.shape))
        if not self.std > 0:
            raise ValueError(f"GaussianPrior std must be positive, got {self.std}")

    def sample(self, key, n: int, dtype=None):
        """`n` draws, shape `(n, *shape)`."""
        dtype = jnp.result_type(float) if dtype is None else dtype
        return jnp.asarray(self.std, dtype) * jax.random.normal(key, (n, *self.shape), dtype)

    def log_prob(self, x):
        """`log N(x; 0, std^2 I)` per example of `x` `(n, *shape)`."""
        d = math.prod(self.shape)
        sq = jnp.sum(x.reshape(x.shape[0], -1) ** 2, axis=-1)
        return -0.5 * sq / self.std**2 - 0.5 * d * math.log(2 * math.pi * self.std**2)


@dataclasses.dataclass(frozen=True)
class UniformPrior:
    """The uniform law on the box `[low, high]^d` over arrays of the data shape `shape`."""

    shape: tuple[int, ...]
    low: float = -1.0
    high: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "shape", _check_shape(self.shape))
        if not self.low < self.high:
            raise ValueError(f"UniformPrior needs low < high, got low={self.low}, high={self.high}")

    def sample(self, key, n: int, dtype=None):
        """`n` draws, shape `(n, *shape)`."""
        dtype = jnp.result_type(float) if dtype is None else dtype
        return jax.random.uniform(key, (n, *self.shape), dtype, minval=self.low, maxval=self.high)

    def log_prob(self, x):
        """`-d log(high - low)` inside the box, `-inf` outside, per example."""
        flat = x.reshape(x.shape[0], -1)
        inside = jnp.all((flat >= self.low) & (flat <= self.high), axis=-1)
        return jnp.where(inside, -math.prod(self.shape) * math.log(self.high - self.low), -jnp.inf)
