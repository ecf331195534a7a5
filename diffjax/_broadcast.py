"""Broadcasting of per-example time coefficients against batched arrays."""

from __future__ import annotations

import jax.numpy as jnp


def expand_to(coef, x):
    """Reshapes a scalar or per-example `(B,)` coefficient so it broadcasts against `x` of shape `(B, ...)`."""
    coef = jnp.asarray(coef)
    if coef.ndim == 0:
        return coef
    if coef.ndim != 1 or coef.shape[0] != x.shape[0]:
        raise ValueError(
            f"time coefficient of shape {coef.shape} does not match a batch of shape {x.shape}; "
            "pass t as a scalar or with shape (batch,)"
        )
    return coef.reshape(coef.shape + (1,) * (x.ndim - 1))
