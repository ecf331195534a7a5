"""Discrete corruptions of token sequences, article (十一) items 3 and 4: masking and the invertible edit.

Both are Su's `x_t = F_t(x_0, eps)` (article (十)) on a sequence of `L = seq_len` tokens in `0..V-1`, with
integer time `t = 0..T`, `T = L`, counting the corrupted positions. The noise `eps` is explicit: `rank`, a
uniformly random permutation rank per position (the corrupted set is `{i : rank_i < t}`, a uniform t-subset),
and for the edit model `offset`, uniform in `1..V-1` per position. Given the noise, `corrupt` is
deterministic, so a loss or sampler that draws `sample_noise(key, ...)` is a pure function of its key.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


def _check_int(what: str, value, low: int) -> None:
    if isinstance(value, bool) or int(value) != value or value < low:
        raise ValueError(f"{what} must be an integer >= {low}, got {value!r}")


def random_ranks(key, shape):
    """A uniformly random permutation rank of the last axis, independently per row: `(B, L)` int32."""
    order = jnp.argsort(jax.random.uniform(key, shape), axis=-1)
    return jnp.argsort(order, axis=-1).astype(jnp.int32)


def per_example(t, x):
    """`t` (a scalar or `(B,)` integers) as a `(B, 1)` column against the `(B, L)` tokens `x`."""
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.integer):
        raise ValueError(f"t must be an integer step (the number of corrupted tokens), got dtype {t.dtype}")
    if t.ndim == 0:
        t = jnp.broadcast_to(t, x.shape[:1])
    if t.shape != x.shape[:1]:
        raise ValueError(f"t must be a scalar or have shape (batch,) = ({x.shape[0]},), got shape {t.shape}")
    return t[:, None]


@dataclasses.dataclass(frozen=True)
class TokenProcess:
    """What the two token corruptions share: shapes, checks, the time range and the corrupted set.

    Attributes:
        seq_len: L, the number of tokens per sequence; also T, the number of steps.
        vocab_size: V, the data vocabulary `0..V-1`.
    """

    seq_len: int
    vocab_size: int

    is_discrete = True
    min_vocab = 1

    def __post_init__(self):
        _check_int(f"{type(self).__name__} seq_len", self.seq_len, 1)
        _check_int(f"{type(self).__name__} vocab_size", self.vocab_size, self.min_vocab)

    @property
    def num_steps(self) -> int:
        """T = L: at t = T every token is corrupted."""
        return int(self.seq_len)

    @property
    def t_min(self) -> int:
        return 1

    @property
    def t_max(self) -> int:
        return self.num_steps

    def check_tokens(self, x, what: str = "x") -> None:
        """Raises `ValueError` unless `x` is an integer `(B, seq_len)` array (shapes are static under jit)."""
        dtype = jnp.result_type(x)
        if not jnp.issubdtype(dtype, jnp.integer):
            raise ValueError(f"{what} must hold integer token ids (e.g. int32), got dtype {dtype}")
        shape = jnp.shape(x)
        if len(shape) != 2 or shape[1] != self.seq_len:
            raise ValueError(
                f"{what} must have shape (batch, seq_len={self.seq_len}), got {tuple(shape)}; "
                "set the process's seq_len to the data's sequence length"
            )

    def sample_noise(self, key, shape) -> dict:
        """The noise `eps` of `F_t(x_0, eps)`: `rank`, a uniform permutation rank per position."""
        return {"rank": random_ranks(key, shape)}

    def corrupted(self, t, noise):
        """The corrupted set `{i : rank_i < t}` as a `(B, L)` boolean mask: exactly `t` positions, uniformly."""
        return noise["rank"] < per_example(t, noise["rank"])

    def forward(self, key, x0, t):
        """Draws `x_t ~ p(x_t | x_0)`: `corrupt(x0, t, sample_noise(key, x0.shape))`."""
        self.check_tokens(x0, "x0")
        return self.corrupt(x0, t, self.sample_noise(key, jnp.shape(x0)))

    def corrupt(self, x0, t, noise):
        """`F_t(x_0, eps)`, deterministic given the noise."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class TokenMask(TokenProcess):
    """The absorbing [MASK] corruption, article (十一) item 4: `x_t` has `t` uniformly chosen tokens masked.

    `F_t(x_0, eps)_i = mask_token if rank_i < t else x0_i`. The prior (t = T) is all masks, so the network's
    input vocabulary is `vocab_size + 1` with the default `mask_token = vocab_size`; it predicts over the
    `vocab_size` data tokens only.

    Attributes:
        seq_len: L = T.
        vocab_size: V, the data tokens `0..V-1`.
        mask_token: the id of [MASK]; None means `vocab_size`. It must not be a data token.
    """

    mask_token: int | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.mask_token is None:
            object.__setattr__(self, "mask_token", int(self.vocab_size))
        _check_int("mask_token", self.mask_token, 0)
        if self.mask_token < self.vocab_size:
            raise ValueError(
                f"mask_token {self.mask_token} is a data token (< vocab_size={self.vocab_size}); "
                "leave mask_token=None to use vocab_size"
            )

    @property
    def input_vocab_size(self) -> int:
        """The number of ids the network must embed: data tokens and [MASK]."""
        return int(self.mask_token) + 1

    def corrupt(self, x0, t, noise):
        return jnp.where(self.corrupted(t, noise), jnp.asarray(self.mask_token, jnp.result_type(x0)), x0)

    def prior_sample(self, key, shape):
        """`x_T`: every token masked (the key is unused: the prior is a point)."""
        del key
        return jnp.full(shape, self.mask_token, jnp.int32)

    def num_masked(self, x):
        """The time of `x`: the number of [MASK] tokens per row, `(B,)` int32."""
        return jnp.sum(x == self.mask_token, axis=-1, dtype=jnp.int32)


@dataclasses.dataclass(frozen=True)
class Edit(TokenProcess):
    """The invertible discrete edit, article (十一) item 3: `t` uniformly chosen tokens become different tokens.

    `F_t(x_0, eps)_i = (x0_i + offset_i) mod V if rank_i < t else x0_i` with `offset_i` uniform in
    `1..V-1`, so each edited token is uniform over the `V - 1` others. Because an edit always changes the
    token, the edit set is `{i : x_t,i != x0_i}` and `F_t` is invertible in its noise given `(x_0, x_t)`,
    which is what Su's reverse step uses. The prior is `L` uniform tokens (Su's choice; the exact law of
    `x_T` is uniform over tokens differing from `x_0`, which is close to it when V is not small).

    Attributes:
        seq_len: L = T.
        vocab_size: V >= 2.
    """

    min_vocab = 2

    def sample_noise(self, key, shape) -> dict:
        """`rank` (a uniform permutation rank) and `offset` (uniform in `1..V-1`) per position."""
        k_rank, k_offset = jax.random.split(key)
        offset = jax.random.randint(k_offset, shape, 1, self.vocab_size, dtype=jnp.int32)
        return {"rank": random_ranks(k_rank, shape), "offset": offset}

    def corrupt(self, x0, t, noise):
        edited = (x0 + noise["offset"].astype(jnp.result_type(x0))) % self.vocab_size
        return jnp.where(self.corrupted(t, noise), edited, x0)

    def prior_sample(self, key, shape):
        """`x_T`: `L` uniform tokens per row (Su's prior)."""
        return jax.random.randint(key, shape, 0, self.vocab_size, dtype=jnp.int32)

    @staticmethod
    def edit_set(x0, x_t):
        """`F_t^{-1}`'s edit set `{i : x_t,i != x0_i}` as a `(B, L)` boolean mask."""
        return x0 != x_t
