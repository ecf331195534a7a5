"""Pixel masking plus a small noise, the continuous-data masked model of article (十一)."""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_knobs
from ._corruption import AdditiveCorruption, integer_time
from ._layout import spatial_shape


@functools.lru_cache(maxsize=16)
def _mask_ranks(num_positions: int, seed: int) -> np.ndarray:
    """The rank of each pixel position in a fixed pseudo-random hiding order (rank 0 is hidden first)."""
    order = np.random.default_rng(seed).permutation(num_positions)
    ranks = np.empty(num_positions, dtype=np.int32)
    ranks[order] = np.arange(num_positions, dtype=np.int32)
    return ranks


@dataclasses.dataclass(frozen=True)
class MaskPixels(AdditiveCorruption):
    """`x_t = m_t * x_0 + sigma eps` (t >= 1): the first `ceil(t P / T)` of the P pixel positions set to zero.

    The pixels are hidden in one fixed pseudo-random order (`mask_seed`), the same for every example, all channels
    of a pixel together; at t = T every pixel is hidden. This is article (十一)'s masked model ("mask t random
    tokens", t = T hides all) on continuous data with T = P, and with T != P each step hides P/T pixels on average.
    One order for all examples keeps `m_t` a fixed operator, so `F_t` is invertible in its Gaussian noise and every
    reverse design applies; a fresh order per example would make the order part of the noise, which `(x_0, x_t)`
    do not determine. Zero is the masked value, the middle of data in [-1, 1].

    The prior is exact: every pixel is hidden at T, so `x_T = sigma eps` whatever the data.

    Attributes:
        num_steps: T (1024: one pixel per step on 32x32 images).
        mask_seed: the seed of the hiding order.
        cold_noise_sigma: the noise scale sigma for t >= 1 (0.01, as for `cold_blur`).
    """

    num_steps: int = 1024
    mask_seed: int = 0
    cold_noise_sigma: float = 0.01

    def __post_init__(self):
        if int(self.num_steps) != self.num_steps or self.num_steps < 1:
            raise ValueError(f"mask_pixels num_steps must be a positive integer, got {self.num_steps!r}")
        if self.cold_noise_sigma < 0:
            raise ValueError(f"cold_noise_sigma must be >= 0, got {self.cold_noise_sigma}")

    @property
    def invertible(self) -> bool:
        return self.cold_noise_sigma > 0

    def hidden_count(self, t, num_positions: int):
        """`ceil(t P / T)`, the number of hidden positions at step t."""
        return (integer_time(t) * num_positions + self.num_steps - 1) // self.num_steps

    def mask(self, t, shape):
        """The keep-mask `m_t` (1 = kept) of a batch of `shape`, broadcastable against it."""
        spatial = spatial_shape(shape)
        ranks = jnp.asarray(_mask_ranks(math.prod(spatial), int(self.mask_seed)))
        hidden = self.hidden_count(t, ranks.shape[0])
        batch = jnp.shape(hidden) or (1,)  # one mask for all examples when t is a scalar
        keep = (ranks >= hidden[..., None]).reshape(batch + spatial)
        return keep[..., None] if len(shape) > 2 else keep  # all channels of a pixel together

    def degrade(self, x0, t):
        return jnp.where(self.mask(t, x0.shape), x0, jnp.zeros((), x0.dtype))

    def noise_std(self, t):
        t = integer_time(t)
        return jnp.where(t > 0, self.cold_noise_sigma, 0.0).astype(jnp.result_type(float))

    def prior_sample(self, key, shape, dtype=None):
        """`x_T = sigma eps`: at T nothing of the data is left."""
        dtype = jnp.result_type(float) if dtype is None else dtype
        return self.cold_noise_sigma * jax.random.normal(key, shape, dtype)


def mask_pixels(**knobs) -> MaskPixels:
    """The pixel-masking corruption (knobs: num_steps=1024, mask_seed=0, cold_noise_sigma=0.01).

    Raises:
        ValueError: for an unknown knob, naming the valid ones.
    """
    check_knobs("corruption 'mask_pixels'", knobs, [f.name for f in dataclasses.fields(MaskPixels)])
    return MaskPixels(**knobs)
