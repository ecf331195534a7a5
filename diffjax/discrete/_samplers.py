"""Reverse processes for token sequences, article (十一) items 3 and 4: unmasking and Su's edit reverse.

Both samplers take a `Predictor(fn, kind="x0")` whose `fn(x_t, t, **cond)` returns per-position **logits**
`(B, L, V)` over the data vocabulary, i.e. a non-autoregressive `q(x_0 | x_t) = prod_i q_i(x0_i | x_t)`
(article (十): the categorical posterior model). `t` is the process's time as `(B,)` int32: the number of
masked tokens (`unmask`) or of edited tokens (`edit`). Each sampler is one `lax.scan`, jitted once.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from .._checks import check_choice
from ..samplers import Sampler
from ._processes import Edit, TokenMask

ORDERS = ("random", "confidence")
REVERSES = ("deterministic", "baseline")
SELECTS = ("sample", "greedy")


def _check_token_predictor(name: str, process, predictor, process_type, temperature) -> None:
    if not isinstance(process, process_type):
        wanted = "token_mask" if process_type is TokenMask else "edit"
        raise ValueError(f"sampler {name!r} needs the {wanted!r} process, got {type(process).__name__}")
    if getattr(predictor, "kind", None) != "x0":
        raise ValueError(
            f"sampler {name!r} needs Predictor(fn, kind='x0') whose fn returns logits (B, L, V), "
            f"got kind {getattr(predictor, 'kind', None)!r}"
        )
    if not temperature > 0:
        raise ValueError(f"sampler {name!r} needs temperature > 0, got {temperature!r}")


def _logits(predictor, process, x, t, cond):
    """One model evaluation: logits `(B, L, V)` at `(x_t, t)`; a wrong shape fails while tracing."""
    logits = predictor(x, t, **cond)
    want = (*x.shape, process.vocab_size)
    if tuple(logits.shape) != want:
        raise ValueError(
            f"the predictor must return logits of shape (batch, seq_len, vocab_size) = {want}, "
            f"got {tuple(logits.shape)}"
        )
    return logits


def _set_tokens(x, chosen, tokens):
    """`x` with the positions of `chosen` replaced by `tokens`, in `x`'s dtype."""
    return jnp.where(chosen, tokens.astype(x.dtype), x)


@dataclasses.dataclass(frozen=True)
class Unmask(Sampler):
    """Unmasking for the `token_mask` process, article (十一) item 4.

    Each step picks `unmask_per_step = k` of the masked positions, samples their tokens from
    `softmax(logits / temperature)` there, and unmasks them; `ceil(L / k)` steps, one model evaluation each.
    With k = 1, random order and temperature 1 this is Su's rule "pick one masked position uniformly, sample
    its token from q(x_0 | x_t), unmask it": any-order autoregressive sampling, exact when q holds the exact
    conditionals `p(x0_i | visible tokens)`. With k > 1 the k tokens are drawn independently from the same
    logits (parallel decoding), exact only when they are conditionally independent.

    The time given to the model is the number of masked tokens of each row, so an `x_init` with only some
    tokens masked is completed (infilling); rows with nothing left to unmask stay as they are.

    Attributes:
        unmask_per_step: k >= 1.
        order: `random` (a uniform k-subset of the masked positions) or `confidence` (MaskGIT-style: a token is
            sampled at every masked position and the k whose sampled token has the highest probability under
            `softmax(logits)`, without temperature, are kept; ties go to the lower position). Confident-first
            decoding favours likely tokens, so it does not reproduce the data law even with exact conditionals.
        temperature: divides the logits before sampling.
    """

    unmask_per_step: int = 1
    order: str = "random"
    temperature: float = 1.0

    name = "unmask"

    def validate(self, process, predictor) -> None:
        _check_token_predictor(self.name, process, predictor, TokenMask, self.temperature)
        k = self.unmask_per_step
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise ValueError(f"sampler 'unmask' needs an integer unmask_per_step >= 1, got {k!r}")
        check_choice("unmask order", self.order, ORDERS)

    def num_steps(self, process) -> int:
        """`ceil(L / k)`: enough steps to unmask every position."""
        return math.ceil(process.seq_len / self.unmask_per_step)

    def update(self, key, logits, x, process):
        """One step: unmask `k` masked positions of `x` (chosen by `order`) with tokens sampled from `logits`."""
        masked = x == process.mask_token
        k_token, k_order = jax.random.split(key)
        scaled = logits / self.temperature
        tokens = jax.random.categorical(k_token, scaled, axis=-1)
        if self.order == "random":
            priority = jax.random.uniform(k_order, x.shape)
        else:
            chosen_logp = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), tokens[..., None], axis=-1)
            priority = -chosen_logp[..., 0]
        priority = jnp.where(masked, priority, jnp.inf)
        rank = jnp.argsort(jnp.argsort(priority, axis=-1, stable=True), axis=-1)
        return _set_tokens(x, masked & (rank < self.unmask_per_step), tokens)

    def run(self, key, predictor, process, x_init, cond):
        process.check_tokens(x_init, "x_init")

        def step(x, i):
            t = process.num_masked(x)
            logits = _logits(predictor, process, x, t, cond)
            return self.update(jax.random.fold_in(key, i), logits, x, process), None

        steps = self.num_steps(process)
        x, _ = jax.lax.scan(step, x_init, jnp.arange(steps))
        return x, {"nfe": jnp.asarray(steps, jnp.int32)}


@dataclasses.dataclass(frozen=True)
class EditReverse(Sampler):
    """Su's reverse for the `edit` process, article (十一) item 3, and the UDM baseline of article (十).

    `reverse="deterministic"` (Su): from `x_T` (L uniform tokens), for t = L..1 predict `x̂_0` constrained to
    differ from `x_t` in exactly t positions, pick one differing position at random and copy `x̂_0`'s token
    there. This is `x_{t-1} = F_{t-1}(x̂_0, F_t^{-1}(x̂_0, x_t))`: the inferred edits are kept but one.
    Only the per-position law of `x̂_0` enters one step, so the constraint is applied through the marginals
    `p_i = softmax(logits_i / temperature)` (see `move_probs`): position i is chosen with probability
    proportional to `1 - p_i(x_t,i)`, the chance that it was edited (`select="sample"`), or uniformly among
    the t positions with the smallest `p_i(x_t,i)` (`select="greedy"`); its new token is drawn from `p_i`
    restricted to tokens other than `x_t,i`. With the exact marginals of `p(x_0 | x_t)` the probabilities
    `1 - p_i(x_t,i)` sum to t, and `select="sample"` is exactly "draw x̂_0 from the true posterior, then a
    uniform differing position": from `x_T ~ p(x_T)` the sampler returns the data law exactly.

    `reverse="baseline"`: `x̂_0` is drawn independently per position from `p_i`, then re-corrupted with fresh
    noise, `x_{t-1} = F_{t-1}(x̂_0, eps')`; the last step returns `x̂_0`.

    Attributes:
        reverse: `deterministic` or `baseline`.
        select: `sample` or `greedy` (deterministic reverse only).
        temperature: divides the logits.
    """

    reverse: str = "deterministic"
    select: str = "sample"
    temperature: float = 1.0

    name = "edit"

    def validate(self, process, predictor) -> None:
        _check_token_predictor(self.name, process, predictor, Edit, self.temperature)
        check_choice("edit reverse", self.reverse, REVERSES)
        check_choice("edit select", self.select, SELECTS)

    def move_probs(self, logits, x, t):
        """The law of one deterministic step, `(B, L, V)`: the probability of setting position i to token v.

        `P(i, v) = w_i / sum_j w_j * p_i(v) [v != x_i] / (1 - p_i(x_i))`, with `w_i = 1 - p_i(x_i)` for
        `select="sample"` and `w_i = [i among the t smallest p_j(x_j)]` for `greedy`. Degenerate rows (all
        `w_i = 0`, or `p_i(x_i) = 1`) fall back to uniform choices, so every row is a distribution.
        """
        p = jax.nn.softmax(logits / self.temperature, axis=-1)
        same = jax.nn.one_hot(x, p.shape[-1], dtype=bool)
        keep = jnp.sum(jnp.where(same, p, 0.0), axis=-1)  # p_i(x_t,i)
        if self.select == "sample":
            weight = 1.0 - keep
        else:
            rank = jnp.argsort(jnp.argsort(keep, axis=-1, stable=True), axis=-1)
            weight = (rank < jnp.asarray(t)[:, None]).astype(p.dtype)
        total = jnp.sum(weight, axis=-1, keepdims=True)
        where_pos = jnp.where(total > 0, weight / jnp.where(total > 0, total, 1.0), 1.0 / x.shape[-1])
        other = jnp.where(same, 0.0, p)
        mass = jnp.sum(other, axis=-1, keepdims=True)
        uniform_other = jnp.where(same, 0.0, 1.0 / (p.shape[-1] - 1))
        token = jnp.where(mass > 0, other / jnp.where(mass > 0, mass, 1.0), uniform_other)
        return where_pos[..., None] * token

    def update(self, key, logits, x, t, process):
        """One reverse step `x_t -> x_{t-1}` from the logits at `(x_t, t)`."""
        if self.reverse == "baseline":
            k_x0, k_noise = jax.random.split(key)
            x0_hat = jax.random.categorical(k_x0, logits / self.temperature, axis=-1).astype(x.dtype)
            return process.corrupt(x0_hat, t - 1, process.sample_noise(k_noise, x.shape))
        probs = self.move_probs(logits, x, t)
        flat = jnp.log(probs.reshape(x.shape[0], -1))
        move = jax.random.categorical(key, flat, axis=-1)
        position, token = move // probs.shape[-1], move % probs.shape[-1]
        chosen = jnp.arange(x.shape[-1])[None, :] == position[:, None]
        return _set_tokens(x, chosen, token[:, None])

    def run(self, key, predictor, process, x_init, cond):
        process.check_tokens(x_init, "x_init")
        L = process.seq_len

        def step(x, i):
            t = jnp.full((x.shape[0],), L - i, jnp.int32)
            logits = _logits(predictor, process, x, t, cond)
            return self.update(jax.random.fold_in(key, i), logits, x, t, process), None

        x, _ = jax.lax.scan(step, x_init, jnp.arange(L))
        return x, {"nfe": jnp.asarray(L, jnp.int32)}
