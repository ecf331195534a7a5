"""Timing on a shared, drifting CPU: compile apart from run, interleaved passes, medians, memory figures."""

from __future__ import annotations

import dataclasses
import os
import resource
import statistics
import time
from collections.abc import Callable

import jax


@dataclasses.dataclass
class Workload:
    """One thing to time: `run()` does one unit of work and waits for it (`block_until_ready`).

    `units` says how many of what one run does (e.g. 1000 sampler steps, or 128 images), so rates are
    `units / seconds`. `compile_s` is the time spent compiling before the first run, reported apart; `info`
    holds what the workload reports besides time (FLOPs, memory, parameter counts).
    """

    name: str
    run: Callable[[], object]
    units: float = 1.0
    compile_s: float = 0.0
    info: dict = dataclasses.field(default_factory=dict)


def timed(fn: Callable[[], object]) -> float:
    """Seconds for one call of `fn`, waiting for every array it returns."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


SETTLE_S = 0.5


def interleave(
    workloads: dict[str, Callable[[], float]], passes: int, settle_s: float = SETTLE_S
) -> dict[str, list[float]]:
    """Calls each `measure()` (which returns seconds) once per pass, in turn, `passes` times.

    Taking turns within a pass, rather than all of one then all of the other, spreads the machine's
    drift and other users' load over every contender alike; compare medians of the returned lists.
    Each call waits `settle_s` first: torch's OpenMP workers (and XLA's) keep spinning for a while after
    their work, and would otherwise take the cores from whichever contender runs next.
    """
    times = {name: [] for name in workloads}
    for _ in range(passes):
        for name, measure in workloads.items():
            time.sleep(settle_s)
            times[name].append(measure())
    return times


def median(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def spread(values) -> float:
    """The relative half-range of `values` around their median: how much to trust a ratio of medians."""
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return 0.0
    mid = statistics.median(values)
    return (max(values) - min(values)) / (2 * mid) if mid else 0.0


def compile_jitted(jitted, *args):
    """`(compiled, seconds)`: lowers and compiles `jitted` for `args` ahead of time, timing only that."""
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - start


def flops(compiled) -> float | None:
    """XLA's FLOP count for one call of a compiled program (`cost_analysis()["flops"]`), or None."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # not every backend or version reports it
        return None
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else {}
    value = (cost or {}).get("flops")
    return float(value) if value is not None and value >= 0 else None


def memory(compiled) -> dict:
    """XLA's buffer sizes for one call (MiB): arguments, outputs, temporaries, and their peak `arguments +
    outputs + temporaries - aliased` (donated buffers are counted once)."""
    try:
        stats = compiled.memory_analysis()
    except Exception:
        stats = None
    if stats is None:
        return {}
    mib = 1.0 / 2**20
    out = {
        "argument_mib": stats.argument_size_in_bytes * mib,
        "output_mib": stats.output_size_in_bytes * mib,
        "temp_mib": stats.temp_size_in_bytes * mib,
        "alias_mib": stats.alias_size_in_bytes * mib,
    }
    out["peak_mib"] = out["argument_mib"] + out["output_mib"] + out["temp_mib"] - out["alias_mib"]
    return out


def rss_mib() -> dict:
    """The process's resident memory now and its peak so far (MiB), from /proc and getrusage."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        now = pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        now = float("nan")
    return {"rss_mib": now, "peak_rss_mib": peak}


def mfu(flops_per_step: float | None, seconds: float, peak_tflops: float | None) -> float | None:
    """Model FLOP utilisation: achieved FLOP/s over the device's peak (`peak_tflops` * 1e12), or None."""
    if not flops_per_step or not peak_tflops or not seconds or seconds != seconds:
        return None
    return flops_per_step / seconds / (peak_tflops * 1e12)
