"""Cross-entropy training of a non-autoregressive token posterior, article (十): `E[-log q(x_0 | F_t(x_0, eps))]`.

The network returns logits `(B, L, V)`, i.e. `q(x_0 | x_t) = prod_i softmax(logits_i)(x0_i)`. One Monte-Carlo
draw takes `t` uniform in `1..T` per example and the corruption noise, both from the key.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from .._checks import check_choice
from ._processes import Edit, TokenMask, TokenProcess

POSITIONS = ("corrupted", "all")


def token_cross_entropy(logits, x0, weights):
    """Per-example weighted mean of `-log softmax(logits)_i(x0_i)` over positions: `(B,)`.

    `sum_i w_i nll_i / sum_i w_i`; `weights` is `(B, L)` (booleans or floats), with a positive sum per row.
    """
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), x0[..., None], axis=-1)[..., 0]
    weights = jnp.asarray(weights, nll.dtype)
    return jnp.sum(weights * nll, axis=-1) / jnp.sum(weights, axis=-1)


@dataclasses.dataclass(frozen=True)
class TokenCrossEntropy:
    """The loss `loss(key, apply_fn, params, x0, cond=None)`: the batch mean of each example's cross-entropy.

    `x0` is `(B, L)` integer tokens; `apply_fn(params, x_t, t)` (or with `cond`) returns logits `(B, L, V)`
    and `t` is `(B,)` int32, the number of corrupted tokens. Frozen and hashable.

    Attributes:
        process: the token corruption.
        positions: `corrupted` scores the mean over the t corrupted positions; `all` the mean over all L.
    """

    process: TokenProcess
    positions: str = "corrupted"

    process_type = TokenProcess
    name = "token_ce"

    def __post_init__(self):
        if not isinstance(self.process, self.process_type):
            raise ValueError(
                f"objective {self.name!r} needs a {self.process_type.__name__} process, got "
                f"{type(self.process).__name__}"
            )
        check_choice(f"positions for {self.name!r}", self.positions, POSITIONS)

    def corrupt_batch(self, key, x0):
        """The draw behind one loss value: `(t, x_t, scored)`, with `scored` the `(B, L)` positions scored."""
        self.process.check_tokens(x0, "x0")
        k_time, k_noise = jax.random.split(key)
        t = jax.random.randint(k_time, (x0.shape[0],), 1, self.process.num_steps + 1, dtype=jnp.int32)
        noise = self.process.sample_noise(k_noise, x0.shape)
        x_t = self.process.corrupt(x0, t, noise)
        scored = self.process.corrupted(t, noise) if self.positions == "corrupted" else jnp.ones(x0.shape, bool)
        return t, x_t, scored

    def __call__(self, key, apply_fn, params, x0, cond=None):
        x0 = jnp.asarray(x0)
        t, x_t, scored = self.corrupt_batch(key, x0)
        logits = apply_fn(params, x_t, t) if cond is None else apply_fn(params, x_t, t, cond)
        want = (*x0.shape, self.process.vocab_size)
        if tuple(logits.shape) != want:
            raise ValueError(
                f"objective {self.name!r}: the network must return logits of shape {want} "
                f"(batch, seq_len, vocab_size), got {tuple(logits.shape)}"
            )
        return jnp.mean(token_cross_entropy(logits, x0, scored))


@dataclasses.dataclass(frozen=True)
class MaskedCE(TokenCrossEntropy):
    """Masked-token cross-entropy for `token_mask` (BERT-like), article (十一) item 4.

    By default the mean over the t masked positions (the visible ones are known). Then `L * E[loss]` is the
    any-order autoregressive bound `>= -E log p(x_0)` in nats, with equality for the exact conditionals.
    """

    positions: str = "corrupted"

    process_type = TokenMask
    name = "masked_ce"


@dataclasses.dataclass(frozen=True)
class EditCE(TokenCrossEntropy):
    """Cross-entropy for the `edit` process, article (十一) item 3.

    By default the mean over all L positions: the model must also say which tokens were not edited
    (`p_i(x_t,i)`), which the `edit` sampler uses to find the edit set.
    """

    positions: str = "all"

    process_type = Edit
    name = "edit_ce"
