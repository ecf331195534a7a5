"""The device mesh, shardings, and global batches built from process-local data.

The mesh has two axes, `("data", "fsdp")`, of sizes `(devices / fsdp, fsdp)` (`training.fsdp`; 1, the
default, keeps every parameter whole on every device). The batch is split over both axes, so every device
holds `batch / devices` rows. Large state leaves (parameters, EMA, optimizer moments) are split along one axis
over `fsdp` and replicated over `data`: memory for them drops by `fsdp`, and XLA inserts the all-gathers before
use and the reduce-scatters of the gradients (pjit semantics; nothing is written by hand).

The devices are laid out in `jax.devices()` order, row-major: each process's devices are consecutive, so its
rows of the batch are one contiguous slice (what `make_array_from_process_local_data` expects), and when
`fsdp` divides the number of devices per process, a parameter's shards stay inside one host.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
AXES = (DATA_AXIS, FSDP_AXIS)


def make_mesh(devices=None, *, fsdp: int = 1) -> Mesh:
    """A `(devices / fsdp, fsdp)` mesh named `("data", "fsdp")` over `devices` (default: all, of all processes).

    Raises:
        ValueError: when `fsdp` is not a positive divisor of the device count; the message names the fix.
    """
    devices = np.asarray(jax.devices() if devices is None else devices).reshape(-1)
    n = devices.size
    if isinstance(fsdp, bool) or not isinstance(fsdp, int | np.integer) or fsdp < 1 or n % fsdp:
        divisors = [d for d in range(1, n + 1) if n % d == 0]
        raise ValueError(f"training.fsdp={fsdp} does not divide the {n} devices; set it to one of "
                         f"{', '.join(map(str, divisors))} (--config.training.fsdp=1 replicates the parameters)")
    return Mesh(devices.reshape(n // fsdp, fsdp), AXES)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The leading (batch) axis split over every mesh axis: `batch / devices` rows per device."""
    return NamedSharding(mesh, PartitionSpec(tuple(mesh.axis_names)))


def fsdp_size(mesh: Mesh) -> int:
    """The number of devices one parameter is split over (1 when the mesh has no `fsdp` axis)."""
    return int(mesh.shape.get(FSDP_AXIS, 1))


def fsdp_spec(shape, fsdp: int, min_size: int) -> PartitionSpec:
    """Where a leaf of `shape` is split: its largest axis divisible by `fsdp` (the first of equals), over `fsdp`.

    Leaves with fewer than `min_size` elements, or with no axis divisible by `fsdp`, stay replicated:
    gathering them would cost more latency than their memory is worth.
    """
    shape = tuple(shape)
    if fsdp == 1 or math.prod(shape) < max(min_size, 1):
        return PartitionSpec()
    candidates = [i for i, size in enumerate(shape) if size % fsdp == 0]
    if not candidates:
        return PartitionSpec()
    axis = max(candidates, key=lambda i: (shape[i], -i))
    return PartitionSpec(*([None] * axis), FSDP_AXIS)


def state_shardings(abstract_state, mesh: Mesh, *, min_size: int):
    """A `NamedSharding` per leaf of `abstract_state` (anything with `.shape`): `fsdp_spec` over `mesh`.

    The rule depends only on each leaf's shape, so the parameters, their EMA and the optimizer's moments
    of one weight are split alike, and the step's elementwise updates need no communication.
    """
    fsdp = fsdp_size(mesh)
    return jax.tree.map(lambda leaf: NamedSharding(mesh, fsdp_spec(leaf.shape, fsdp, min_size)), abstract_state)


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """The global batch must split evenly over the devices (and so over the processes)."""
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(f"training.batch_size={batch_size} is not divisible by the {n} devices; "
                         f"use a multiple of {n}")


def check_grad_shards(grad_shards: int, mesh: Mesh) -> None:
    """Fixed-order gradient shards must split evenly over the devices."""
    n = mesh.devices.size
    if grad_shards and grad_shards % n:
        raise ValueError(f"training.grad_shards={grad_shards} is not divisible by the {n} devices; "
                         f"use a multiple of {n} (or 0)")


def global_batch(local: dict, mesh: Mesh) -> dict:
    """A global array per key from this process's rows (`jax.make_array_from_process_local_data`)."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()}


def padded_batch(batch_size: int, mesh: Mesh) -> int:
    """`batch_size` rounded up to a multiple of the device count (sampling pads, then drops the extra rows)."""
    n = mesh.devices.size
    return -(-batch_size // n) * n
