"""Spherical interpolation of prior noises, article (四)."""

from __future__ import annotations

import jax.numpy as jnp


def slerp(z1, z2, lam):
    """Interpolates two prior noises as `z = z1 cos(lam pi/2) + z2 sin(lam pi/2)` (article (四)).

    For independent `z1, z2 ~ N(0, I)` every `z` is again `N(0, I)` (cos^2 + sin^2 = 1), so each point of
    the path is a typical prior draw; `lam` = 0 gives `z1` and `lam` = 1 gives `z2`. `lam` may be an array
    of shape `(n,)`, giving `n` interpolants stacked on a new leading axis.
    """
    lam = jnp.asarray(lam, dtype=jnp.result_type(z1))
    angle = lam * (jnp.pi / 2)
    if lam.ndim == 0:
        return jnp.cos(angle) * z1 + jnp.sin(angle) * z2
    angle = angle.reshape(angle.shape + (1,) * jnp.ndim(z1))
    return jnp.cos(angle) * z1[None] + jnp.sin(angle) * z2[None]
