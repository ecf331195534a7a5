"""The Poisson field of a point set in R^{d+1} (article (十三)): stable, chunked sums and PFGM's regression targets.

For sources `y_j` with probabilities `p_j` on the plane z = 0 and a point `(x, z)`, `R_j^2 = ||x - y_j||^2 + z^2`:

    E(x, z) = (1 / S_{d+1}) sum_j p_j (y_j - x, -z) / R_j^{d+1}            (the field, pointing at the data)
    N(x, z) = sum_j w_j (y_j - x, -z),  w_j = p_j R_j^{-(d+1)} / sum_k p_k R_k^{-(d+1)}

`N` is `E` divided by a positive scalar, so it has the same field lines, and its z-component is exactly `-z`.
Both come from the sums `l_j = log p_j - (d+1)/2 log R_j^2`, `L = max_j l_j`, `S = sum_j e^{l_j - L}` and
`V = sum_j e^{l_j - L} (y_j - x)`, accumulated in log-space over chunks of sources (`field_sums`), so that neither
`R^{-(d+1)}` (which under- or overflows for d in the thousands) nor a `(points x sources x d)` array is formed.

PFGM's targets (`poisson_target`) for a point `(x, z)`:

* `normalized_empirical` (official): `sqrt(d) N / (||N|| + gamma)`, with the batch's clean data as sources
  (including the perturbed point's own source). Biased (a normalised Monte-Carlo ratio) but well scaled.
* `unbiased`: `z^d E S_{d+1}`, i.e. `z^d sum_j p_j (y_j - x, -z) / R_j^{d+1}` with `p_j` uniform over the
  sources *other than* the point's own source. Each term is bounded by `p_j` (since `R_j >= z`). With sources
  independent of the point the regression minimiser is `z^d S_{d+1} E` exactly: a positive per-point scale of
  the field, so the field lines are unchanged. (Su's per-pair form `||s + (x - x_0, z) / R_0^{d+1}||^2` with the
  point's own source `x_0` instead regresses onto a posterior mean whose weights carry `R^{-(d+1)}` twice, which
  is not the field.) The mean over sources has the gradient of the per-pair loss averaged over the large batch.
  The scale `z^d` keeps the target bounded, but in high dimension `(z/R)^d` underflows for typical points:
  use it on low-dimensional data.

The network convention (`split_field`, `join_field`): the output has the data's shape with one extra channel on
the last axis, `(B, H, W, C) -> (B, H, W, C + 1)`, `(B, D) -> (B, D + 1)`; the x-part is `out[..., :C]` and the
z-part is the mean of `out[..., C]` over the non-batch axes.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from .._checks import check_choice
from ..green import log_sphere_area
from ..green._exact import check_point_set
from ..predictions import Predictor
from ._process import TARGETS, PoissonProcess


# ---- the network's output convention ---------------------------------------------------------------------------
def field_output_channels(data_shape) -> int:
    """Size of the network output's last axis for data of shape `data_shape` (without batch): `data_shape[-1] + 1`."""
    data_shape = tuple(int(s) for s in data_shape)
    if not data_shape:
        raise ValueError("data_shape must have at least one axis, e.g. (2,) or (8, 8, 1)")
    return data_shape[-1] + 1


def split_field(out):
    """`(f_x, f_z)` from a network output `(B, ..., C + 1)`: `f_x = out[..., :C]`, `f_z` `(B,)` the mean of the last
    channel over the non-batch axes."""
    f_x = out[..., :-1]
    f_z = out[..., -1]
    return f_x, jnp.mean(f_z.reshape(f_z.shape[0], -1), axis=-1)


def join_field(f_x, f_z):
    """The network output `(B, ..., C + 1)` holding `f_x` `(B, ..., C)` and, in every entry of the extra channel,
    `f_z` `(B,)`; `split_field(join_field(f_x, f_z)) == (f_x, f_z)`."""
    f_z = jnp.broadcast_to(jnp.reshape(f_z, (-1,) + (1,) * (f_x.ndim - 1)), f_x.shape[:-1] + (1,))
    return jnp.concatenate([f_x, f_z.astype(f_x.dtype)], axis=-1)


# ---- stable sums over the sources -------------------------------------------------------------------------------
def _block_sums(x, z, sources, log_weights, index, exclude):
    """`(L, S, V)` over one block of sources: `x` `(B, d)`, `z` `(B,)`, `sources` `(C, d)`, `index` `(C,)`."""
    d = x.shape[1]
    diff = sources[None] - x[:, None]  # (B, C, d): y_j - x, formed directly (no cancellation near a source)
    log_r2 = jnp.log(jnp.sum(diff**2, axis=-1) + (z**2)[:, None])
    logits = log_weights[None] - 0.5 * (d + 1) * log_r2
    if exclude is not None:
        logits = jnp.where(index[None] == exclude[:, None], -jnp.inf, logits)
    top = jnp.max(logits, axis=-1)
    safe = jnp.where(jnp.isfinite(top), top, 0.0)
    e = jnp.exp(logits - safe[:, None])
    return top, e.sum(-1), jnp.einsum("bc,bcd->bd", e, diff)


def _merge(acc, block):
    (top_a, s_a, v_a), (top_b, s_b, v_b) = acc, block
    top = jnp.maximum(top_a, top_b)
    safe = jnp.where(jnp.isfinite(top), top, 0.0)
    scale_a, scale_b = jnp.exp(top_a - safe), jnp.exp(top_b - safe)
    return top, scale_a * s_a + scale_b * s_b, scale_a[:, None] * v_a + scale_b[:, None] * v_b


def field_sums(x, z, sources, log_weights=None, *, exclude=None, chunk_size: int | None = None):
    """The log-space sums `(L, S, V)` of the module docstring, over all sources.

    Args:
        x: `(B, d)` points (flattened data).
        z: `(B,)` heights, positive.
        sources: `(N, d)` clean data on the plane z = 0.
        log_weights: `(N,)` log-probabilities of the sources (None: all equal, i.e. zero logits).
        exclude: `(B,)` integer index of a source to leave out for each point (`-1`: none), e.g. its own source.
        chunk_size: sources per block of a `lax.scan` (None: all at once). Memory is `O(B x chunk x d)`; the
            result equals the one-block sums up to rounding.

    Returns:
        `L` `(B,)` (the largest logit), `S` `(B,)` and `V` `(B, d)`.
    """
    n = sources.shape[0]
    log_weights = jnp.zeros((n,), x.dtype) if log_weights is None else jnp.asarray(log_weights, x.dtype)
    index = jnp.arange(n)
    if chunk_size is None or chunk_size >= n:
        return _block_sums(x, z, sources, log_weights, index, exclude)
    chunk = int(chunk_size)
    if chunk < 1:
        raise ValueError(f"chunk_size must be None or a positive integer, got {chunk_size!r}")
    blocks = -(-n // chunk)
    pad = blocks * chunk - n
    sources = jnp.pad(sources, ((0, pad), (0, 0)))
    log_weights = jnp.pad(log_weights, (0, pad), constant_values=-jnp.inf)  # padded sources weigh nothing
    index = jnp.pad(index, (0, pad), constant_values=-2)
    chunks = (sources.reshape(blocks, chunk, -1), log_weights.reshape(blocks, chunk), index.reshape(blocks, chunk))

    def step(acc, block):
        return _merge(acc, _block_sums(x, z, *block, exclude)), None

    b, d = x.shape
    init = (jnp.full((b,), -jnp.inf, x.dtype), jnp.zeros((b,), x.dtype), jnp.zeros((b, d), x.dtype))
    return jax.lax.scan(step, init, chunks)[0]


def normalized_field(x, z, sources, log_weights=None, *, exclude=None, chunk_size=None):
    """`N(x, z) = sum_j w_j (y_j - x, -z)`, `w_j ∝ p_j R_j^{-(d+1)}`: returns `(N_x (B, d), N_z (B,) = -z)`."""
    _, s, v = field_sums(x, z, sources, log_weights, exclude=exclude, chunk_size=chunk_size)
    return v / s[:, None], -z


def normalize(n_x, n_z, gamma: float):
    """PFGM's normalisation `sqrt(d) (N_x, N_z) / (||N|| + gamma)` of a field `(N_x (B, d), N_z (B,))`."""
    d = n_x.shape[1]
    norm = jnp.sqrt(jnp.sum(n_x**2, axis=-1) + n_z**2)
    scale = math.sqrt(d) / (norm + gamma)
    return scale[:, None] * n_x, scale * n_z


def normalized_z_component(f_x, z, gamma: float):
    """The z-component of `sqrt(d) N / (||N|| + gamma)` given its x-part `f_x` `(B, ...)` and `z` (the z_exp trick).

    `N_z = -z` exactly, so with `n = ||f_x|| / sqrt(d) = ||N_x|| / (||N|| + gamma)` and `||N||^2 = ||N_x||^2 + z^2`,
    `||N||` solves `(1 - n^2) ||N||^2 - 2 n^2 gamma ||N|| - n^2 gamma^2 - z^2 = 0`:

        ||N|| = (n^2 gamma + sqrt(n^2 gamma^2 + (1 - n^2) z^2)) / (1 - n^2),   f_z = -sqrt(d) z / (||N|| + gamma).

    For a network that outputs the target form this reproduces its z-component exactly. (The official sampler
    uses the small-z approximation `||N_x|| ~ gamma n / (1 - n)`, `||N|| ~ sqrt(||N_x||^2 + z^2)`, off by a few
    percent at z = 5.) `1 - n^2` is kept at or above the dtype's epsilon, where the network's x-part is too
    long for any field. With `gamma = 0`, `1 - n^2 = z^2 / ||N||^2` is lost to rounding near the data in float32,
    which is why the sampler substitutes only for `gamma > 0` (as the official code).
    """
    flat = f_x.reshape(f_x.shape[0], -1)
    d = flat.shape[1]
    n2 = jnp.sum(flat**2, axis=-1) / d
    gap = jnp.maximum(1.0 - n2, jnp.finfo(flat.dtype).eps)
    norm = (n2 * gamma + jnp.sqrt(n2 * gamma**2 + gap * z**2)) / gap
    return -math.sqrt(d) * z / (norm + gamma)


def poisson_target(
    x,
    z,
    sources,
    *,
    target: str = "normalized_empirical",
    gamma: float = 5.0,
    log_weights=None,
    exclude=None,
    chunk_size=None,
):
    """PFGM's regression target at `(x (B, d), z (B,))` from `sources` `(N, d)`: `(T_x (B, d), T_z (B,))`.

    `normalized_empirical`: `sqrt(d) N / (||N|| + gamma)`. `unbiased`: `z^d sum_j p_j (y_j - x, -z) / R_j^{d+1}`
    with `p_j` uniform over the sources not excluded (or `exp(log_weights)`, which must then sum to one over
    them). See the module docstring.
    """
    check_choice("pfgm target", target, TARGETS)
    top, s, v = field_sums(x, z, sources, log_weights, exclude=exclude, chunk_size=chunk_size)
    if target == "normalized_empirical":
        return normalize(v / s[:, None], -z, gamma)
    d = x.shape[1]
    log_scale = top + d * jnp.log(z)
    if log_weights is None:  # uniform over the sources that are not excluded
        n = sources.shape[0]
        kept = n - (0 if exclude is None else ((exclude >= 0) & (exclude < n)).astype(x.dtype))
        log_scale = log_scale - jnp.log(kept)
    scale = jnp.exp(log_scale)
    return scale[:, None] * v, -scale * z * s


# ---- the exact field of a small point set ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ExactPoissonField:
    """The exact Poisson field of the data `sum_i p_i delta(x - y_i)` (article (十三)); a pytree of its arrays.

    Attributes:
        points: `(K, d)` source points.
        log_weights: `(K,)` their log-probabilities.
    """

    points: jax.Array
    log_weights: jax.Array

    def _flat(self, x, z):
        flat = x.reshape(x.shape[0], -1)
        z = jnp.broadcast_to(jnp.asarray(z, flat.dtype), (flat.shape[0],))
        return flat, z, self.points.astype(flat.dtype), self.log_weights.astype(flat.dtype)

    def field(self, x, z):
        """`E(x, z) = (1/S_{d+1}) sum_i p_i (y_i - x, -z) / R_i^{d+1}`: `(E_x` shaped like `x`, `E_z (B,))`."""
        flat, z, points, log_w = self._flat(x, z)
        d = flat.shape[1]
        top, s, v = field_sums(flat, z, points, log_w)
        scale = jnp.exp(top - log_sphere_area(d + 1))
        return (scale[:, None] * v).reshape(x.shape), -scale * z * s

    def target(self, x, z, target: str = "normalized_empirical", gamma: float = 5.0):
        """PFGM's target form of this field, `(T_x` shaped like `x`, `T_z (B,))` (see `poisson_target`)."""
        flat, z, points, log_w = self._flat(x, z)
        t_x, t_z = poisson_target(flat, z, points, target=target, gamma=gamma, log_weights=log_w)
        return t_x.reshape(x.shape), t_z

    def predictor(self, process: PoissonProcess) -> Predictor:
        """The Bayes-optimal PFGM network for this data on `process`: `dj.Predictor(fn, kind="x0", params=self)`,
        `fn(params, x, t)` returning `join_field(T_x, T_z)` of `process.target` at `z = z_from_network_time(t)`.
        (The kind is nominal: the PFGM sampler reads the output as a field.)"""
        return Predictor(_ExactFieldFn(process), kind="x0", params=self)


@dataclasses.dataclass(frozen=True)
class _ExactFieldFn:
    """`fn(field, x, t)` of an exact-field predictor; hashable, so a sampler compiles once per process."""

    process: PoissonProcess

    def __call__(self, field: ExactPoissonField, x, t, **cond):
        z = self.process.z_from_network_time(t)
        t_x, t_z = field.target(x, z, self.process.target, self.process.gamma)
        return join_field(t_x, t_z)


jax.tree_util.register_dataclass(ExactPoissonField, data_fields=["points", "log_weights"], meta_fields=[])


def exact_poisson_field(points, weights=None) -> ExactPoissonField:
    """The exact Poisson field of the points `(K, d)` (or `(K,)` in 1-D) with probabilities `weights` (default
    uniform); `.field(x, z)`, `.target(x, z, ...)`, `.predictor(process)`."""
    points, weights = check_point_set(points, weights)
    return ExactPoissonField(points, jnp.log(weights))
