"""Sample metrics for the 2-D toy sets: distances to fresh data draws, and the data log-density where exact."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..testing import mmd, sliced_wasserstein


def toy_metrics(key, samples, ds, *, num_reference: int | None = None, num_projections: int = 256) -> dict:
    """Compares `samples` `(n, d)` with `num_reference` (default `n`) fresh draws from `ds`.

    Returns a dict of Python floats:

    * `sliced_w1`: the sliced 1-Wasserstein distance (`diffjax.testing.sliced_wasserstein`);
    * `mmd`: the unbiased squared MMD with a sum of Gaussian kernels (`diffjax.testing.mmd`); it fluctuates
      around zero when the laws agree;
    * `nll` (only where `ds.log_prob` is exact): `-mean_i log p_data(x_i)`, the cross-entropy of the data
      density under the sample law, in nats per sample. It asks whether samples land where the data is dense,
      not whether they cover it: a sampler collapsed onto the modes scores better than the data's own entropy,
      so read it with the two distances. Off a bounded support (checkerboard) it is `inf`;
    * `in_support` (with `nll`): the fraction of samples with finite data log-density.

    Both distances have a sampling noise floor set by `n`: compare a model against the data-vs-data value.
    """
    samples = jnp.asarray(samples, dtype=jnp.float32)
    if samples.ndim != 2 or samples.shape[1:] != tuple(ds.data_shape):
        raise ValueError(f"samples must be (n, {', '.join(map(str, ds.data_shape))}), got {samples.shape}")
    k_ref, k_proj = jax.random.split(key)
    reference = jnp.asarray(ds.sample_reference(k_ref, num_reference or samples.shape[0]))
    out = {
        "sliced_w1": float(sliced_wasserstein(k_proj, samples, reference, num_projections=num_projections, p=1)),
        "mmd": float(mmd(samples, reference)),
    }
    if ds.log_prob is not None:
        log_p = np.asarray(jax.device_get(ds.log_prob(samples)), dtype=np.float64)
        out["nll"] = float(-log_p.mean())
        out["in_support"] = float(np.isfinite(log_p).mean())
    return out
