"""Conditioning inputs of the networks: features of the time `t` and embeddings of class labels."""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from .._checks import check_choice

TIME_EMBEDDINGS = ("sinusoidal", "fourier", "learned")
COMPUTE_DTYPES = ("float32", "bfloat16")


def sinusoidal_embedding(t, dim: int, max_period: float = 10000.0):
    """DDPM's transformer-style features `[sin(t w_k), cos(t w_k)]`, `w_k = max_period^(-k/(dim/2 - 1))`.

    Follows `get_timestep_embedding` of Ho et al. (2020), Vaswani et al. (2017). `t`: (B,), any real dtype;
    returns (B, dim) float32 (a zero column is appended when `dim` is odd).
    """
    half = dim // 2
    freqs = np.exp(-math.log(max_period) * np.arange(half, dtype=np.float64) / max(half - 1, 1))
    args = jnp.asarray(t, jnp.float32)[:, None] * jnp.asarray(freqs, jnp.float32)[None, :]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


def fourier_embedding(t, dim: int, scale: float = 16.0, seed: int = 0):
    """Gaussian random Fourier features `[sin(2 pi t w), cos(2 pi t w)]`, `w ~ N(0, scale^2)` fixed (NCSN++).

    Follows `GaussianFourierProjection` of Song et al. (2021) and Tancik et al. (2020). The frequencies are a
    constant drawn from `seed` with NumPy at trace time, not a parameter, so no optimiser or weight decay
    ever touches them. `t`: (B,); returns (B, dim) float32 (`dim` even).
    """
    if dim % 2:
        raise ValueError(f"the Fourier time embedding needs an even dimension, got {dim}")
    w = np.random.default_rng(seed).standard_normal(dim // 2) * scale
    args = 2.0 * math.pi * jnp.asarray(t, jnp.float32)[:, None] * jnp.asarray(w, jnp.float32)[None, :]
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


def broadcast_time(t, batch: int):
    """Returns `t` as a (batch,) array: a scalar is repeated, a (batch,) array is kept, anything else is an error."""
    t = jnp.asarray(t)
    if t.ndim == 0:
        t = jnp.broadcast_to(t, (batch,))
    if t.shape != (batch,):
        raise ValueError(f"t must be a scalar or have shape (batch,) = ({batch},), got shape {t.shape}")
    return t


class TimeEmbedding(nn.Module):
    """`t -> (B, width)`: fixed or learnt features of `time_scale * t`, then Dense-SiLU-Dense (DDPM's `temb`).

    Attributes:
        dim: size of the features before the MLP.
        width: size of the output.
        kind: `sinusoidal` (DDPM), `fourier` (NCSN++ Gaussian random features, scaled by `fourier_scale`) or
            `learned` (an `nn.Embed` over integer steps with `num_time_embeddings` rows, as in Su's Keras
            `ddpm.py`; `time_scale * t` is rounded to the nearest integer).
        time_scale: multiplies `t` first, e.g. 1000 for continuous t in [0, 1] with sinusoidal features.
        dtype: the Dense layers' compute dtype (None: float32; see `compute_dtype`); the features are float32.
    """

    dim: int
    width: int
    kind: str = "sinusoidal"
    time_scale: float = 1.0
    num_time_embeddings: int = 1001
    fourier_scale: float = 16.0
    dtype: Any = None

    @nn.compact
    def __call__(self, t):
        check_choice("time_embedding", self.kind, TIME_EMBEDDINGS)
        t = jnp.asarray(t)
        if self.kind == "learned":
            if jnp.issubdtype(t.dtype, jnp.integer) and self.time_scale == 1.0:
                steps = t.astype(jnp.int32)
            else:
                steps = jnp.round(t.astype(jnp.float32) * self.time_scale).astype(jnp.int32)
            emb = nn.Embed(self.num_time_embeddings, self.dim, name="embed")(steps)
        else:
            s = t.astype(jnp.float32) * self.time_scale
            if self.kind == "sinusoidal":
                emb = sinusoidal_embedding(s, self.dim)
            else:
                emb = fourier_embedding(s, self.dim, self.fourier_scale)
        emb = nn.Dense(self.width, kernel_init=default_init(), dtype=self.dtype, name="dense0")(emb)
        return nn.Dense(self.width, kernel_init=default_init(), dtype=self.dtype, name="dense1")(nn.silu(emb))


def class_labels(cond, batch: int, num_classes: int):
    """Validates class labels: returns None when the model is unconditional, else (batch,) int32 labels.

    Embedding tables have `num_classes + 1` rows: label `num_classes` is the null label of classifier-free
    guidance (Ho & Salimans, 2022), and `cond=None` means the null label for every example.
    """
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    if num_classes == 0:
        if cond is not None:
            raise ValueError(
                "got class labels `cond` but the model has num_classes=0; set num_classes > 0 to condition on labels"
            )
        return None
    if cond is None:
        return jnp.full((batch,), num_classes, jnp.int32)
    labels = jnp.asarray(cond)
    if labels.shape != (batch,):
        raise ValueError(f"cond must be integer labels of shape ({batch},), got shape {labels.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"cond must hold integer class labels in [0, {num_classes}], got dtype {labels.dtype}")
    return labels.astype(jnp.int32)


def default_init(scale: float = 1.0):
    """DDPM's initialiser: variance scaling with fan-average and a uniform law (`scale=0` gives exact zeros)."""
    if scale == 0.0:
        return nn.initializers.zeros
    return nn.initializers.variance_scaling(scale, "fan_avg", "uniform")


def compute_dtype(name: str):
    """The compute dtype of Dense and Conv layers for a model's `dtype` knob (`float32` or `bfloat16`).

    `float32` gives None, Flax's default (the dtype of the float32 inputs and parameters, so the numbers are
    exactly those of a model without the knob); `bfloat16` gives mixed precision: parameters stay float32
    (`param_dtype`), the layers cast inputs and weights to bfloat16 and multiply there, while normalisation
    statistics and softmax stay float32 and the model's output is cast back to float32.
    """
    check_choice("dtype", name, COMPUTE_DTYPES)
    return None if name == "float32" else jnp.dtype(name)
