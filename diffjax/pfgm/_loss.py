"""PFGM's training loss (article (十三)): regress the network on the (normalised) Poisson field of the batch."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ._field import poisson_target, split_field
from ._process import PoissonProcess


@dataclasses.dataclass(frozen=True)
class PoissonFieldLoss:
    """`E ||f_theta(x, z) - target(x, z)||^2`, summed over the d+1 field dimensions, averaged over the batch.

    Called as `loss(key, apply_fn, params, x0, cond=None)`; `apply_fn(params, x, t)` (or with `cond`) returns the
    field in the network convention of `pfgm.split_field` (one extra channel on the last axis), with
    `t = process.network_time(z)`. Of the batch `x0` (B rows):

    * the first `small_batch` rows (all by default) are perturbed by `process.perturb` (Algorithm 2) and
      regressed; `cond`, when given, is sliced the same way;
    * the first `large_batch` rows (all by default) are the sources of the field target
      (`pfgm.poisson_target` with `process.target`); asking for more rows than the batch has raises
      `ValueError`. The official CIFAR-10 run uses a 4096-row batch and perturbs its first 128 rows
      (`small_batch=128`), so each perturbed point's own source is among the sources. The `unbiased` target leaves
      that own source out (see `pfgm.poisson_target`).

    The target is computed without gradient. Its weights need a `(small x large x d)` computation; `chunk_size`
    splits the sources into blocks of a `lax.scan` so that memory is `O(small x chunk_size x d)`.

    Attributes:
        process: the `PoissonProcess` holding the perturbation and target knobs.
        chunk_size: sources per block (None: all at once).
    """

    process: PoissonProcess = PoissonProcess()
    chunk_size: int | None = None

    def __post_init__(self):
        if not isinstance(self.process, PoissonProcess):
            raise ValueError(
                f"the pfgm loss needs a PoissonProcess (pfgm.PoissonProcess(...)), got {type(self.process).__name__}"
            )
        if self.chunk_size is not None and (int(self.chunk_size) != self.chunk_size or self.chunk_size < 1):
            raise ValueError(f"pfgm chunk_size must be None or a positive integer, got {self.chunk_size!r}")

    def rows(self, batch: int) -> tuple[int, int]:
        """`(small, large)`: the number of perturbed rows and of source rows for a batch of `batch` rows."""
        small = batch if self.process.small_batch is None else int(self.process.small_batch)
        large = batch if self.process.large_batch is None else int(self.process.large_batch)
        for name, rows in (("small_batch", small), ("large_batch", large)):
            if rows > batch:
                raise ValueError(
                    f"pfgm {name}={rows} exceeds the training batch of {batch} rows; raise the batch "
                    f"size or lower {name} (None uses the whole batch)"
                )
        if self.process.target == "unbiased" and large < 2:
            raise ValueError(
                "the pfgm 'unbiased' target leaves each point's own source out, so it needs "
                f"large_batch >= 2 source rows, got {large}"
            )
        return small, large

    def targets(self, key, x0):
        """`(x, z, (T_x, T_z))`: the perturbed rows, their heights and their field targets (no gradient)."""
        x0 = jnp.asarray(x0)
        small, large = self.rows(x0.shape[0])
        x, z = self.process.perturb(key, x0[:small])
        sources = x0[:large].reshape(large, -1)
        exclude = None
        if self.process.target == "unbiased":  # leave each point's own source out: row i is source i
            rows = jnp.arange(small)
            exclude = jnp.where(rows < large, rows, -1)
        t_x, t_z = poisson_target(
            x.reshape(small, -1),
            z,
            sources,
            target=self.process.target,
            gamma=self.process.gamma,
            exclude=exclude,
            chunk_size=self.chunk_size,
        )
        return x, z, jax.lax.stop_gradient((t_x, t_z))

    def __call__(self, key, apply_fn, params, x0, cond=None):
        x, z, (t_x, t_z) = self.targets(key, x0)
        t = self.process.network_time(z)
        if cond is None:
            out = apply_fn(params, x, t)
        else:
            out = apply_fn(params, x, t, jnp.asarray(cond)[: x.shape[0]])
        expected = x.shape[:-1] + (x.shape[-1] + 1,)
        if out.shape != expected:
            raise ValueError(
                f"the pfgm network must return the data shape with one extra channel on the last axis, "
                f"{expected}, got {out.shape}; see pfgm.field_output_channels"
            )
        f_x, f_z = split_field(out)
        per_example = jnp.sum((f_x.reshape(x.shape[0], -1) - t_x) ** 2, axis=-1) + (f_z - t_z) ** 2
        return jnp.mean(per_example)
