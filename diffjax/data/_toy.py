"""Infinite 2-D toy sets, scaled to lie roughly in [-3, 3] with per-coordinate variance of order one.

* `mixture`: 8 equal-weight isotropic Gaussians of std 0.15 centred on a ring of radius 2 (angles `2 pi k / 8`).
  Exact `log_prob`: the `diffjax.testing` mixture oracle, also exposed as `ds.oracle` (score, posterior, ...).
* `checkerboard`: uniform on the 8 black squares of a 4x4 board of unit squares on `[-2, 2)^2` (the square
  `[0, 1)^2` is black). Exact `log_prob`: `-log 8` on the support, `-inf` off it.
* `swiss_roll`: `(t cos t, t sin t) / 5 + 0.05 N(0, I)` with `t ~ U[1.5 pi, 4.5 pi]`. No closed-form density:
  `log_prob` is None.
* `two_moons`: scikit-learn's two interleaved half circles with noise std 0.1, shifted by `-(0.5, 0.25)` and
  scaled by 1.5. No closed-form density: `log_prob` is None.

Per-coordinate standard deviations: mixture 1.42, checkerboard 1.15, swiss roll about 1.35, two moons about
(1.3, 0.75).
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np

from .._checks import check_choice
from ._base import Dataset, reference_rng

TOYS = ("mixture", "swiss_roll", "checkerboard", "two_moons")

RING_RADIUS, RING_STD, RING_COMPONENTS = 2.0, 0.15, 8

# Rows of a global batch are drawn in chunks keyed by `(seed, step, chunk)`, so a row's value depends on
# neither the batch size nor the process count, and a host draws at most two chunks beyond its own rows.
_CHUNK = 256


def _ring_means() -> np.ndarray:
    angles = 2 * np.pi * np.arange(RING_COMPONENTS) / RING_COMPONENTS
    return RING_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _draw_mixture(rng, n):
    comp = rng.integers(0, RING_COMPONENTS, n)
    return _ring_means()[comp] + RING_STD * rng.standard_normal((n, 2)), comp


def _draw_checkerboard(rng, n):
    col = rng.integers(0, 4, n)
    row = 2 * rng.integers(0, 2, n) + col % 2  # col + row even: a black square
    return np.stack([col, row], axis=1) - 2.0 + rng.random((n, 2)), None


def _draw_swiss_roll(rng, n):
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.random(n))
    return np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / 5.0 + 0.05 * rng.standard_normal((n, 2)), None


def _draw_two_moons(rng, n):
    theta = np.pi * rng.random(n)
    upper = rng.random(n) < 0.5
    outer = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    inner = np.stack([1.0 - np.cos(theta), 0.5 - np.sin(theta)], axis=1)
    x = np.where(upper[:, None], outer, inner) + 0.1 * rng.standard_normal((n, 2))
    return 1.5 * (x - np.array([0.5, 0.25])), None


_DRAW = {"mixture": _draw_mixture, "swiss_roll": _draw_swiss_roll, "checkerboard": _draw_checkerboard,
         "two_moons": _draw_two_moons}


def checkerboard_log_prob(x):
    """The exact checkerboard log-density per row of `x` `(n, 2)`: `-log 8` on the black squares, else `-inf`."""
    x = jnp.asarray(x)
    cell = jnp.floor(x) + 2.0  # 0..3 inside the board
    inside = jnp.all((cell >= 0) & (cell <= 3), axis=-1)
    black = jnp.mod(cell.sum(-1), 2.0) == 0
    return jnp.where(inside & black, -math.log(8.0), -jnp.inf)


class Toy2D(Dataset):
    """An infinite 2-D toy set: every batch is a fresh draw (see the module docstring for the laws).

    Row `r` of batch `step` is a pure function of `(seed, step, r)`, so host slices of one global batch
    are independent rows and concatenate to the single-process batch.
    """

    def __init__(self, toy: str = "mixture"):
        check_choice("toy", toy, TOYS)
        self.name, self.toy = "toy2d", toy
        # The mixture's rows carry their component as a label (8 classes), for conditional models.
        self.data_shape, self.size = (2,), None
        self.num_classes = RING_COMPONENTS if toy == "mixture" else 0

    @functools.cached_property
    def oracle(self):
        """The exact `GaussianMixture` of the `mixture` toy (score, posterior, log-density); None otherwise."""
        if self.toy != "mixture":
            return None
        from ..testing import gaussian_mixture

        return gaussian_mixture(np.full(RING_COMPONENTS, 1.0 / RING_COMPONENTS), _ring_means(), RING_STD)

    @property
    def log_prob(self):
        """`x (n, 2) -> (n,)` exact log-density for `mixture` and `checkerboard`; None for the others."""
        if self.toy == "mixture":
            oracle = self.oracle
            return lambda x: oracle.log_prob(jnp.asarray(x))
        if self.toy == "checkerboard":
            return checkerboard_log_prob
        return None

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` points `(n, 2)` float32 from `rng`."""
        return self.draw_with_labels(rng, n)[0]

    def draw_with_labels(self, rng: np.random.Generator, n: int):
        """`(x (n, 2) float32, labels (n,) int32 or None)`: the mixture's labels are its components."""
        x, labels = _DRAW[self.toy](rng, n)
        return x.astype(np.float32), None if labels is None else labels.astype(np.int32)

    def _rows(self, seed, step, batch_size, lo, hi):
        c0, c1 = lo // _CHUNK, (hi - 1) // _CHUNK
        chunks = [self.draw_with_labels(np.random.default_rng((seed, step, c)), _CHUNK) for c in range(c0, c1 + 1)]
        start = lo - c0 * _CHUNK
        rows = {"x": np.concatenate([x for x, _ in chunks])[start:start + hi - lo]}
        if self.num_classes:
            rows["label"] = np.concatenate([y for _, y in chunks])[start:start + hi - lo]
        return rows

    def arrays(self, n: int = 4096, seed: int = 0) -> dict:
        """`n` fixed rows (the first training batch of `seed`), standing in for a finite split."""
        return self._rows(seed, 0, n, 0, n)

    def sample_reference(self, key_or_seed, n, *, with_labels=False):
        """`n` fresh points, on a random stream apart from every training batch."""
        x, labels = self.draw_with_labels(reference_rng(key_or_seed, tag=0x70E), int(n))
        return (x, labels) if with_labels else x

    def __repr__(self):
        return f"Toy2D(toy={self.toy!r})"
