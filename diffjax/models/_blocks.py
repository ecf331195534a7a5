"""U-Net building blocks of DDPM (Ho et al., 2020) and DDPM++ (Song et al., 2021), NHWC."""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ._embedding import default_init
from ._norm import GroupNorm


def conv3x3(
    features: int, stride: int = 1, init_scale: float = 1.0, name: str | None = None, dtype: Any = None
) -> nn.Conv:
    """A 3x3 'SAME' convolution with DDPM's initialiser (`init_scale=0`: zero weights, as DDPM's last layers);
    `dtype` is the compute dtype (None: float32), the weights stay float32."""
    return nn.Conv(
        features,
        (3, 3),
        strides=(stride, stride),
        padding="SAME",
        kernel_init=default_init(init_scale),
        dtype=dtype,
        name=name,
    )


def upsample_nearest(x):
    """Nearest-neighbour 2x upsampling of (B, H, W, C), by broadcasting (no gather)."""
    b, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c))
    return x.reshape(b, 2 * h, 2 * w, c)


def downsample_avg(x):
    """2x2 average pooling of (B, H, W, C) with even H and W."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class Downsample(nn.Module):
    """DDPM's downsampling: a stride-2 3x3 convolution, or 2x2 average pooling when `with_conv=False`."""

    with_conv: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        return conv3x3(x.shape[-1], stride=2, name="conv", dtype=self.dtype)(x) if self.with_conv else downsample_avg(x)


class Upsample(nn.Module):
    """DDPM's upsampling: nearest-neighbour 2x, then a 3x3 convolution when `with_conv`."""

    with_conv: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        x = upsample_nearest(x)
        return conv3x3(x.shape[-1], name="conv", dtype=self.dtype)(x) if self.with_conv else x


class ResBlock(nn.Module):
    """DDPM's residual block `x + conv(drop(act(GN(conv(act(GN(x))) + Dense(act(temb))))))`.

    `variant="biggan"` is DDPM++'s BigGAN-style block (Song et al., 2021; Brock et al., 2019): with `up` or
    `down` it also resamples, both branches, right after the first activation (nearest / average pooling).
    The last convolution starts at zero, so each block starts as the identity (or its 1x1 shortcut when the
    width changes or it resamples). `skip_rescale` divides the sum by sqrt(2) (DDPM++). `dtype` is the compute
    dtype of its convolutions and Dense layers (None: float32); GroupNorm statistics are float32 always.
    """

    out_ch: int
    num_groups: int = 32
    dropout: float = 0.0
    skip_rescale: bool = False
    variant: str = "ddpm"
    up: bool = False
    down: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x, temb, train: bool = False):
        h = nn.silu(GroupNorm(self.num_groups, name="norm1")(x))
        if self.up:
            h, x = upsample_nearest(h), upsample_nearest(x)
        elif self.down:
            h, x = downsample_avg(h), downsample_avg(x)
        h = conv3x3(self.out_ch, name="conv1", dtype=self.dtype)(h)
        if temb is not None:
            temb = nn.Dense(self.out_ch, kernel_init=default_init(), dtype=self.dtype, name="temb_proj")(nn.silu(temb))
            h = h + temb[:, None, None]
        h = nn.silu(GroupNorm(self.num_groups, name="norm2")(h))
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        h = conv3x3(self.out_ch, init_scale=0.0, name="conv2", dtype=self.dtype)(h)
        if x.shape[-1] != self.out_ch or self.up or self.down:  # a 1x1 projection, as DDPM's `nin_shortcut`
            x = nn.Dense(self.out_ch, kernel_init=default_init(), dtype=self.dtype, name="shortcut")(x)
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h


class AttnBlock(nn.Module):
    """DDPM's single-head self-attention over the H*W positions: `x + proj(softmax(q k^T / sqrt(C)) v)`.

    q, k and v come from one 1x1 projection of `GN(x)`; the output projection starts at zero.
    `skip_rescale` divides the sum by sqrt(2) (DDPM++). With a `dtype` (e.g. bfloat16) the projections and
    products run in it while the softmax is taken in float32.
    """

    num_groups: int = 32
    skip_rescale: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        b, hgt, wid, c = x.shape
        h = GroupNorm(self.num_groups, name="norm")(x).reshape(b, hgt * wid, c)
        qkv = nn.Dense(3 * c, kernel_init=default_init(), dtype=self.dtype, name="qkv")(h)
        q, k, v = jnp.split(qkv, 3, axis=-1)
        logits = jnp.einsum("bqc,bkc->bqk", q, k).astype(jnp.promote_types(q.dtype, jnp.float32)) * (c**-0.5)
        h = jnp.einsum("bqk,bkc->bqc", nn.softmax(logits, axis=-1).astype(v.dtype), v)
        h = nn.Dense(c, kernel_init=default_init(0.0), dtype=self.dtype, name="proj_out")(h).reshape(b, hgt, wid, c)
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h
