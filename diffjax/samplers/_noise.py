"""The samplers' noise: standard normal draws from a key, by one of two generators.

Every stochastic sampler draws its step's noise as `step_noise(key, step, ...)`, that is `normal` keyed by
`fold_in(key, step)`, so two samplers given the same key, grid and generator draw the same noise at the same
step (what the identities of articles (四) and (五) compare). The generators, in `NOISE_RNGS`:

* `"pcg"` (the default): a counter-based hash. Each element's 32 random bits are the first output word of the
  PCG4D hash of Jarzynski and Olano [1], a 4-D -> 4-D 32-bit hash they report to pass TestU01's BigCrush, fed
  `(element index, w0, w1, w2)`, where `(w0, w1, w2)` are three words drawn by threefry from the key. The top
  23 bits give a uniform strictly inside (0, 1), `u = (m + 1/2) 2^-23` (never 0 or 1, so never an infinite
  normal), and the normal is `z = sqrt(2) erfinv(2u - 1)` with Giles' single-precision erfinv [2]:
  `w = -log(1 - x^2)`, written `-log(4u(1-u))`, then a degree-8 polynomial in `w - 2.5` for `w < 5` and in
  `sqrt(w) - 3` otherwise, times `x = 2u - 1`. Measured against float64 `sqrt(2) erfinv`, its relative error
  is below 2.9e-7 over all 2^23 values of u. The transform is exactly odd under `u -> 1 - u`, so the law is
  symmetric; its tails stop at |z| = 5.29 (the normal's mass beyond is 1.2e-7).
* `"threefry"`: `jax.random.normal(key, shape, dtype)`, JAX's threefry-2x32 with 20 rounds (about 200
  integer operations per number), bit-identical to plain `jax.random.normal(key, shape, dtype)`.

Cost of one (64, 32, 32, 3) draw (196,608 numbers) inside a jitted `lax.scan`, on a quiet 2-core CPU:
threefry 1.90 ms (0.81 ms of it the bits alone), pcg 0.196 ms (0.04 ms of bits: the transform dominates;
XLA's `lax.erf_inv` in place of the form above costs 0.245 ms). A whole ancestral step of diffusers costs
1.10 ms there.

Reproducibility: `"pcg"` gives the same numbers for the same key, shape and dtype on every run, device count
and sharding, eager or jitted (each element depends only on its flat index and the key; measured bit for bit
on CPU), but its draws differ from `jax.random`'s. The bits are exact integer arithmetic on any backend; the
float transform uses the backend's `log` and `sqrt`, so another backend may differ in the last bits. A draw
holds at most 2^32 numbers. As in any multiply-add hash, an output bit depends only on the input bits at most
16 places above it, so the last of the 23 bits used repeats with period 2^26 in the element index: a 2^-23
effect on u, and only in draws of more than 67M numbers (the bits below, bits 0..8 of the word, are not used;
in float64 draws the last bits of the second word repeat with period 2^20, a 2^-49 effect).

With float64 (under x64) the pcg draw takes the first two output words for a 52-bit uniform and XLA's float64
erfinv, so it has float64 resolution; its u refines the float32 draw's (the same top 23 bits), so the two
draws of one key agree to 1e-7 in the median and 2e-5 at the 99.9th percentile (more in the far tails).
float16 and bfloat16 draws are float32 draws cast down.

References:
    [1] M. Jarzynski and M. Olano, "Hash Functions for GPU Rendering", Journal of Computer Graphics
        Techniques 9(3), 2020.
    [2] M. Giles, "Approximating the erfinv function", GPU Computing Gems, Jade Edition, 2011.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._checks import check_choice

NOISE_RNGS = ("pcg", "threefry")
MAX_ELEMENTS = 2**32  # the element index is one 32-bit word of the hash's input

# Giles' single-precision erfinv [2]: coefficients of p(w - 2.5) for w < 5 and of p(sqrt(w) - 3) otherwise,
# highest degree first.
_ERFINV_CENTRAL = (
    2.81022636e-08,
    3.43273939e-07,
    -3.5233877e-06,
    -4.39150654e-06,
    0.00021858087,
    -0.00125372503,
    -0.00417768164,
    0.246640727,
    1.50140941,
)
_ERFINV_TAIL = (
    -0.000200214257,
    0.000100950558,
    0.00134934322,
    -0.00367342844,
    0.00573950773,
    -0.0076224613,
    0.00943887047,
    1.00167406,
    2.83297682,
)


def normal(key, shape, dtype, rng: str):
    """A standard normal draw of `shape` and floating `dtype` from `key`, by the generator `rng` (see above).

    Raises:
        ValueError: for an unknown `rng`, a dtype that is not floating, or (pcg) more than 2^32 elements.
    """
    check_choice("noise_rng", rng, NOISE_RNGS)
    shape = tuple(int(s) for s in shape)
    dtype = jax.dtypes.canonicalize_dtype(dtype)  # float64 is float32 unless x64 is enabled
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"normal noise needs a floating dtype (e.g. float32), got {dtype}")
    if rng == "threefry":
        return jax.random.normal(key, shape, dtype)
    _check_size(shape)
    return _pcg_normal(key, shape, dtype)


@functools.partial(jax.jit, static_argnames=("shape", "dtype"))
def _pcg_normal(key, shape, dtype):
    # Jitted as one program (inlined under an outer jit) so that an eager call rounds as a compiled one: op by
    # op, the polynomial's multiply-adds would be rounded twice instead of fused.
    if dtype == jnp.float64:
        x, y = pcg4d_bits(key, shape, words=2)
        return _erfinv_normal64(x, y)
    return _giles_normal(_open_unit32(pcg4d_bits(key, shape)[0])).astype(dtype)


def step_noise(key, step, shape, dtype, rng: str):
    """The standard normal draw of sampler step `step`: `normal(fold_in(key, step), shape, dtype, rng)`, so any
    two samplers given the same key, grid and `rng` draw the same noise at the same step."""
    return normal(jax.random.fold_in(key, step), shape, dtype, rng)


def pcg4d_bits(key, shape, words: int = 1):
    """The raw pcg bits: the first `words` (1 to 4) uint32 output words of PCG4D [1] at
    `(flat index, w0, w1, w2)` for every element of `shape`, `(w0, w1, w2)` drawn by threefry from `key`.

    PCG4D, on uint32 arithmetic mod 2^32: `v = 1664525 v + 1013904223`, then a round of
    `x += y w; y += z x; z += x y; w += y z`, then `v ^= v >> 16`, then the round once more.
    """
    shape = tuple(int(s) for s in shape)
    _check_size(shape)
    seeds = jax.random.bits(key, (3,), jnp.uint32)
    return _pcg4d(_flat_index(shape), seeds[0], seeds[1], seeds[2])[:words]


def _check_size(shape):
    if math.prod(shape) > MAX_ELEMENTS:
        raise ValueError(
            f"noise_rng 'pcg' draws at most 2**32 numbers at once, got shape {shape}; draw in smaller "
            "batches or use noise_rng='threefry'"
        )


def _flat_index(shape):
    """Each element's row-major position as uint32, built per axis (`sum_d iota_d stride_d`) so that XLA
    partitions it like any elementwise op when the draw is sharded along any axes (a flat `iota` reshaped is
    partitioned along the leading axis only: sharded along inner axes, every device built the whole array)."""
    index = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):
        index = index + lax.broadcasted_iota(jnp.uint32, shape, axis) * np.uint32(stride % MAX_ELEMENTS)
        stride *= shape[axis]
    return index


def _pcg4d(x, y, z, w):
    multiplier, increment = np.uint32(1664525), np.uint32(1013904223)
    x, y, z, w = (v * multiplier + increment for v in (x, y, z, w))
    x = x + y * w
    y = y + z * x
    z = z + x * y
    w = w + y * z
    x, y, z, w = (v ^ (v >> 16) for v in (x, y, z, w))
    x = x + y * w
    y = y + z * x
    z = z + x * y
    w = w + y * z
    return x, y, z, w


def _open_unit32(bits):
    """`(m + 1/2) 2^-23` from the top 23 bits `m` of `bits`: a float32 uniform strictly inside (0, 1), exact,
    and symmetric (`1 - u` is again on the grid). Built as the float `1.m` minus 1 (5% faster than converting
    `m`), then shifted by half a step."""
    one_m = lax.bitcast_convert_type((bits >> 9) | np.uint32(0x3F800000), jnp.float32)
    return (one_m - np.float32(1.0)) + np.float32(2.0**-24)


def _giles_normal(u):
    """`sqrt(2) erfinv(2u - 1)` in float32 by Giles' approximation [2], for u strictly inside (0, 1)."""
    x = 2.0 * u - 1.0
    w = -jnp.log(4.0 * u * (1.0 - u))
    central = w < 5.0
    s = jnp.where(central, w - 2.5, jnp.sqrt(w) - 3.0)
    p = jnp.where(central, np.float32(_ERFINV_CENTRAL[0]), np.float32(_ERFINV_TAIL[0]))
    for a, b in zip(_ERFINV_CENTRAL[1:], _ERFINV_TAIL[1:], strict=True):
        p = jnp.where(central, np.float32(a), np.float32(b)) + p * s
    return np.float32(math.sqrt(2.0)) * p * x


def _erfinv_normal64(hi, lo):
    """`sqrt(2) erfinv(2u - 1)` in float64, `u = (m + 1/2) 2^-52` with `m` the top 23 bits of `hi` (those of
    the float32 draw) followed by the top 29 bits of `lo`."""
    m = (hi >> 9).astype(jnp.float64) * 2.0**29 + (lo >> 3).astype(jnp.float64)
    x = (2.0 * m + 1.0) * 2.0**-52 - 1.0  # exact: 2m + 1 < 2^53
    return math.sqrt(2.0) * lax.erf_inv(x)
