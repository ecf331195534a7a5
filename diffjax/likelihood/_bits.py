"""Bits per dimension of 8-bit data from the PF-ODE likelihood, by uniform dequantisation (article (六))."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ._ode import log_likelihood


def check_grid(x, num_bins: int, data_range) -> tuple[float, float]:
    """Raises `ValueError` unless `x` holds `num_bins`-level data scaled to `data_range`; returns `(lo, hi)`.

    The levels are `lo + (hi - lo) k / (num_bins - 1)`, k = 0..num_bins-1 (uint8 `[0, 255]` becomes
    `x / 127.5 - 1`). Values are checked only when `x` is concrete (not inside a caller's `jit`).
    """
    if int(num_bins) != num_bins or num_bins < 2:
        raise ValueError(f"num_bins must be an integer >= 2, got {num_bins}")
    lo, hi = (float(v) for v in data_range)
    if not lo < hi:
        raise ValueError(f"data_range must be (low, high) with low < high, got {tuple(data_range)}")
    if isinstance(x, jax.core.Tracer):
        return lo, hi
    levels = (np.asarray(x, np.float64) - lo) / (hi - lo) * (num_bins - 1)
    if levels.size and (
        levels.min() < -1e-3 or levels.max() > num_bins - 1 + 1e-3 or np.abs(levels - np.round(levels)).max() > 1e-2
    ):
        raise ValueError(
            f"data must be {num_bins}-level values scaled to data_range {(lo, hi)}, i.e. "
            f"lo + (hi - lo) k / {num_bins - 1} (uint8 images: x / 127.5 - 1); found values off that grid"
        )
    return lo, hi


def to_bins(x, num_bins: int, lo: float, hi: float):
    """The integer level `k` of each value of `x` on the grid `lo + (hi - lo) k / (num_bins - 1)`."""
    return jnp.round((x - lo) / (hi - lo) * (num_bins - 1))


def bits_per_dim(
    key,
    predictor,
    process,
    images,
    *,
    num_bins: int = 256,
    data_range=(-1.0, 1.0),
    return_info: bool = False,
    **likelihood_knobs,
):
    """Bits per dimension of discrete data under the PF-ODE model, with uniform dequantisation.

    Each level `k` of `images` (scaled as the model was trained: `lo + (hi - lo) k / (num_bins - 1)`) owns
    the cell `[k, k + 1) / num_bins` of `[0, 1]`; one uniform draw `u` per value places the model input at
    `z = lo + (hi - lo) (k + u) / num_bins`, so the cells tile `[lo, hi]`. Jensen's inequality over `u` and
    the change of variables `y = (z - lo)/(hi - lo)` (log-Jacobian `-d log(hi - lo)`) bound the discrete
    negative log-likelihood:

        -log P(k) <= E_u[-log p_z(z)] - d log((hi - lo) / num_bins),

    reported as `(-log p_z(z) - d log((hi - lo)/num_bins)) / (d ln 2)`: one Monte-Carlo draw of the bound
    per example (for `[-1, 1]` and 256 bins, `-log p_z / (d ln 2) + 7`). `log p_z` is `log_likelihood`'s
    `log p_{t_min}` (see there for what is and is not corrected).

    Args:
        key: PRNG key, split into the dequantisation noise and the likelihood's probes.
        predictor, process: as for `log_likelihood`.
        images: `(batch, ...)` data on the `num_bins`-level grid of `data_range`.
        num_bins: the number of levels per value (256 for 8-bit data).
        data_range: `(lo, hi)`, the range the model was trained on.
        return_info: also return the likelihood's info plus `log_likelihood` (nats of `z`) and `dequantized`
            (the model inputs `z`).
        **likelihood_knobs: passed to `log_likelihood` (divergence, probe, num_probes, solver, rtol, atol,
            max_steps, cond).

    Raises:
        ValueError: for data off the grid (e.g. raw uint8 values), or anything `log_likelihood` rejects.
    """
    lo, hi = check_grid(images, num_bins, data_range)
    images = jnp.asarray(images)
    dtype = images.dtype if jnp.issubdtype(images.dtype, jnp.floating) else jnp.result_type(float)
    key_u, key_ll = jax.random.split(key)
    u = jax.random.uniform(key_u, images.shape, dtype)
    z = lo + (hi - lo) * (to_bins(images.astype(dtype), num_bins, lo, hi) + u) / num_bins
    logp, info = log_likelihood(key_ll, predictor, process, z, return_info=True, **likelihood_knobs)
    d = math.prod(images.shape[1:])
    bpd = -(logp + d * math.log((hi - lo) / num_bins)) / (d * math.log(2.0))
    return (bpd, {**info, "log_likelihood": logp, "dequantized": z}) if return_info else bpd
