"""Group normalisation (Wu & He, 2018) written for fast CPU execution; a drop-in for `flax.linen.GroupNorm`."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from jax import lax


def group_norm(x, scale, bias, num_groups: int, epsilon: float = 1e-6):
    """Normalises `x` (B, ..., C) over its spatial axes and each group of `C // num_groups` adjacent channels.

    `y = (x - mean_g) / sqrt(var_g + epsilon) * scale + bias`, the statistics taken per example and group in
    float32, with the variance `E[x^2] - E[x]^2` as `flax.linen.GroupNorm` computes it by default.

    Why not Flax's: reducing over the grouped axes `(B, HW, G, C/G) -> (B, G)` is a strided reduction that XLA
    runs slowly on CPU, then the statistics are repeated to full size. Here the big reduction is per channel
    over the spatial axis, which XLA handles fast; the groups are summed on a tiny `(B, C)` array; and the
    normalisation, scale and bias fold into one multiply-add per element. At (128, 16, 16, 64) with 32
    groups on 2 CPU cores this is about 6x faster forward and 4.5x faster forward+backward than Flax.
    Plain JAX operations, so `jvp`, `grad` and higher derivatives all work.
    """
    batch, channels = x.shape[0], x.shape[-1]
    if channels % num_groups:
        raise ValueError(f"GroupNorm: num_groups={num_groups} does not divide the {channels} channels")
    group_size = channels // num_groups
    xf = x.astype(jnp.float32).reshape(batch, -1, channels)
    count = xf.shape[1] * group_size
    sum_x = jnp.sum(xf, axis=1).reshape(batch, num_groups, group_size).sum(-1)
    sum_x2 = jnp.sum(jnp.square(xf), axis=1).reshape(batch, num_groups, group_size).sum(-1)
    mean = sum_x / count
    var = jnp.maximum(sum_x2 / count - jnp.square(mean), 0.0)
    inv = lax.rsqrt(var + epsilon)  # (B, G)
    mul = inv[:, :, None] * scale.astype(jnp.float32).reshape(num_groups, group_size)
    add = bias.astype(jnp.float32).reshape(num_groups, group_size) - mean[:, :, None] * mul
    shape = (batch,) + (1,) * (x.ndim - 2) + (channels,)
    y = x.astype(jnp.float32) * mul.reshape(shape) + add.reshape(shape)
    return y.astype(x.dtype)


class GroupNorm(nn.Module):
    """Group normalisation with learnt per-channel `scale` and `bias`; same parameters and numbers as Flax's.

    Attributes:
        num_groups: groups of adjacent channels; must divide the channel count.
        epsilon: added to the variance (1e-6 as in DDPM's TensorFlow code and Flax).
    """

    num_groups: int = 32
    epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
        return group_norm(x, scale, bias, self.num_groups, self.epsilon)
