"""The U-Net of DDPM (Ho et al., 2020) and its DDPM++ options (Song et al., 2021), for NHWC images."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from .._checks import check_choice
from ._blocks import AttnBlock, Downsample, ResBlock, Upsample, conv3x3
from ._embedding import TIME_EMBEDDINGS, TimeEmbedding, broadcast_time, class_labels, compute_dtype
from ._norm import GroupNorm

RESBLOCK_VARIANTS = ("ddpm", "biggan")

PRESETS = {
    # DDPM's CIFAR-10 network (Ho et al., 2020, appendix B): 35,746,307 parameters ("35.7M").
    "ddpm_cifar10": dict(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1),
    # A small U-Net for 8x8 or 16x16 grey digits (scikit-learn's), fast on two CPU cores.
    # 1,112,801 parameters at 16x16x1 (attention at 8x8, level 1), 1,075,361 at 8x8x1 (attention at level 0).
    "digits": dict(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,), dropout=0.1, num_groups=8),
}


class UNet(nn.Module):
    """DDPM's U-Net `(x, t, cond) -> output shaped like x`, with DDPM++ options (skip rescaling, BigGAN blocks).

    Follows `diffusion_tf/models/unet.py` of Ho et al. (2020): a 3x3 input convolution; per level
    `num_res_blocks` residual blocks (with self-attention where the side length is in `attn_resolutions`) and
    a downsampling step except at the last level; a middle of block, attention, block; an upward path of
    `num_res_blocks + 1` blocks per level fed by concatenated skips; then GroupNorm, SiLU and a zero-initialised
    3x3 output convolution. The time embedding has `ch` features and width `4 ch`; a class embedding (with a
    null row for classifier-free guidance) is added to it. Pure Flax: it sees only `(x, t, cond)`.

    Attributes:
        ch: base width; level i has `ch * ch_mult[i]` channels.
        ch_mult: width multipliers; there are `len(ch_mult) - 1` downsamplings, so H and W must be divisible
            by `2 ** (len(ch_mult) - 1)`.
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attn_resolutions: side lengths at which self-attention follows each block (the middle always has one).
        dropout: rate inside residual blocks, active only with `train=True` (needs a `dropout` rng).
        resamp_with_conv: strided / nearest+conv resampling; otherwise average pooling / nearest only.
        num_groups: GroupNorm groups; must divide every width `ch * m`.
        time_embedding: `sinusoidal`, `fourier` or `learned` (see `TimeEmbedding`), of `time_scale * t`.
        num_classes: 0 for an unconditional model; else labels 0..num_classes-1 plus the null label
            `num_classes` (also used when `cond` is None).
        out_channels: output channels; None means those of `x`.
        skip_rescale: divide each residual sum by sqrt(2) (DDPM++).
        resblock_variant: `ddpm`, or `biggan` (DDPM++: resampling inside residual blocks).
        zero_init_output: start the output convolution at zero, so the initial output is exactly 0 (DDPM).
        dtype: `float32`, or `bfloat16` for mixed precision: float32 parameters, bfloat16 convolutions, Dense
            layers and attention products, float32 GroupNorm statistics and softmax, a float32 output.
    """

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    resamp_with_conv: bool = True
    num_groups: int = 32
    time_embedding: str = "sinusoidal"
    time_scale: float = 1.0
    num_time_embeddings: int = 1001
    fourier_scale: float = 16.0
    num_classes: int = 0
    out_channels: int | None = None
    skip_rescale: bool = False
    resblock_variant: str = "ddpm"
    zero_init_output: bool = True
    dtype: str = "float32"

    def __post_init__(self):
        check_choice("time_embedding", self.time_embedding, TIME_EMBEDDINGS)
        check_choice("resblock_variant", self.resblock_variant, RESBLOCK_VARIANTS)
        compute_dtype(self.dtype)
        if self.ch < 1 or self.num_res_blocks < 0 or not self.ch_mult or min(self.ch_mult) < 1:
            raise ValueError(
                f"UNet needs ch >= 1, num_res_blocks >= 0 and positive ch_mult, got ch={self.ch}, "
                f"num_res_blocks={self.num_res_blocks}, ch_mult={self.ch_mult}"
            )
        bad = sorted({self.ch * m for m in self.ch_mult if (self.ch * m) % self.num_groups})
        if self.num_groups < 1 or bad:
            raise ValueError(
                f"UNet: num_groups={self.num_groups} must divide every width ch * ch_mult = "
                f"{[self.ch * m for m in self.ch_mult]}; it does not divide {bad}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x, t, cond=None, train: bool = False):
        if x.ndim != 4:
            raise ValueError(f"UNet expects NHWC images (B, H, W, C), got shape {x.shape}")
        batch, height, width, channels = x.shape
        factor = 2 ** (len(self.ch_mult) - 1)
        if height % factor or width % factor:
            raise ValueError(
                f"UNet with {len(self.ch_mult)} levels downsamples {factor}x: H and W must be "
                f"divisible by {factor}, got {height}x{width}"
            )
        temb_width = 4 * self.ch
        dtype = compute_dtype(self.dtype)
        temb = TimeEmbedding(
            self.ch,
            temb_width,
            self.time_embedding,
            self.time_scale,
            self.num_time_embeddings,
            self.fourier_scale,
            dtype,
            name="time_embed",
        )(broadcast_time(t, batch))
        labels = class_labels(cond, batch, self.num_classes)
        if labels is not None:
            temb = temb + nn.Embed(self.num_classes + 1, temb_width, name="class_embed")(labels)

        def block(out_ch, **kw):
            return ResBlock(
                out_ch, self.num_groups, self.dropout, self.skip_rescale, self.resblock_variant, **kw, dtype=dtype
            )

        def attn():
            return AttnBlock(self.num_groups, self.skip_rescale, dtype)

        biggan = self.resblock_variant == "biggan"
        hs = [conv3x3(self.ch, name="conv_in", dtype=dtype)(x)]
        for level, mult in enumerate(self.ch_mult):
            for _ in range(self.num_res_blocks):
                h = block(self.ch * mult)(hs[-1], temb, train)
                if h.shape[1] in self.attn_resolutions:
                    h = attn()(h)
                hs.append(h)
            if level != len(self.ch_mult) - 1:
                h = hs[-1]
                if biggan:
                    h = block(h.shape[-1], down=True)(h, temb, train)
                else:
                    h = Downsample(self.resamp_with_conv, dtype)(h)
                hs.append(h)

        h = block(hs[-1].shape[-1])(hs[-1], temb, train)
        h = attn()(h)
        h = block(h.shape[-1])(h, temb, train)

        for level, mult in reversed(list(enumerate(self.ch_mult))):
            for _ in range(self.num_res_blocks + 1):
                h = block(self.ch * mult)(jnp.concatenate([h, hs.pop()], axis=-1), temb, train)
                if h.shape[1] in self.attn_resolutions:
                    h = attn()(h)
            if level != 0:
                h = block(h.shape[-1], up=True)(h, temb, train) if biggan else Upsample(self.resamp_with_conv, dtype)(h)
        assert not hs

        h = nn.silu(GroupNorm(self.num_groups, name="norm_out")(h))
        out_channels = channels if self.out_channels is None else self.out_channels
        out = conv3x3(out_channels, init_scale=0.0 if self.zero_init_output else 1.0, name="conv_out", dtype=dtype)(h)
        return out if dtype is None else out.astype(jnp.float32)
