"""The device mesh, shardings, and global batches built from process-local data."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    """A one-axis mesh over all devices (of all processes), named `data`."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The leading (batch) axis split over `data`."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


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
