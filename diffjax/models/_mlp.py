"""A residual MLP for vector data (2-D toy sets), conditioned on time and class like DDPM's U-Net."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from .._checks import check_choice
from ._embedding import TIME_EMBEDDINGS, TimeEmbedding, broadcast_time, class_labels, compute_dtype, default_init


class MLPBlock(nn.Module):
    """DDPM's residual block made dense: `h + Dense(drop(act(Dense(act(norm(h))) + Dense(act(temb)))))`.

    The last layer starts at zero, so the block starts as the identity. `dtype` is the Dense layers' compute
    dtype (None: float32); LayerNorm statistics are float32 always.
    """

    hidden: int
    dropout: float = 0.0
    layer_norm: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, h, temb, train: bool = False):
        r = nn.LayerNorm(name="norm")(h) if self.layer_norm else h
        r = nn.Dense(self.hidden, kernel_init=default_init(), dtype=self.dtype, name="dense1")(nn.silu(r))
        r = r + nn.Dense(self.hidden, kernel_init=default_init(), dtype=self.dtype, name="temb_proj")(nn.silu(temb))
        r = nn.Dropout(self.dropout)(nn.silu(r), deterministic=not train)
        return h + nn.Dense(self.hidden, kernel_init=default_init(0.0), dtype=self.dtype, name="dense2")(r)


class MLP(nn.Module):
    """A residual MLP `(x, t, cond) -> output shaped like x` for (B, d) data; DDPM's U-Net blocks made dense.

    `x -> Dense(hidden)`, then `depth` pre-activation residual blocks (`MLPBlock`, last layer zero-initialised
    as in DDPM's residual blocks), then `act(norm(h)) -> Dense(d)`. `norm` is LayerNorm when `layer_norm`, else
    the identity. The time embedding (features of `time_scale * t`, Dense-SiLU-Dense to `hidden`) plus the
    class embedding conditions every block. Pure Flax: it sees only `(x, t, cond)`.

    Attributes:
        hidden: width of the residual stream and of the time embedding.
        depth: number of residual blocks.
        time_embed_dim: size of the time features before their MLP.
        num_classes: 0 for an unconditional model; else labels 0..num_classes-1 plus the null label
            `num_classes` (also used when `cond` is None).
        time_embedding: `sinusoidal`, `fourier` or `learned` (see `TimeEmbedding`), of `time_scale * t`.
        dropout: rate inside the blocks, active only with `train=True` (needs a `dropout` rng).
        layer_norm: pre-normalise each block and the output head with LayerNorm.
        zero_init_output: start the output layer at zero, so the initial output is exactly 0.
        out_dim: output size; None means that of `x`.
        dtype: `float32`, or `bfloat16` for mixed precision: float32 parameters, bfloat16 Dense layers, float32
            LayerNorm statistics, a float32 output.
    """

    hidden: int = 256
    depth: int = 4
    time_embed_dim: int = 128
    num_classes: int = 0
    time_scale: float = 1.0
    time_embedding: str = "sinusoidal"
    num_time_embeddings: int = 1001
    fourier_scale: float = 16.0
    dropout: float = 0.0
    layer_norm: bool = False
    zero_init_output: bool = True
    out_dim: int | None = None
    dtype: str = "float32"

    def __post_init__(self):
        check_choice("time_embedding", self.time_embedding, TIME_EMBEDDINGS)
        compute_dtype(self.dtype)
        if self.hidden < 1 or self.depth < 0 or self.time_embed_dim < 1:
            raise ValueError(
                f"MLP needs hidden >= 1, depth >= 0 and time_embed_dim >= 1, got hidden={self.hidden}, "
                f"depth={self.depth}, time_embed_dim={self.time_embed_dim}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x, t, cond=None, train: bool = False):
        if x.ndim < 2:
            raise ValueError(f"MLP expects a batch (B, d) or (B, *dims), got shape {x.shape}")
        shape = x.shape
        x = x.reshape(shape[0], -1)  # images are flattened; the output takes the input's shape again
        batch = x.shape[0]
        dtype = compute_dtype(self.dtype)
        temb = TimeEmbedding(
            self.time_embed_dim,
            self.hidden,
            self.time_embedding,
            self.time_scale,
            self.num_time_embeddings,
            self.fourier_scale,
            dtype,
            name="time_embed",
        )(broadcast_time(t, batch))
        labels = class_labels(cond, batch, self.num_classes)
        if labels is not None:
            temb = temb + nn.Embed(self.num_classes + 1, self.hidden, name="class_embed")(labels)

        h = nn.Dense(self.hidden, kernel_init=default_init(), dtype=dtype, name="dense_in")(x)
        for _ in range(self.depth):
            h = MLPBlock(self.hidden, self.dropout, self.layer_norm, dtype)(h, temb, train)
        if self.layer_norm:
            h = nn.LayerNorm(name="norm_out")(h)
        out_dim = x.shape[-1] if self.out_dim is None else self.out_dim
        init = default_init(0.0 if self.zero_init_output else 1.0)
        out = nn.Dense(out_dim, kernel_init=init, dtype=dtype, name="dense_out")(nn.silu(h))
        if dtype is not None:
            out = out.astype(jnp.float32)
        return out.reshape(shape) if self.out_dim is None else out
