"""Where the pixels are: the data layouts the spatial corruptions (blur, pixel masks) act on.

A batch is `(B, D)` (one signal of length D, one channel), `(B, L, C)` (signals with C channels) or
`(B, H, W, C)` (images, channels last); more spatial axes work the same way. The spatial axes are every axis
but the batch axis and, from three dimensions on, the last (channel) axis.
"""

from __future__ import annotations

import jax.numpy as jnp


def spatial_axes(ndim: int) -> tuple[int, ...]:
    """The spatial axes of a batch with `ndim` dimensions (see the module docstring)."""
    if ndim < 2:
        raise ValueError(f"a spatial corruption needs a batch (B, D) or (B, *spatial, C), got {ndim} dimension(s)")
    return (1,) if ndim == 2 else tuple(range(1, ndim - 1))


def spatial_shape(shape) -> tuple[int, ...]:
    """The sizes of the spatial axes of a batch of `shape`."""
    return tuple(int(shape[a]) for a in spatial_axes(len(shape)))


def channel_means(x):
    """Per-example, per-channel spatial means: `(B, C)`, or `(B, 1)` for a `(B, D)` batch."""
    axes = spatial_axes(x.ndim)
    return x.mean(axis=axes) if x.ndim > 2 else x.mean(axis=1, keepdims=True)


def broadcast_channels(values, shape):
    """Spreads per-example, per-channel values `(B, C)` over the spatial axes of a batch of `shape`."""
    if len(shape) == 2:
        return jnp.broadcast_to(values.reshape(values.shape[0], 1), shape)
    return jnp.broadcast_to(values.reshape((values.shape[0],) + (1,) * (len(shape) - 2) + (values.shape[1],)), shape)
