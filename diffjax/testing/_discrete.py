"""An exact discrete oracle: a full joint table over short token sequences, with exact posteriors by enumeration.

For `L` tokens in `0..V-1` the table has `V^L` entries (states in row-major order: token 0 is the most
significant digit). Every posterior the discrete samplers need is a weighted sum over the states:

* masking (article (十一) item 4): `p(x0_i = v | visible tokens of x_t)`, weights `p(x_0) [x_0 agrees with
  the visible tokens]`;
* the edit process (article (十一) item 3): `p(x_t | x_0) = [d(x_0, x_t) = t] / (C(L, t) (V-1)^t)` with `d`
  the Hamming distance, so `p(x_0 | x_t) ∝ p(x_0) [d(x_0, x_t) = t]` and
  `p(x_t) = sum_{x_0} p(x_0) [d(x_0, x_t) = t] / (C(L, t) (V-1)^t)`.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from ..discrete import Edit, TokenMask
from ..predictions import Predictor


def _all_states(seq_len: int, vocab_size: int) -> np.ndarray:
    """The `V^L` sequences `(V^L, L)` in row-major order."""
    digits = np.arange(vocab_size**seq_len)[:, None] // vocab_size ** np.arange(seq_len - 1, -1, -1)[None]
    return (digits % vocab_size).astype(np.int32)


def _logits(probs):
    """`log p`, with `-inf` where `p = 0`, so impossible tokens are never sampled."""
    return jnp.where(probs > 0, jnp.log(jnp.where(probs > 0, probs, 1.0)), -jnp.inf)


@dataclasses.dataclass(frozen=True)
class DiscreteJoint:
    """A law over `(seq_len,)` token sequences given by its full table; a pytree whose leaf is `probs`.

    Attributes:
        probs: `(V^L,)` probabilities of the states in row-major order, summing to one.
        seq_len: L.
        vocab_size: V.
    """

    probs: jax.Array
    seq_len: int
    vocab_size: int

    @property
    def num_states(self) -> int:
        return self.vocab_size**self.seq_len

    def states(self):
        """All sequences, `(V^L, L)` int32, in the order of `probs`."""
        return jnp.asarray(_all_states(self.seq_len, self.vocab_size))

    def index(self, x):
        """The row of each sequence of `x` `(B, L)` in `states()`: `(B,)` int32."""
        place = jnp.asarray(self.vocab_size ** np.arange(self.seq_len - 1, -1, -1), jnp.int32)
        return jnp.sum(jnp.asarray(x, jnp.int32) * place, axis=-1)

    def log_prob(self, x):
        """`log p(x)` for sequences `(B, L)`: `(B,)`."""
        return jnp.log(self.probs[self.index(x)])

    def sample(self, key, n: int):
        """`n` sequences `(n, L)` int32 drawn from the table."""
        idx = jax.random.categorical(key, jnp.log(self.probs), shape=(n,))
        return self.states()[idx]

    def marginals(self):
        """The per-position marginals `p(x0_i = v)`: `(L, V)`."""
        return jnp.einsum(
            "s,slv->lv", self.probs, jax.nn.one_hot(self.states(), self.vocab_size, dtype=self.probs.dtype)
        )

    def _posterior_marginals(self, agrees):
        """Per-position marginals of `p(x_0) agrees[b, s]` normalised over states: `(B, L, V)`."""
        w = jnp.where(agrees, self.probs[None], 0.0)
        onehot = jax.nn.one_hot(self.states(), self.vocab_size, dtype=self.probs.dtype)
        total = jnp.sum(w, axis=-1)[:, None, None]
        marg = jnp.einsum("bs,slv->blv", w, onehot)
        return jnp.where(total > 0, marg / jnp.where(total > 0, total, 1.0), 1.0 / self.vocab_size)

    # ---- masking --------------------------------------------------------------------------------------
    def mask_conditionals(self, x, mask_token: int):
        """`p(x0_i = v | the tokens of x that are not mask_token)`: `(B, L, V)`.

        At a visible position it is the one-hot of the visible token, which is the exact conditional too.
        """
        x = jnp.asarray(x)
        states = self.states()[None]  # (1, S, L)
        visible = (x != mask_token)[:, None, :]
        agrees = jnp.all(~visible | (states == x[:, None, :]), axis=-1)
        return self._posterior_marginals(agrees)

    # ---- the edit process -----------------------------------------------------------------------------
    def _hamming(self, x):
        return jnp.sum(self.states()[None] != jnp.asarray(x)[:, None, :], axis=-1)  # (B, S)

    def edit_posterior(self, x_t, t):
        """The marginals of `p(x_0 | x_t)` under the edit process at step `t` (scalar or `(B,)`): `(B, L, V)`."""
        t = jnp.broadcast_to(jnp.asarray(t), (jnp.shape(x_t)[0],))
        return self._posterior_marginals(self._hamming(x_t) == t[:, None])

    def edit_marginal(self, t: int):
        """The exact law `p(x_t)` of the edit process at step `t`, over `states()`: `(V^L,)`."""
        L, V = self.seq_len, self.vocab_size
        close = self._hamming(self.states()) == t  # (S x_t, S x_0), symmetric
        kernel = jnp.where(close, 1.0 / (math.comb(L, t) * (V - 1) ** t), 0.0).astype(self.probs.dtype)
        return kernel @ self.probs

    # ---- as a model -----------------------------------------------------------------------------------
    def predictor(self, process) -> Predictor:
        """The exact posterior as `Predictor(fn, kind="x0")`, `fn(x_t, t) -> logits (B, L, V)`.

        For a `TokenMask` process the logits are those of `mask_conditionals` (t is not needed); for an
        `Edit` process those of `edit_posterior` at `t`. Impossible tokens get `-inf`.
        """
        if isinstance(process, TokenMask):
            kind = ("mask", int(process.mask_token))
        elif isinstance(process, Edit):
            kind = ("edit",)
        else:
            raise ValueError(
                f"the discrete oracle serves the 'token_mask' and 'edit' processes, got {type(process).__name__}"
            )
        if (process.seq_len, process.vocab_size) != (self.seq_len, self.vocab_size):
            raise ValueError(
                f"process has seq_len={process.seq_len}, vocab_size={process.vocab_size}; the joint "
                f"has seq_len={self.seq_len}, vocab_size={self.vocab_size}"
            )
        return Predictor(_JointFn(self, kind), kind="x0")


@dataclasses.dataclass(frozen=True, eq=False)
class _JointFn:
    """The oracle's logits function, hashable by the joint's identity so a sampler compiles once for it."""

    joint: DiscreteJoint
    kind: tuple

    def __call__(self, x, t, **cond):
        del cond
        if self.kind[0] == "mask":
            return _logits(self.joint.mask_conditionals(x, self.kind[1]))
        return _logits(self.joint.edit_posterior(x, t))

    def __hash__(self):
        return hash((self.kind, id(self.joint)))

    def __eq__(self, other):
        return isinstance(other, _JointFn) and self.kind == other.kind and self.joint is other.joint


jax.tree_util.register_dataclass(DiscreteJoint, data_fields=["probs"], meta_fields=["seq_len", "vocab_size"])


def discrete_joint(probs, seq_len: int, vocab_size: int) -> DiscreteJoint:
    """A `DiscreteJoint` from a table of `V^L` probabilities (flat or shaped `(V,) * L`), checked to sum to one."""
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    if probs.shape != (vocab_size**seq_len,):
        raise ValueError(f"the table must hold vocab_size**seq_len = {vocab_size**seq_len} entries, got {probs.size}")
    if np.any(probs < 0) or not np.isclose(probs.sum(), 1.0, rtol=0, atol=1e-9):
        raise ValueError(f"the table must be non-negative and sum to one, got sum {probs.sum():.6g}")
    return DiscreteJoint(jnp.asarray(probs / probs.sum()), int(seq_len), int(vocab_size))


def random_joint(seed: int = 0, seq_len: int = 3, vocab_size: int = 4, concentration: float = 1.0) -> DiscreteJoint:
    """A random full joint table, `Dirichlet(concentration)` over the `V^L` states, from a NumPy seed.

    With the default concentration the tokens are strongly dependent, so a sampler that treats positions
    independently is easy to tell apart from one that reproduces the joint.
    """
    probs = np.random.default_rng(seed).dirichlet(np.full(vocab_size**seq_len, concentration))
    return discrete_joint(probs, seq_len, vocab_size)


def product_joint(marginals) -> DiscreteJoint:
    """The law of independent tokens with per-position marginals `(L, V)`."""
    marginals = np.asarray(marginals, dtype=np.float64)
    marginals = marginals / marginals.sum(-1, keepdims=True)
    seq_len, vocab_size = marginals.shape
    states = _all_states(seq_len, vocab_size)
    probs = np.prod(marginals[np.arange(seq_len)[None], states], axis=-1)
    return discrete_joint(probs, seq_len, vocab_size)
