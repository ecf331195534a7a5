"""Speed levers, each an interleaved A/B within one run: what a change buys, measured where it acts.

Knobs of diffjax are compared through the knob itself (e.g. the samplers' `noise_rng`). Changes that belong
outside the bench (the train loop, other layouts of the noise) are measured here through local variants,
without editing diffjax: a sampler subclass traced while its module's `step_noise` is swapped (so its compiled
program is cached apart), or a train step wrapped differently. Each row says `before`, `after`, their ratio.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import subprocess
import sys
import tempfile
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

import diffjax as dj
from diffjax.models import GroupNorm

from . import workloads
from .timing import Workload, interleave, median, timed

_SAMPLER_MODULES = ("diffjax.samplers._ancestral", "diffjax.samplers._ddim")


# ---- noise generation in the sampler loop ----------------------------------------------------------------------
def flat_normal(key, step, shape, dtype, rng):
    """`step_noise` by threefry drawing a flat vector then reshaping: the same stream laid out in one dimension."""
    return jax.random.normal(jax.random.fold_in(key, step), (math.prod(shape),), dtype).reshape(shape)


@contextlib.contextmanager
def swapped_step_noise(fn):
    """Traces the samplers with `fn` in place of `diffjax.samplers._noise.step_noise` (restored on exit)."""
    modules = [sys.modules[name] for name in _SAMPLER_MODULES]
    saved = [m.step_noise for m in modules]
    for m in modules:
        m.step_noise = fn
    try:
        yield
    finally:
        for m, original in zip(modules, saved, strict=True):
            m.step_noise = original


@contextlib.contextmanager
def threefry_partitionable(value: bool):
    saved = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", value)
    try:
        yield
    finally:
        jax.config.update("jax_threefry_partitionable", saved)


def variant(sampler, tag: str):
    """A copy of `sampler` of a subclass of its own, so `dj.sample` compiles and caches it separately."""
    cls = dataclasses.dataclass(frozen=True)(type(f"{type(sampler).__name__}_{tag}", (type(sampler),), {}))
    return cls(**{f.name: getattr(sampler, f.name) for f in dataclasses.fields(sampler)})


def _loop_in(context_fn, sampler, process, predictor, shape):
    """A sampler loop compiled and run inside `context_fn()` (a patch active while tracing and calling)."""
    with context_fn():
        loop = workloads.sampler_loop(sampler, process, predictor, shape)

    def run():
        with context_fn():
            return loop.run()

    return Workload(loop.name, run, units=loop.units, compile_s=loop.compile_s, info=loop.info)


def noise_levers(quick: bool, passes: int) -> list[dict]:
    """The ancestral loop with its per-step normal draw made in several ways, and with none (ms per step):
    the samplers' `noise_rng` knob (`threefry`, `jax.random.normal` as drawn before, against `pcg`, the
    default), and local variants of the threefry draw (a flat layout, the classic non-partitionable threefry,
    rbg keys)."""
    steps, shape = (20, (4, 8, 8, 3)) if quick else (1000, (64, 32, 32, 3))
    process, predictor = dj.process("ddpm"), workloads.trivial_predictor()
    threefry = dj.sampler("ancestral", steps=steps, noise_rng="threefry")
    before = "threefry (jax.random, shaped)"
    builders = {
        before: lambda: workloads.sampler_loop(threefry, process, predictor, shape),
        "pcg (default)": lambda: workloads.sampler_loop(
            dj.sampler("ancestral", steps=steps), process, predictor, shape
        ),
        "threefry, flat draw": lambda: _loop_in(
            lambda: swapped_step_noise(flat_normal), variant(threefry, "flat"), process, predictor, shape
        ),
        "threefry, not partitionable": lambda: _loop_in(
            lambda: threefry_partitionable(False), variant(threefry, "classic"), process, predictor, shape
        ),
        "threefry, rbg key": lambda: workloads.sampler_loop(threefry, process, predictor, shape, key_impl="rbg"),
        "threefry, unsafe_rbg key": lambda: workloads.sampler_loop(
            threefry, process, predictor, shape, key_impl="unsafe_rbg"
        ),
        "no noise (ddim eta=0, same grid)": lambda: workloads.sampler_loop(
            dj.sampler("ddim", steps=steps, eta=0.0), process, predictor, shape
        ),
    }
    names = (before, "pcg (default)") if quick else tuple(builders)
    loops = {name: builders[name]() for name in names}
    times = interleave({name: (lambda w=w: timed(w.run)) for name, w in loops.items()}, passes)
    ms = {name: 1e3 * median(v) / steps for name, v in times.items()}
    return [
        _row(
            "sampler noise",
            f"ancestral {steps} steps, trivial model, {shape}",
            before,
            ms[before],
            name,
            ms[name],
            "ms/step",
        )
        for name in loops
        if name != before
    ]


# ---- whole-loop jit against a host loop ------------------------------------------------------------------------
def host_loop_lever(quick: bool, passes: int) -> list[dict]:
    """DDIM with a trivial model: one jitted `lax.scan` (dj.sample) against a jitted step called per step."""
    steps, shape = (10, (4, 8, 8, 3)) if quick else (50, (64, 32, 32, 3))
    process, predictor = dj.process("ddpm"), workloads.trivial_predictor()
    sampler = dj.sampler("ddim", steps=steps)
    fused = workloads.sampler_loop(sampler, process, predictor, shape)
    ts = sampler.grid(process)
    coefs = jnp.stack(dj.samplers._base.grid_coefficients(process, ts), axis=1)

    @jax.jit
    def one_step(x, t, coef):
        x0, eps, _ = sampler.predict(predictor, process, x, dj.samplers._base.batched_time(t, x), {})
        return sampler.update(None, 0, x, x0, eps, *coef)

    def host_loop():
        x = sampler.prior(jax.random.key(0), process, shape)  # the fused loop's prior draw (noise_rng)
        for i in range(steps):
            x = one_step(x, ts[i], coefs[i])
        return x

    timed(host_loop)
    times = interleave({"fused": lambda: timed(fused.run), "host": lambda: timed(host_loop)}, passes)
    return [
        _row(
            "whole-loop jit",
            f"ddim {steps} steps, trivial model, {shape}",
            "jitted step in a Python loop",
            1e3 * median(times["host"]) / steps,
            "one jitted lax.scan",
            1e3 * median(times["fused"]) / steps,
            "ms/step",
        )
    ]


# ---- GroupNorm ---------------------------------------------------------------------------------------------------
def group_norm_lever(quick: bool, passes: int) -> list[dict]:
    """Forward + backward of Flax's GroupNorm against diffjax's at the digits U-Net's widest activation."""
    shape, groups = ((4, 8, 8, 16), 4) if quick else ((128, 16, 16, 64), 8)
    x = jax.random.normal(jax.random.key(0), shape)
    rows = []
    fns = {}
    for label, module in (
        ("flax.linen.GroupNorm", nn.GroupNorm(num_groups=groups, epsilon=1e-6)),
        ("diffjax GroupNorm", GroupNorm(groups)),
    ):
        params = module.init(jax.random.key(1), x)
        grad = jax.jit(jax.value_and_grad(lambda p, x, m=module: jnp.sum(jnp.sin(m.apply(p, x))), argnums=(0, 1)))
        timed(lambda g=grad, p=params: g(p, x))
        fns[label] = lambda g=grad, p=params: median([timed(lambda: g(p, x)) for _ in range(5)])
    times = interleave(fns, passes)
    rows.append(
        _row(
            "GroupNorm",
            f"forward+backward {shape}, {groups} groups",
            "flax.linen.GroupNorm",
            1e3 * median(times["flax.linen.GroupNorm"]),
            "diffjax GroupNorm",
            1e3 * median(times["diffjax GroupNorm"]),
            "ms",
        )
    )
    return rows


# ---- convolution layout ------------------------------------------------------------------------------------------
def layout_lever(quick: bool, passes: int) -> list[dict]:
    """A 3x3 convolution's forward + backward in NHWC/HWIO (what the U-Net uses) against NCHW/OIHW."""
    b, s, c = (4, 8, 8) if quick else (32, 32, 128)
    key_x, key_w = jax.random.split(jax.random.key(0))
    fns = {}
    for label, (lhs, rhs, x_shape, w_shape) in {
        "NHWC": ("NHWC", "HWIO", (b, s, s, c), (3, 3, c, c)),
        "NCHW": ("NCHW", "OIHW", (b, c, s, s), (c, c, 3, 3)),
    }.items():
        x, w = jax.random.normal(key_x, x_shape), 0.05 * jax.random.normal(key_w, w_shape)

        def loss(x, w, lhs=lhs, rhs=rhs):
            y = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=(lhs, rhs, lhs))
            return jnp.sum(jnp.square(y))

        grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
        timed(lambda g=grad, x=x, w=w: g(x, w))
        fns[label] = lambda g=grad, x=x, w=w: median([timed(lambda: g(x, w)) for _ in range(3)])
    times = interleave(fns, passes)
    return [
        _row(
            "convolution layout",
            f"3x3 conv forward+backward, batch {b}, {s}x{s}, {c} channels",
            "NCHW",
            1e3 * median(times["NCHW"]),
            "NHWC (used)",
            1e3 * median(times["NHWC"]),
            "ms",
        )
    ]


# ---- train-step packaging: donation, several steps per call, bf16 ---------------------------------------------
@dataclasses.dataclass(frozen=True)
class RbgDropout:
    """A model whose dropout key is turned into an `rbg` key: the local variant of deriving the step's
    dropout key with `impl="rbg"` in training/step.py (threefry masks are slow to compile on XLA:CPU)."""

    model: object

    def init(self, *args, **kwargs):
        return self.model.init(*args, **kwargs)

    def apply(self, variables, *args, rngs=None, **kwargs):
        if rngs and "dropout" in rngs:
            data = jax.random.bits(rngs["dropout"], (4,), jnp.uint32)
            rngs = {**rngs, "dropout": jax.random.wrap_key_data(data, impl="rbg")}
        return self.model.apply(variables, *args, rngs=rngs, **kwargs)


def train_levers(quick: bool, passes: int) -> list[dict]:
    """The digits train step as the runner builds it, against one device (when there are several), XLA:CPU's
    default convolutions (on a CPU host), bfloat16 compute (the `dtype` knob) and rbg dropout masks (a local
    variant): images per second and compile seconds."""
    batch = 2 if quick else 32
    steps = {
        "as is": workloads.train_step("digits", batch, quick=quick),
        "bf16": workloads.train_step("digits", batch, quick=quick, model_overrides={"dtype": "bfloat16"}),
        "rbg": workloads.train_step("digits", batch, quick=quick, wrap_model=RbgDropout),
    }
    if jax.device_count() > 1:  # the batch over every (CPU) device, as the runner's mesh does, against one
        steps["one device"] = workloads.train_step("digits", batch, quick=quick, devices=1)
    if jax.default_backend() == "cpu":  # XLA:CPU's default convolutions (YNNPACK) against Eigen's (the runner's)
        steps["default convolutions"] = workloads.train_step("digits", batch, quick=quick, cpu_convolutions="default")
        if "one device" in steps:
            steps["default convolutions, one device"] = workloads.train_step(
                "digits", batch, quick=quick, devices=1, cpu_convolutions="default"
            )
    times = interleave({name: (lambda w=w: timed(w.run)) for name, w in steps.items()}, passes)
    label = f"digits U-Net train step, batch {batch}"
    img_s = {name: batch / median(v) for name, v in times.items()}
    rows = [
        _row(
            "bfloat16 compute (dtype knob)",
            label,
            "float32",
            img_s["as is"],
            "bfloat16",
            img_s["bf16"],
            "img/s",
            higher_is_better=True,
        ),
        _row(
            "dropout masks from an rbg key (training/step.py)",
            label,
            "threefry",
            img_s["as is"],
            "rbg",
            img_s["rbg"],
            "img/s",
            higher_is_better=True,
        ),
    ]
    if "one device" in steps:
        rows.insert(
            0,
            _row(
                f"host devices: the batch split over {jax.device_count()} {jax.default_backend()} devices "
                "(diffjax.training.host_devices)",
                label,
                "1 device",
                img_s["one device"],
                f"{jax.device_count()} devices",
                img_s["as is"],
                "img/s",
                higher_is_better=True,
            ),
        )
    for suffix, devices in (("", jax.device_count()), (", one device", 1)):
        if f"default convolutions{suffix}" in steps:
            after = "as is" if not suffix else "one device"
            rows.append(
                _row(
                    "CPU convolutions: XLA:CPU's default (YNNPACK) against Eigen's "
                    "(training.cpu_convolutions, diffjax.training.cpu_convolutions)",
                    f"{label}, {devices} device{'s' if devices > 1 else ''}",
                    "default",
                    img_s[f"default convolutions{suffix}"],
                    "eigen",
                    img_s[after],
                    "img/s",
                    higher_is_better=True,
                )
            )
    if jax.config.jax_compilation_cache_dir:  # a cached program's compile time says nothing of the compiler
        return rows
    return rows + [
        _row(
            "compile time: bfloat16",
            label,
            "float32",
            steps["as is"].compile_s,
            "bfloat16",
            steps["bf16"].compile_s,
            "s",
        ),
        _row(
            "compile time: rbg dropout masks",
            label,
            "threefry",
            steps["as is"].compile_s,
            "rbg",
            steps["rbg"].compile_s,
            "s",
        ),
    ]


def train_loop_levers(quick: bool, passes: int) -> list[dict]:
    """The demo's train loop with its host work (`workloads.demo_train_loop`): several train steps per jitted call
    (a `lax.scan` over 4 stacked batches) against one, and the train state donated to the step against copied
    (time per step, and XLA's peak buffer size)."""
    loops = {
        "one per call": workloads.demo_train_loop(1, quick=quick),
        "4 per call": workloads.demo_train_loop(4, quick=quick),
        "copied": workloads.demo_train_loop(1, donate=False, quick=quick),
    }
    steps_per_pass = 8 if quick else 48

    def per_step(loop):
        calls = int(steps_per_pass // loop.units)

        def seconds_per_step():  # as the runner: the next call is dispatched before the last one is waited for
            start, metrics = time.perf_counter(), None
            for _ in range(calls):
                previous, metrics = metrics, loop.run()
                jax.block_until_ready(previous)
            jax.block_until_ready(metrics)
            return (time.perf_counter() - start) / (calls * loop.units)

        return seconds_per_step

    times = interleave({name: per_step(loop) for name, loop in loops.items()}, passes)
    ms = {name: 1e3 * median(v) for name, v in times.items()}
    batch = loops["one per call"].info["batch"]
    label = f"demo train loop (configs/ddpm.py:digits,cpu, MLP, batch {batch}), host work included"
    peak = {name: loop.info["memory"].get("peak_mib") for name, loop in loops.items()}
    return [
        _row("several train steps per jitted call (lax.scan)", label, "one per call", ms["one per call"],
             "4 per call", ms["4 per call"], "ms/step"),
        _row("buffer donation of the train state", label, "copied", ms["copied"], "donated", ms["one per call"],
             "ms/step"),
        _row("buffer donation of the train state: XLA peak", label, "copied", peak["copied"], "donated",
             peak["one per call"], "MiB"),
    ]


def host_overhead_lever(quick: bool, passes: int) -> list[dict]:
    """The host's share of one `dj.sample` call: `sampler.validate` (its checks pull small arrays from the
    device) against a whole 10-step DDIM call on a tiny batch."""
    process, predictor = dj.process("ddpm"), workloads.trivial_predictor()
    sampler = dj.sampler("ddim", steps=10)
    loop = workloads.sampler_loop(sampler, process, predictor, (4, 8, 8, 3))
    times = interleave(
        {"call": lambda: timed(loop.run), "validate": lambda: timed(lambda: sampler.validate(process, predictor))},
        passes * 5,
    )
    return [
        _row(
            "host work per dj.sample call",
            "ddim 10 steps, trivial model, (4, 8, 8, 3)",
            "whole call",
            1e3 * median(times["call"]),
            "of which validate",
            1e3 * median(times["validate"]),
            "ms",
        )
    ]


# ---- persistent compilation cache and XLA flags: fresh processes -----------------------------------------------
_CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
import jax
from bench import workloads
import diffjax as dj
predictor, shape = workloads.unet_predictor("digits", {batch}, {quick})
loop = workloads.sampler_loop(dj.sampler("ddim", steps={steps}), dj.process("ddpm"), predictor, shape)
from bench.timing import timed
times = [timed(loop.run) for _ in range(3)]
print(json.dumps({{"compile_s": loop.compile_s, "run_s": sorted(times)[1]}}))
"""


def _child(env_extra: dict, quick: bool) -> dict:
    code = _CHILD.format(root=str(workloads.ROOT), batch=2 if quick else 16, quick=quick, steps=5 if quick else 20)
    env = {**os.environ, **env_extra}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            import json

            return json.loads(line)
    raise RuntimeError(f"lever child failed: {done.stderr[-2000:]}")


def process_levers(quick: bool, passes: int) -> list[dict]:
    """In fresh processes, the digits U-Net's DDIM sampling program: its compile time without and with a warm
    persistent compilation cache, and its run time under XLA CPU flag sets."""
    label = "ddim sampler, digits U-Net (fresh process)"
    with tempfile.TemporaryDirectory() as cache:
        env = {"JAX_COMPILATION_CACHE_DIR": cache, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
        cold, warm = _child(env, quick), _child(env, quick)
    rows = [
        _row(
            "persistent compilation cache",
            label,
            "cold",
            cold["compile_s"],
            "warm cache",
            warm["compile_s"],
            "compile s",
        )
    ]
    flag_sets = {"XNNPACK off": "--xla_cpu_use_xnnpack=false", "fast math": "--xla_cpu_enable_fast_math=true"}
    if quick:
        flag_sets = dict(list(flag_sets.items())[:1])
    base_flags = os.environ.get("XLA_FLAGS", "")
    runs = {"default flags": lambda: _child({"XLA_FLAGS": base_flags}, quick)["run_s"]}
    for name, flags in flag_sets.items():
        runs[name] = lambda flags=flags: _child({"XLA_FLAGS": f"{base_flags} {flags}".strip()}, quick)["run_s"]
    times = interleave(runs, max(1, passes - 1))
    for name, flags in flag_sets.items():
        rows.append(
            _row(
                "XLA CPU flags",
                f"{label}: {flags}",
                "default flags",
                median(times["default flags"]),
                name,
                median(times[name]),
                "s per loop",
            )
        )
    return rows


def _row(lever, workload, before_label, before, after_label, after, unit, higher_is_better=False) -> dict:
    ratio = (after / before if higher_is_better else before / after) if before and after else float("nan")
    return {
        "lever": lever,
        "workload": workload,
        "before_label": before_label,
        "before": before,
        "after_label": after_label,
        "after": after,
        "unit": unit,
        "ratio": ratio,
    }


LEVERS = (
    noise_levers,
    host_loop_lever,
    host_overhead_lever,
    group_norm_lever,
    layout_lever,
    train_levers,
    train_loop_levers,
    process_levers,
)
QUICK_LEVERS = (noise_levers, host_loop_lever, host_overhead_lever, group_norm_lever, layout_lever, train_loop_levers)


def run(quick: bool = False, passes: int = 3) -> list[dict]:
    """Every lever (in quick runs only those that compile in seconds); one row per comparison."""
    rows = []
    for lever in QUICK_LEVERS if quick else LEVERS:
        new = lever(quick, passes)
        for row in new:
            print(
                f"lever {row['lever']} [{row['workload']}]: {row['before_label']} {row['before']:.4g} -> "
                f"{row['after_label']} {row['after']:.4g} {row['unit']} ({row['ratio']:.2f}x)",
                flush=True,
            )
        rows += new
    return rows
