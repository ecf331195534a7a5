"""The host loop: `train_and_evaluate(config, workdir)` trains, checkpoints, samples and evaluates.

Sections, in order: validate the config (nothing compiled yet) -> record the run in the workdir ->
shapes by `eval_shape` -> a state initialised already sharded (or restored into those shardings) -> the
donated, jitted step over a `data` mesh -> the loop (metrics fetched every `log_every` steps and checked
for NaN/Inf; asynchronous checkpoints; SIGTERM/SIGINT save and stop) -> samples and metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import pathlib
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
from ml_collections import ConfigDict

from .. import __version__
from ..config import ConfigError, changed_keys, from_json, to_json
from ..experiment import validate
from . import cpu_convolutions
from . import mesh as mesh_lib
from .checkpoint import Checkpoints, abstract_like
from .optimizer import build_optimizer
from .state import TrainState, ema_decay, init_state
from .step import make_train_step
from .writers import MetricWriter

log = logging.getLogger("diffjax")

# Keys that may differ when a run resumes in the same workdir (they do not change what is trained).
# `training.fsdp*` only lays the same state out differently: a run may resume on another mesh.
RESUMABLE_KEYS = ("training.num_steps", "training.log_every", "training.checkpoint_every",
                  "training.keep_checkpoints", "training.progress_bar", "training.fsdp",
                  "training.cpu_convolutions", "sampling.", "evaluation.", "sampler.")


class NonFiniteError(RuntimeError):
    """A loss or gradient norm that is NaN or Inf; the message names the step and the metric."""


def _git_hash() -> str | None:
    with contextlib.suppress(Exception):
        root = pathlib.Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        if out.returncode == 0:
            return out.stdout.strip()
    return None


def prepare_workdir(config: ConfigDict, workdir: pathlib.Path, *, force: bool = False) -> None:
    """Creates the workdir, refuses one that holds an incompatible config, and records this run."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".write-probe-{jax.process_index()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"workdir {str(workdir)!r} is not writable ({e.strerror}); pass a --workdir you can "
                          "write to") from None
    saved = workdir / "config.json"
    if saved.exists() and not force:
        previous = from_json(saved.read_text())
        differing = [k for k in changed_keys(previous, config) if not k.startswith(RESUMABLE_KEYS)]
        if differing:
            raise ConfigError(f"workdir {str(workdir)!r} holds a run with a different config ({', '.join(differing)}); "
                              "use another --workdir, or pass --force to overwrite its config")
    if jax.process_count() > 1:  # every process has read the old config before process 0 replaces it
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("diffjax: workdir checked")
    if jax.process_index() == 0:
        saved.write_text(to_json(config))
        info = {"diffjax_version": __version__, "git_hash": _git_hash(), "jax_version": jax.__version__,
                "backend": jax.default_backend(), "devices": jax.device_count(), "processes": jax.process_count()}
        (workdir / "run_info.json").write_text(json.dumps(info, indent=2))


class _StopRequest:
    """Turns SIGTERM/SIGINT into a flag the loop checks between steps (preemption)."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def _meta(config: ConfigDict, step: int) -> dict:
    """What a checkpoint records besides the state. Batches are a pure function of `(seed, step)`, so the
    data iterator's whole state is the next step to draw."""
    return {"step": step, "data": {"seed": config.seed, "next_step": step}}


def _check_finite(step: int, metrics: dict, *, skipping: bool = False) -> None:
    for name in ("loss", "grad_norm"):
        value = float(metrics[name])
        if not math.isfinite(value) and skipping:
            log.warning("non-finite %s (%s) at step %d: step skipped (training.skip_nonfinite)", name, value, step)
        elif not math.isfinite(value):
            raise NonFiniteError(f"non-finite {name} ({value}) at step {step}; the last good checkpoint is kept. "
                                 "Lower optimizer.learning_rate, or set training.skip_nonfinite=True to skip "
                                 "such steps")


@dataclasses.dataclass
class TrainResult:
    """What a finished (or stopped) run reports."""

    step: int
    state: TrainState
    stopped_by: str | None
    last_metrics: dict


def state_spec(config: ConfigDict, formulation, dataset, model, mesh):
    """`(init, abstract_state, state_sharding, (optimizer, schedule))`: the state's shapes from
    `eval_shape` and their shardings over `mesh` (leaves of `training.fsdp_min_size` elements or more split over
    its `fsdp` axis, the rest replicated), without allocating anything."""
    optimizer, schedule = build_optimizer(config.optimizer, int(config.training.num_steps))
    tokens = getattr(dataset, "vocab_size", None) is not None  # token sequences feed an embedding
    example_x = jnp.zeros((1, *dataset.data_shape), jnp.int32 if tokens else jnp.float32)
    example_t = jnp.ones((1,), jnp.int32 if getattr(formulation.process, "is_discrete", False) else jnp.float32)
    example_cond = jnp.zeros((1,), jnp.int32) if config.model.class_conditional else None
    init = lambda key: init_state(model, optimizer, key, example_x, example_t, example_cond)  # noqa: E731
    abstract = jax.eval_shape(init, jax.random.key(config.seed))
    state_sharding = mesh_lib.state_shardings(abstract, mesh, min_size=int(config.training.fsdp_min_size))
    return init, abstract, state_sharding, (optimizer, schedule)


def make_mesh(config: ConfigDict):
    """The `("data", "fsdp")` mesh over all devices with `training.fsdp` devices per parameter; a value that
    does not divide the device count is a `ConfigError` (before anything compiles)."""
    try:
        return mesh_lib.make_mesh(fsdp=config.training.fsdp)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def restore_state(config: ConfigDict, workdir: str | pathlib.Path):
    """The newest readable `TrainState` of a run directory, or raises `ConfigError` when it has none."""
    formulation, dataset, model = validate(config)
    mesh = make_mesh(config)
    _, abstract, state_sharding, _ = state_spec(config, formulation, dataset, model, mesh)
    checkpoints = Checkpoints(pathlib.Path(workdir) / "checkpoints", keep=config.training.keep_checkpoints)
    try:
        restored = checkpoints.restore_latest(abstract_like(abstract, state_sharding))
    finally:
        checkpoints.close()
    if restored is None:
        raise ConfigError(f"workdir {str(workdir)!r} has no checkpoint; train first: diffjax train --config ... "
                          f"--workdir {workdir}")
    return restored[0], restored[1]


def train(config: ConfigDict, workdir: str | pathlib.Path, *, force: bool = False, objective=None, dataset=None,
          init_params=None) -> TrainResult:
    """Trains `config` in `workdir`, resuming from its newest readable checkpoint.

    A second training stage (see `training.stages`) replaces parts of what the config builds: `objective` (a
    loss called as the config's would be), `dataset` (same data shape), and `init_params` (a fresh run starts from
    these parameters and EMA instead of a random init; a resumed run ignores them).
    """
    workdir = pathlib.Path(workdir)
    formulation, config_dataset, model = validate(config)
    dataset = config_dataset if dataset is None else dataset
    if objective is not None:
        formulation = dataclasses.replace(formulation, objective=objective)
    mesh = make_mesh(config)
    try:
        mesh_lib.check_batch_size(config.training.batch_size, mesh)
        mesh_lib.check_grad_shards(config.training.grad_shards, mesh)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    prepare_workdir(config, workdir, force=force)
    is_main = jax.process_index() == 0

    # Shapes first, then the state initialised already sharded over the mesh.
    num_steps = int(config.training.num_steps)
    init, abstract, state_sharding, (optimizer, schedule) = state_spec(config, formulation, dataset, model, mesh)
    key = jax.random.key(config.seed)
    checkpoints = Checkpoints(workdir / "checkpoints", keep=config.training.keep_checkpoints)
    restored = checkpoints.restore_latest(abstract_like(abstract, state_sharding))
    if restored is None:
        state = jax.jit(init, out_shardings=state_sharding)(key)
        if init_params is not None:
            params, ema_params = jax.jit(lambda p: (p, jax.tree.map(jnp.copy, p)),  # two buffers: state is donated
                                         out_shardings=(state_sharding.params, state_sharding.ema_params))(init_params)
            state = state.replace(params=params, ema_params=ema_params)
        start = 0
    else:
        start, state, _ = restored
        log.info("resuming from step %d in %s", start, workdir)

    keep_labels = getattr(formulation.objective, "needs_labels", False)  # e.g. a noisy classifier's loss
    step_fn = jax.jit(
        make_train_step(model, formulation.objective, optimizer, schedule, seed=config.seed,
                        ema_decay=ema_decay(config.training.ema_decay, config.training.ema_halflife_images,
                                            config.training.batch_size),
                        skip_nonfinite=config.training.skip_nonfinite,
                        grad_shards=config.training.grad_shards, mesh=mesh,
                        label_dropout=((config.guidance.p_uncond, dataset.num_classes)
                                       if config.guidance.p_uncond > 0 else None)),
        in_shardings=(state_sharding, mesh_lib.batch_sharding(mesh)),
        out_shardings=(state_sharding, mesh_lib.replicated(mesh)),
        donate_argnums=0,
        compiler_options=cpu_convolutions.train_step_options(config.training.cpu_convolutions),
    )

    writer = MetricWriter(workdir, enabled=is_main)
    progress = None
    if is_main and config.training.progress_bar:
        from tqdm import tqdm

        interactive = sys.stderr.isatty()  # in a log file, a line every 30 s rather than every refresh
        progress = tqdm(total=num_steps, initial=start, desc="train", unit="step", dynamic_ncols=interactive,
                        mininterval=0.1 if interactive else 30.0)
    metrics, fetched, stopped_by = {}, {}, None
    step = start
    failed = True
    try:
        with _StopRequest() as stop:
            while step < num_steps:
                if stop.signal is not None:
                    stopped_by = stop.signal
                    break
                local = dataset.batch(step, config.training.batch_size, seed=config.seed,
                                      process_index=jax.process_index(), process_count=jax.process_count())
                if not (config.model.class_conditional or keep_labels):
                    local.pop("label", None)
                previous = metrics
                state, metrics = step_fn(state, mesh_lib.global_batch(local, mesh))
                # At most two steps in flight: the next batch is prepared while a step runs, and the queue of
                # dispatched collectives stays short (a long one deadlocks XLA's CPU collectives).
                jax.block_until_ready(previous)
                step += 1
                last = step == num_steps
                if step % config.training.log_every == 0 or step % config.training.checkpoint_every == 0 or last:
                    fetched = jax.device_get(metrics)
                    _check_finite(step, fetched, skipping=config.training.skip_nonfinite)
                    writer.write(step, fetched)
                    if progress is not None:
                        progress.set_postfix(loss=f"{float(fetched['loss']):.4f}")
                if step % config.training.checkpoint_every == 0 or last:
                    checkpoints.save(step, state, _meta(config, step))
                if progress is not None:
                    progress.update(1)
            if stopped_by is not None and step > start:
                fetched = jax.device_get(metrics)
                _check_finite(step, fetched, skipping=config.training.skip_nonfinite)
                if checkpoints.latest_step() != step:
                    checkpoints.save(step, state, _meta(config, step))
        checkpoints.wait()
        failed = False
    finally:
        if progress is not None:
            progress.close()
        writer.close()
        if not failed:
            checkpoints.close()
        elif jax.process_count() == 1:  # (after a failure a peer may be gone: skip its barriers)
            with contextlib.suppress(Exception):  # the error being raised says more than a second one
                checkpoints.close()
    return TrainResult(step=step, state=state, stopped_by=stopped_by, last_metrics=fetched)


def train_and_evaluate(config: ConfigDict, workdir: str | pathlib.Path, *, force: bool = False) -> dict:
    """Trains, then samples with the EMA weights and evaluates them; importable from notebooks.

    Returns a summary: the final step, the last logged metrics, where samples went and their metrics.
    """
    from ..generate import sample_and_evaluate
    from .stages import has_stages, run_stages

    result = train(config, workdir, force=force)
    summary = {"step": result.step, "stopped_by": result.stopped_by,
               "train": {k: float(v) for k, v in result.last_metrics.items()}}
    if result.stopped_by is None and has_stages(config):
        summary["stages"] = run_stages(config, workdir, result.state, force=force)
        summary["stopped_by"] = summary["stages"].pop("stopped_by", None)
    if summary["stopped_by"] is None:
        # Samples come from the last network trained (a reflow round's), read back from its checkpoint.
        state = None if config.reflow.rounds else result.state
        summary.update(sample_and_evaluate(config, workdir, params_state=state))
    return summary
