"""The diffjax side of the bench: train steps, sampler loops, error against NFE and likelihood, as `Workload`s.

Each builder compiles ahead of time (the compile time is reported apart) and returns a `Workload` whose
`run()` does one unit of work: one train step, or one whole sampler loop.
"""

from __future__ import annotations

import itertools
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

import diffjax as dj
from diffjax.config import load_config
from diffjax.experiment import model_fn, validate
from diffjax.models import PRESETS, build_model, count_params
from diffjax.training import cpu_convolutions as cpu_convolutions_lib
from diffjax.training import mesh as mesh_lib
from diffjax.training.host_devices import auto_device_count
from diffjax.training.optimizer import build_optimizer
from diffjax.training.state import ema_decay, init_state
from diffjax.training.step import make_train_step

from .timing import Workload, compile_jitted, flops, memory, timed

ROOT = pathlib.Path(__file__).resolve().parents[1]

# The U-Nets of the runner's `digits` and `cifar10` scales, and the shapes they see.
UNETS = {
    "digits": dict(preset="digits", image_shape=(16, 16, 1), scale="digits"),
    "cifar10": dict(preset="ddpm_cifar10", image_shape=(32, 32, 3), scale="cifar10"),
}
# A U-Net small enough for smoke tests (`--quick`): one level, attention only in the middle, and no dropout,
# whose threefry masks double XLA:CPU's compile time.
TINY_UNET = dict(ch=4, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), num_groups=2, dropout=0.0)


def unet_preset(name: str, quick: bool = False) -> dict:
    """The preset of U-Net `name` (`digits`, `cifar10`), or the tiny one in quick runs."""
    return dict(TINY_UNET) if quick else dict(PRESETS[UNETS[name]["preset"]])


def image_shape(name: str, quick: bool = False) -> tuple[int, int, int]:
    return (8, 8, UNETS[name]["image_shape"][-1]) if quick else UNETS[name]["image_shape"]


def _images(key, shape):
    return jax.random.uniform(key, shape, jnp.float32, -1.0, 1.0)


# ---- training ------------------------------------------------------------------------------------------------
def train_step(
    name: str,
    batch: int,
    *,
    quick: bool = False,
    model_overrides: dict | None = None,
    wrap_model=None,
    num_steps: int = 10_000,
    devices: int | None = None,
    cpu_convolutions: str = "eigen",
) -> Workload:
    """One train step of U-Net `name` as the runner builds it: `make_train_step` with the eps-MSE objective on
    DDPM, the scale's optimizer (`diffjax.training.optimizer`) and EMA, jitted with the state donated, the state
    replicated and the batch split over the first `devices` devices (default: the most that divide the batch, as
    the runner's mesh; on a CPU host the CLI declares one device per core, `diffjax.training.host_devices`).

    `cpu_convolutions` is the runner's `training.cpu_convolutions` (`diffjax.training.cpu_convolutions`).
    `info` holds XLA's FLOPs per step, its buffer sizes and the parameter count. `wrap_model(model)` may
    return a stand-in with the same `init`/`apply` (a local variant of the step, for the levers).
    """
    config = load_config(f"{ROOT / 'configs' / 'ddpm.py'}:{UNETS[name]['scale']}")
    model = build_model("unet", **{**unet_preset(name, quick), **(model_overrides or {})})
    if wrap_model is not None:
        model = wrap_model(model)
    optimizer, schedule = build_optimizer(config.optimizer, num_steps)
    objective = dj.objective("eps_mse", dj.process("ddpm"))
    step = make_train_step(model, objective, optimizer, schedule, seed=0, ema_decay=config.training.ema_decay)
    shape = (batch, *image_shape(name, quick))
    # An rbg key only for the initial weights: threefry initialisers take XLA:CPU long to compile.
    if devices is None:  # as many as divide the batch
        devices = auto_device_count(batch, cores=jax.device_count())
    mesh = mesh_lib.make_mesh(jax.devices()[:devices])
    mesh_lib.check_batch_size(batch, mesh)
    replicated, rows = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
    state = jax.jit(
        lambda key: init_state(model, optimizer, key, jnp.zeros((1, *shape[1:])), jnp.ones((1,), jnp.int32)),
        out_shardings=replicated,
    )(jax.random.key(0, impl="rbg"))
    data = {"x": jax.device_put(_images(jax.random.key(1), shape), rows)}
    jitted = jax.jit(
        step,
        donate_argnums=0,
        in_shardings=(replicated, {"x": rows}),
        out_shardings=(replicated, replicated),
        compiler_options=cpu_convolutions_lib.train_step_options(cpu_convolutions),
    )
    compiled, compile_s = compile_jitted(jitted, state, data)
    holder = {"state": state}

    def run():
        holder["state"], metrics = compiled(holder["state"], data)
        return metrics

    step_flops = flops(compiled)
    info = {
        "batch": batch,
        "devices": mesh.devices.size,
        "image_shape": list(shape[1:]),
        "params": count_params({"params": state.params}),
        # XLA counts one device's share of a partitioned program
        "flops_per_step": None if step_flops is None else step_flops * mesh.devices.size,
        "memory": memory(compiled),
    }
    return Workload(f"train {name} b{batch}", run, units=batch, compile_s=compile_s, info=info)


def demo_train_loop(steps_per_call: int = 1, *, donate: bool = True, quick: bool = False) -> Workload:
    """The train loop of `make demo` (`configs/ddpm.py:digits,cpu`: the residual MLP on digits, batch 128, one
    device, as the CLI runs it) with the host's work included: each `run()` takes the next `steps_per_call`
    batches from the dataset, puts them on the device and runs that many train steps in one jitted call, a
    `lax.scan` over the stacked batches when there are several. `donate=False` compiles the step without
    donating the state. `units` is `steps_per_call`, so rates are steps per second. Quick runs shrink the MLP.
    """
    config = load_config(f"{ROOT / 'configs' / 'ddpm.py'}:digits,cpu")
    if quick:
        config.model.update(hidden=16, depth=1)
        config.training.batch_size = 8
    formulation, dataset, model = validate(config)
    batch = int(config.training.batch_size)
    optimizer, schedule = build_optimizer(config.optimizer, int(config.training.num_steps))
    decay = ema_decay(config.training.ema_decay, config.training.ema_halflife_images, batch)
    step = make_train_step(model, formulation.objective, optimizer, schedule, seed=0, ema_decay=decay)
    device = jax.devices()[0]

    def several_steps(state, batches):
        return jax.lax.scan(step, state, batches)

    jitted = jax.jit(step if steps_per_call == 1 else several_steps, donate_argnums=0 if donate else ())
    example = jnp.zeros((1, *dataset.data_shape))
    state = jax.device_put(init_state(model, optimizer, jax.random.key(0), example, jnp.ones((1,), jnp.int32)), device)
    counter = itertools.count()

    def next_batches():
        xs = [dataset.batch(next(counter), batch, seed=0)["x"] for _ in range(steps_per_call)]
        return {"x": jax.device_put(xs[0] if steps_per_call == 1 else np.stack(xs), device)}

    compiled, compile_s = compile_jitted(jitted, state, next_batches())
    holder = {"state": state}

    def run():
        holder["state"], metrics = compiled(holder["state"], next_batches())
        return metrics

    info = {"batch": batch, "steps_per_call": steps_per_call, "donate": donate, "memory": memory(compiled)}
    return Workload(
        f"demo train loop, {steps_per_call} per call", run, units=steps_per_call, compile_s=compile_s, info=info
    )


# ---- sampler loops -------------------------------------------------------------------------------------------
def trivial_predictor(kind: str = "eps") -> dj.Predictor:
    """The trivial model of the overhead workloads, the same as the peers': `eps = 0.1 x`."""
    return dj.Predictor(_trivial_eps, kind=kind)


def _trivial_eps(x, t):
    return 0.1 * x


def _trivial_denoiser(x, t):
    """`D(x, sigma) = x / (1 + sigma^2)` on EDM's process (t = sigma), as the k-diffusion peer's denoiser."""
    return x / (1.0 + t[:, None, None, None] ** 2)


def unet_predictor(name: str, batch: int, quick: bool = False):
    """The U-Net `name` (random weights) as an eps `Predictor`, its sample shape, and a jitted forward pass."""
    model = build_model("unet", **unet_preset(name, quick))
    shape = (batch, *image_shape(name, quick))
    params = jax.jit(
        lambda key: model.init({"params": key}, jnp.zeros((1, *shape[1:])), jnp.ones((1,), jnp.int32))["params"]
    )(jax.random.key(0, impl="rbg"))
    # Random output layers: zero-initialised ones would make every call return 0.
    params = jax.tree.map(lambda p: p if np.any(np.asarray(p)) else 0.01 * jnp.ones_like(p), params)
    return dj.Predictor(model_fn(model), kind="eps", params=params), shape


def sampler_loop(sampler, process, predictor, shape, *, key_impl: str | None = None, label: str = "") -> Workload:
    """One whole `dj.sample` call (jitted once: the first call's time is the compile time), of `sampler` as
    given: the sampler rows build theirs with `dj.sampler(name, ...)`, so they time its default noise generator
    (`noise_rng="pcg"`), recorded in `info`."""
    # Fresh keys made ahead, as the peers' loops draw from torch's global generator: making a key from an int
    # costs 0.3 ms of host work per call here, which is no part of the sampler.
    base = jax.random.key(1) if key_impl is None else jax.random.key(1, impl=key_impl)
    keys = itertools.cycle(list(jax.random.split(base, 64)))

    def run():
        return dj.sample(next(keys), predictor, process, sampler, shape)

    compile_s = timed(run)
    steps = sampler.steps or process.num_steps
    return Workload(
        label or type(sampler).__name__,
        run,
        units=steps,
        compile_s=compile_s,
        info={
            "shape": list(shape),
            "steps": steps,
            "key_impl": key_impl or "threefry2x32",
            "noise_rng": getattr(sampler, "noise_rng", None),
        },
    )


def forward_pass(predictor: dj.Predictor, shape) -> Workload:
    """One jitted evaluation of the model in `predictor` at `shape` (to subtract from per-step times)."""
    fn = jax.jit(lambda params, x, t: predictor.fn(params, x, t))
    x, t = jnp.zeros(shape), jnp.full((shape[0],), 500, jnp.int32)
    compile_s = timed(lambda: fn(predictor.params, x, t))
    return Workload("forward", lambda: fn(predictor.params, x, t), units=1, compile_s=compile_s)


# ---- error against NFE ---------------------------------------------------------------------------------------
def three_component_mixture():
    """The 2-D Gaussian mixture the sampler tests check laws against (tests/conftest.py)."""
    return dj.testing.gaussian_mixture(
        [0.2, 0.3, 0.5], [[-2.0, -1.0], [0.0, 2.0], [2.0, -0.5]], [[0.3, 0.6], [0.5, 0.25], [0.4, 0.4]]
    )


def nfe_grid(quick: bool) -> dict[str, list]:
    """label -> [(process name, sampler)]: every sampler of `dj.SAMPLERS` over a range of NFE budgets."""
    if quick:
        return {
            "ddim eta=0 (ddpm)": [("ddpm", dj.sampler("ddim", steps=10, spacing="trailing"))],
            "ode adaptive tsit5 (vp)": [("vp", dj.sampler("ode", rtol=1e-3, atol=1e-3))],
        }
    few, sde, tols = (5, 10, 20, 50, 100), (20, 100, 500, 1000), (1e-2, 1e-3, 1e-4, 1e-5)
    return {
        "ancestral (ddpm)": [("ddpm", dj.sampler("ancestral", steps=n, spacing="trailing")) for n in sde],
        "ddim eta=0 (ddpm)": [("ddpm", dj.sampler("ddim", steps=n, spacing="trailing")) for n in few],
        "euler_maruyama (vp)": [("vp", dj.sampler("euler_maruyama", steps=n)) for n in sde],
        "pc (vp)": [("vp", dj.sampler("pc", steps=n)) for n in sde],
        "ode fixed euler (vp)": [("vp", dj.sampler("ode", solver="euler", adaptive=False, steps=n)) for n in few],
        "ode fixed heun (vp)": [("vp", dj.sampler("ode", solver="heun", adaptive=False, steps=n)) for n in few],
        "ode adaptive tsit5 (vp)": [("vp", dj.sampler("ode", rtol=tol, atol=tol)) for tol in tols],
        "heun (vp)": [("vp", dj.sampler("heun", steps=n)) for n in few],
        "euler (vp)": [("vp", dj.sampler("euler", steps=n)) for n in few],
        "dpm_solver (vp)": [("vp", dj.sampler("dpm_solver", steps=n)) for n in few],
    }


def error_vs_nfe(quick: bool = False) -> dict:
    """Sliced-W1 to the mixture for every sampler driven by the mixture's exact eps, against the NFE used.

    The noise floor is the distance between two independent data draws of the same size (its mean and
    spread over a few draws): a sampler whose distance is within it is as good as exact sampling.
    """
    num = 1000 if quick else 4000
    data = three_component_mixture()
    reference = data.sample(jax.random.key(100), num)
    w1 = lambda x: float(dj.testing.sliced_wasserstein(jax.random.key(2), x, reference))  # noqa: E731
    floors = [w1(data.sample(jax.random.key(200 + i), num)) for i in range(2 if quick else 6)]
    rows = []
    for label, entries in nfe_grid(quick).items():
        for process_name, sampler in entries:
            process = dj.process(process_name)
            start = time.perf_counter()
            x, info = dj.sample(
                jax.random.key(4), data.predictor(process), process, sampler, (num, 2), return_info=True
            )
            x = jax.block_until_ready(x)
            rows.append(
                {"sampler": label, "nfe": int(info["nfe"]), "sliced_w1": w1(x), "seconds": time.perf_counter() - start}
            )
    return {
        "num_samples": num,
        "noise_floor": {"mean": float(np.mean(floors)), "std": float(np.std(floors))},
        "rows": rows,
    }


# ---- likelihood ----------------------------------------------------------------------------------------------
def likelihood(quick: bool = False) -> list[dict]:
    """Seconds per example of `dj.log_likelihood`: exact divergence on 2-D data (the mixture's exact score),
    Hutchinson's estimator on digits-shaped data (16x16x1) with the digits U-Net.

    Each is compiled by a first call (reported apart), then timed once more on new points.
    """
    rows = []
    data = three_component_mixture()
    process = dj.process("vp")
    n2 = 64 if quick else 512
    x2 = data.sample(jax.random.key(5), n2)
    rows.append(
        _likelihood_row(
            "exact divergence, 2-D mixture (exact score)",
            data.predictor(process),
            process,
            x2,
            data.sample(jax.random.key(6), n2),
            divergence="exact",
        )
    )
    if quick:  # the U-Net's Hutchinson solve takes long to compile
        return rows
    predictor, shape = unet_predictor("digits", 8)
    x = _images(jax.random.key(7), shape)
    rows.append(
        _likelihood_row(
            f"Hutchinson (1 probe), digits U-Net {shape[1:]}",
            predictor,
            process,
            x,
            _images(jax.random.key(8), shape),
            divergence="hutchinson",
            rtol=1e-3,
            atol=1e-3,
        )
    )
    return rows


def _likelihood_row(label, predictor, process, x_first, x_timed, **options) -> dict:
    start = time.perf_counter()
    jax.block_until_ready(dj.log_likelihood(jax.random.key(0), predictor, process, x_first, **options))
    first = time.perf_counter() - start
    start = time.perf_counter()
    logp, info = dj.log_likelihood(jax.random.key(1), predictor, process, x_timed, return_info=True, **options)
    jax.block_until_ready(logp)
    seconds = time.perf_counter() - start
    return {
        "workload": label,
        "batch": int(x_timed.shape[0]),
        "compile_s": max(first - seconds, 0.0),
        "s_per_example": seconds / x_timed.shape[0],
        "nfe": int(np.max(np.asarray(info["nfe"]))),
        "options": {k: v for k, v in options.items()},
    }
