"""A CPU host's cores as XLA devices, so that the data-parallel mesh keeps every core busy.

XLA:CPU runs a program's operations one after another and splits an operation over the cores only in part:
on a 2-core machine the digits U-Net's train step kept about 1.3 of the 2 cores busy. Declaring the cores as
separate CPU devices (`jax_num_cpu_devices`) lets the runner's mesh split every batch over them, as it would
over GPUs, and the halves of the step then run at the same time (bench/README.md, lever "host devices").
That pays for convolutional networks, whose large operations leave cores idle; a small MLP or transformer step
is dominated by the devices' synchronisation instead (the demo's MLP ran at 0.3-0.5x on 2 devices), so the
automatic choice splits only for the U-Net. Accelerator hosts are unaffected: their CPU devices are not the
default backend.

The count must be set before JAX starts its backends, so the CLI calls `configure_cpu_devices` first thing.
"""

from __future__ import annotations

import os

import jax

# More devices than this splits a batch into slivers too small to keep a core's vector units fed.
MAX_AUTO_DEVICES = 8
# The networks whose train step gains from one device per core (measured: the digits U-Net 1.8x on 2 cores).
SPLIT_MODELS = ("unet",)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def auto_device_count(batch_size: int | None = None, cores: int | None = None, model: str | None = None) -> int:
    """The largest count up to `min(cores, MAX_AUTO_DEVICES)` that divides `batch_size` (any, when None);
    1 for a `model` name outside `SPLIT_MODELS` (None: any model)."""
    if model is not None and model not in SPLIT_MODELS:
        return 1
    limit = max(1, min(usable_cores() if cores is None else cores, MAX_AUTO_DEVICES))
    if batch_size is None:
        return limit
    return max(n for n in range(1, limit + 1) if batch_size % n == 0)


def device_count_is_set() -> bool:
    """Whether the user already chose the CPU device count (XLA_FLAGS or JAX_NUM_CPU_DEVICES)."""
    return (
        "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "") or "JAX_NUM_CPU_DEVICES" in os.environ
    )


def configure_cpu_devices(
    requested: str | int = "auto", batch_size: int | None = None, model: str | None = None
) -> int | None:
    """Sets the number of CPU devices before JAX starts; returns the count set, or None when left alone.

    Args:
        requested: `"auto"` (one device per usable core, at most `MAX_AUTO_DEVICES`, dividing `batch_size`;
            one device for a `model` outside `SPLIT_MODELS`), or a positive count. `"auto"` leaves a count
            set in the environment alone, and does nothing once JAX's backends are running.
        batch_size: the global batch the devices will split.
        model: the network's name (`config.model.name`), for `"auto"`.

    Raises:
        ValueError: for a count that is not a positive integer or does not divide `batch_size`, or when a
            count is asked for after JAX's backends have started.
    """
    if requested == "auto":
        if device_count_is_set():
            return None
        count = auto_device_count(batch_size, model=model)
    else:
        try:
            count = int(requested)
        except (TypeError, ValueError):
            count = 0
        if count < 1:
            raise ValueError(f"--cpu_devices={requested!r}: use 'auto' or a positive integer (1: one device)")
        if batch_size is not None and batch_size % count:
            raise ValueError(
                f"--cpu_devices={count} does not divide training.batch_size={batch_size}; use a divisor of it or 'auto'"
            )
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError as e:  # the backends are already running
        if requested == "auto":
            return None
        raise ValueError(
            f"--cpu_devices={count}: JAX has already started; set it before any JAX computation "
            f"(or export JAX_NUM_CPU_DEVICES={count})"
        ) from e
    return count
