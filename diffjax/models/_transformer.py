"""A small bidirectional Transformer over token sequences: `(x_t, t, cond) -> logits (B, L, vocab_size)`.

The denoiser of the discrete processes of article (十一) (masking, edit): a non-autoregressive
`q(x_0 | x_t) = prod_i softmax(logits_i)`. Every position attends to every other (no causal mask).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from .._checks import check_choice
from ._embedding import TIME_EMBEDDINGS, TimeEmbedding, broadcast_time, class_labels, default_init


class TransformerBlock(nn.Module):
    """A pre-LN block: `h + Attn(LN(h))`, then `h + MLP(LN(h))`, with GELU and dropout on both branches."""

    width: int
    num_heads: int
    mlp_ratio: float = 4.0
    dropout: float = 0.0

    @nn.compact
    def __call__(self, h, train: bool = False):
        r = nn.LayerNorm(name="norm_attn")(h)
        r = nn.MultiHeadDotProductAttention(
            self.num_heads, qkv_features=self.width, dropout_rate=self.dropout, kernel_init=default_init(), name="attn"
        )(r, deterministic=not train)
        h = h + nn.Dropout(self.dropout)(r, deterministic=not train)
        r = nn.LayerNorm(name="norm_mlp")(h)
        r = nn.Dense(int(self.width * self.mlp_ratio), kernel_init=default_init(), name="mlp_in")(r)
        r = nn.Dropout(self.dropout)(nn.gelu(r), deterministic=not train)
        r = nn.Dense(self.width, kernel_init=default_init(), name="mlp_out")(r)
        return h + nn.Dropout(self.dropout)(r, deterministic=not train)


class Transformer(nn.Module):
    """A bidirectional pre-LN Transformer for `(B, L)` integer tokens; returns logits `(B, L, vocab_size)`.

    Input: a token embedding with `vocab_size + 1` rows (the last is [MASK], the `token_mask` process's
    default `mask_token`), plus a learned positional embedding (its length is fixed by the `x` used at
    `init`), plus the time embedding (features of `time_scale * t`, Dense-SiLU-Dense to `width`) and, with
    `num_classes > 0`, a class embedding, both added at every position. Then `num_layers` pre-LN blocks,
    a final LayerNorm and a Dense head over the `vocab_size` data tokens. Token ids must lie in
    `0..vocab_size` (not checked under jit).

    Attributes:
        vocab_size: V, the data tokens; the head predicts these.
        num_layers: number of blocks.
        num_heads: attention heads; must divide `width`.
        width: the residual stream's size.
        mlp_ratio: hidden size of the block MLP as a multiple of `width`.
        dropout: rate in attention and MLP branches and on the input, active only with `train=True` (needs a
            `dropout` rng).
        time_scale: multiplies `t` (the process's integer time) before the time features.
        num_classes: 0 for an unconditional model; else labels 0..num_classes-1 plus the null label
            `num_classes` (also used when `cond` is None), as in the MLP.
        time_embedding: `sinusoidal`, `fourier` or `learned` (see `TimeEmbedding`).
        num_time_embeddings: rows of the `learned` time table (at least T + 1).
    """

    vocab_size: int = 2
    num_layers: int = 4
    num_heads: int = 4
    width: int = 128
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    time_scale: float = 1.0
    num_classes: int = 0
    time_embedding: str = "sinusoidal"
    num_time_embeddings: int = 1001

    def __post_init__(self):
        check_choice("time_embedding", self.time_embedding, TIME_EMBEDDINGS)
        if self.vocab_size < 1 or self.num_layers < 0 or self.width < 1 or self.num_heads < 1:
            raise ValueError(
                f"Transformer needs vocab_size >= 1, num_layers >= 0, width >= 1 and num_heads >= 1, got "
                f"vocab_size={self.vocab_size}, num_layers={self.num_layers}, width={self.width}, "
                f"num_heads={self.num_heads}"
            )
        if self.width % self.num_heads:
            raise ValueError(f"Transformer num_heads={self.num_heads} must divide width={self.width}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be positive, got {self.mlp_ratio}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x, t, cond=None, train: bool = False):
        if x.ndim != 2 or not jnp.issubdtype(x.dtype, jnp.integer):
            raise ValueError(
                f"Transformer expects integer tokens of shape (batch, seq_len), got shape {x.shape} and dtype {x.dtype}"
            )
        batch, seq_len = x.shape
        h = nn.Embed(self.vocab_size + 1, self.width, name="token_embed")(x)
        pos = self.param("pos_embed", nn.initializers.normal(0.02), (seq_len, self.width))
        temb = TimeEmbedding(
            self.width, self.width, self.time_embedding, self.time_scale, self.num_time_embeddings, name="time_embed"
        )(broadcast_time(t, batch))
        labels = class_labels(cond, batch, self.num_classes)
        if labels is not None:
            temb = temb + nn.Embed(self.num_classes + 1, self.width, name="class_embed")(labels)
        h = nn.Dropout(self.dropout)(h + pos[None] + temb[:, None, :], deterministic=not train)
        for i in range(self.num_layers):
            h = TransformerBlock(self.width, self.num_heads, self.mlp_ratio, self.dropout, name=f"block{i}")(h, train)
        h = nn.LayerNorm(name="norm_out")(h)
        return nn.Dense(self.vocab_size, kernel_init=default_init(), name="head")(h)
