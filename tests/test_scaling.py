"""Scaling (docs/scaling.md): FSDP parameter sharding equals replicated training and restores onto another mesh,
sharded sampling equals one device, weak scaling keeps the loss curve, and two processes train with FSDP.

Runs on the 8 fake CPU devices of conftest.py; meshes over fewer devices take the first N of them.
"""

import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from diffjax import cli
from diffjax.config import apply_overrides, load_config
from diffjax.experiment import validate
from diffjax.generate import generate, load_run_config, run_predictor
from diffjax.samplers import sample
from diffjax.training import Checkpoints, restore_state, train
from diffjax.training import mesh as mesh_lib
from diffjax.training.checkpoint import abstract_like
from diffjax.training.loop import state_spec
from diffjax.training.step import make_train_step

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = f"{ROOT / 'configs' / 'ddpm.py'}:toy2d,smoke"
# Toy smoke runs: batch 8 in grad_shards=8 fixed shards (bit-identical on any device count dividing 8), a constant
# learning rate (runs resumed to more steps keep their schedule), every leaf with a divisible axis FSDP-sharded.
RUN = ["optimizer.decay=constant", "training.fsdp_min_size=0", "training.checkpoint_every=2"]


# FSDP against replicated: the global gradient norm (of the gradient clip) is summed over shards in another
# order, so it can differ by one ulp, and the parameters by rounding. Measured over 6 steps: at most 3e-8
# absolute (3e-5 learning rates; relative up to 3e-4 only on elements near 0). Asserted: rtol 1e-5 with a
# floor of 1e-3 learning rates. A sharding bug (wrong rows or keys on a device) moves parameters by whole
# updates, about one learning rate.
FSDP_ATOL = 1e-3 * 1e-3


def _config(*overrides, path=CONFIG):
    return apply_overrides(load_config(path), [*RUN, *overrides])


def _leaves_equal(a, b, rtol=0.0, atol=0.0):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


# --- the FSDP rule and its errors (no compilation) ---------------------------------------------------------------

def test_fsdp_rule_splits_large_leaves_along_their_largest_divisible_axis():
    assert mesh_lib.fsdp_spec((3, 3, 16, 64), 4, 0) == P(None, None, None, "fsdp")
    assert mesh_lib.fsdp_spec((64, 64), 4, 0) == P("fsdp")  # equal axes: the first
    assert mesh_lib.fsdp_spec((64, 6), 4, 0) == P("fsdp")
    assert mesh_lib.fsdp_spec((6, 3), 4, 0) == P()  # nothing divisible: replicated
    assert mesh_lib.fsdp_spec((64, 64), 4, 64 * 64 + 1) == P()  # below the size threshold: replicated
    assert mesh_lib.fsdp_spec((), 4, 0) == P()
    assert mesh_lib.fsdp_spec((64, 64), 1, 0) == P()
    mesh = mesh_lib.make_mesh(fsdp=4)
    assert mesh.axis_names == ("data", "fsdp") and mesh.devices.shape == (2, 4)
    assert mesh_lib.batch_sharding(mesh).spec == P(("data", "fsdp"))
    assert mesh_lib.make_mesh().devices.shape == (8, 1)
    tree = {"w": jax.ShapeDtypeStruct((32, 8), np.float32), "b": jax.ShapeDtypeStruct((3,), np.float32)}
    specs = jax.tree.map(lambda s: s.spec, mesh_lib.state_shardings(tree, mesh, min_size=0))
    assert specs == {"w": P("fsdp"), "b": P()}
    assert mesh_lib.padded_batch(10, mesh) == 16 and mesh_lib.padded_batch(16, mesh) == 16


@pytest.mark.parametrize("fsdp", [3, 0])
def test_fsdp_that_does_not_divide_the_devices_is_one_config_error_line(fsdp, tmp_path, capsys):
    workdir = tmp_path / "w"
    code = cli.main(["train", "--config", CONFIG, "--workdir", str(workdir), f"--config.training.fsdp={fsdp}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"error: training.fsdp={fsdp} does not divide the 8 devices; set it to one of "
                                 "1, 2, 4, 8 (--config.training.fsdp=1 replicates the parameters)"], err
    assert not workdir.exists()  # refused before the workdir, the state or any step was made


# --- FSDP training, checkpoints across meshes ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """In this process (8 devices): `replicated` trains 4 steps with fsdp=1, `fsdp` 2 steps with fsdp=4."""
    root = tmp_path_factory.mktemp("scaling")
    replicated = train(_config("training.num_steps=4"), root / "replicated")
    fsdp = train(_config("training.num_steps=2", "training.fsdp=4"), root / "fsdp")
    return {"replicated": (root / "replicated", replicated.state), "fsdp": (root / "fsdp", fsdp.state)}


def _restore_step(workdir, step, mesh, min_size=0):
    config = load_run_config(workdir)
    formulation, dataset, model = validate(config)
    _, abstract, _, _ = state_spec(config, formulation, dataset, model, mesh)
    checkpoints = Checkpoints(pathlib.Path(workdir) / "checkpoints")
    try:
        state, _ = checkpoints.restore(step, abstract_like(abstract, mesh_lib.state_shardings(abstract, mesh,
                                                                                             min_size=min_size)))
    finally:
        checkpoints.close()
    return state


def test_fsdp_shards_the_state_and_trains_like_replicated(runs):
    """fsdp=4 on 8 devices: parameters, EMA and Adam moments of every leaf with a divisible axis are split in 4
    (about 1/4 of the state's memory per device) and the parameters equal the replicated run's at step 2 to
    rounding (FSDP_ATOL; the gradients themselves are identical, from grad_shards' fixed-order sum)."""
    state = runs["fsdp"][1]
    split = [leaf for leaf in jax.tree.leaves(state) if "fsdp" in leaf.sharding.spec]
    assert {id(leaf) for leaf in split} >= {id(leaf) for leaf in jax.tree.leaves((state.params, state.ema_params))
                                            if any(s % 4 == 0 for s in leaf.shape)}
    for leaf in split:
        assert leaf.addressable_shards[0].data.size * 4 == leaf.size
    total = sum(leaf.size for leaf in jax.tree.leaves(state))
    per_device = sum(leaf.addressable_shards[0].data.size for leaf in jax.tree.leaves(state))
    assert per_device < 0.3 * total
    reference = _restore_step(runs["replicated"][0], 2, mesh_lib.make_mesh())
    _leaves_equal(state.params, reference.params, rtol=1e-5, atol=FSDP_ATOL)
    _leaves_equal(state.opt_state, reference.opt_state, rtol=1e-5, atol=FSDP_ATOL)


def test_fsdp_checkpoint_restores_onto_another_mesh(runs):
    """The fsdp=4 checkpoint of 8 devices restores onto 2 devices replicated and onto 8 devices with fsdp=2,
    value for value, each leaf in the sharding asked for."""
    workdir, state = runs["fsdp"]
    for mesh in (mesh_lib.make_mesh(jax.devices()[:2]), mesh_lib.make_mesh(fsdp=2)):
        restored = _restore_step(workdir, 2, mesh)
        _leaves_equal(restored, state)
        targets = mesh_lib.state_shardings(restored, mesh, min_size=0)
        for leaf, target in zip(jax.tree.leaves(restored), jax.tree.leaves(targets), strict=True):
            assert leaf.sharding.is_equivalent_to(target, leaf.ndim)


def _cli(*args, devices):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    return subprocess.Popen([sys.executable, "-m", "diffjax.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_fsdp_run_resumes_with_another_fsdp(runs, tmp_path, caplog):
    """The fsdp=4 run resumes with fsdp=2 (training.fsdp may change on resume) and reaches step 4 with the
    parameters of the uninterrupted replicated run, to rounding."""
    import shutil

    workdir = tmp_path / "w"
    shutil.copytree(runs["fsdp"][0], workdir)
    with caplog.at_level("INFO", logger="diffjax"):
        resumed = train(_config("training.num_steps=4", "training.fsdp=2"), workdir).state
    assert "resuming from step 2" in caplog.text
    assert int(resumed.step) == 4
    assert {leaf.sharding.mesh.devices.shape for leaf in jax.tree.leaves(resumed)} == {(4, 2)}
    _leaves_equal(resumed.params, runs["replicated"][1].params, rtol=1e-5, atol=FSDP_ATOL)


@pytest.mark.slow
def test_fsdp_run_resumes_on_two_devices_replicated(runs, tmp_path):
    """`diffjax train` resumes the 8-device fsdp=4 run on 2 devices with fsdp=1 and reaches step 4 with the
    parameters of the uninterrupted replicated run (to rounding: its first 2 steps ran with FSDP); then samples
    on those 2 devices."""
    import shutil

    workdir = tmp_path / "w"
    shutil.copytree(runs["fsdp"][0], workdir)
    proc = _cli("train", "--config", CONFIG, "--workdir", str(workdir), *(f"--config.{o}" for o in RUN),
                "--config.training.num_steps=4", "--config.training.fsdp=1", devices=2)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-3000:]
    assert "resuming from step 2" in out
    step, resumed = restore_state(load_run_config(workdir), workdir)
    assert int(step) == 4
    _leaves_equal(resumed.params, runs["replicated"][1].params, rtol=1e-5, atol=FSDP_ATOL)
    assert (workdir / "samples" / "samples.npz").exists()


# --- sharded sampling ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("article", ["ddpm", pytest.param("guidance_cfg", marks=pytest.mark.slow)])
def test_sharded_sampling_equals_one_device(article, runs):
    """`generate` over 8 devices (the batch split in 8, x_T and labels placed row-sharded) draws what 1 device
    draws with the same keys, to rounding: measured at most 1.7e-6 absolute for ddpm (samples up to 3.3; the
    network's matmuls run on 2-row instead of 16-row blocks), 0 for guidance_cfg; asserted 2e-5, while other
    keys or rows would differ by O(1). Batches of 16 (5 per call), so the padded call below reuses both compiled
    samplers. ddpm samples with the FSDP-sharded EMA weights of the fsdp=4 run; guidance_cfg (class labels,
    CFG) with freshly initialised weights."""
    if article == "ddpm":
        config = _config("training.fsdp=4", "sampling.batch_size=16")
        params = runs["fsdp"][1].ema_params
    else:
        config = _config("sampling.batch_size=16", path=f"{ROOT / 'configs' / 'guidance_cfg.py'}:toy2d,smoke")
        formulation, dataset, model = validate(config)
        params = state_spec(config, formulation, dataset, model, mesh_lib.make_mesh())[0](jax.random.key(3)).params
    formulation, dataset, model = validate(config)
    shape = tuple(dataset.data_shape)
    one = mesh_lib.make_mesh(jax.devices()[:1])
    eight, labels = generate(config, formulation, model, params, shape, 80)
    single, single_labels = generate(config, formulation, model, jax.device_put(params, mesh_lib.replicated(one)),
                                     shape, 80, mesh=one)
    assert eight.shape == (80, *shape) and np.all(np.isfinite(eight))
    np.testing.assert_allclose(eight, single, rtol=0, atol=2e-5)
    np.testing.assert_array_equal(labels, single_labels)
    # A batch the devices do not divide is padded: 10 samples on 8 devices are the first 10 of a 16-row draw.
    padded, _ = generate(config, formulation, model, params, shape, 10)
    sixteen, _ = generate(config, formulation, model, jax.device_put(params, mesh_lib.replicated(one)), shape, 16,
                          mesh=one)
    np.testing.assert_allclose(padded, sixteen[:10], rtol=0, atol=2e-5)


def test_sharded_sampler_runs_split_over_the_devices():
    """What `generate` relies on: a row-sharded `x_init` makes XLA partition the whole sampler along the batch, so
    each device holds (and computes) batch / 8 rows of the result."""
    config = _config()
    formulation, dataset, model = validate(config)
    mesh = mesh_lib.make_mesh()
    params = state_spec(config, formulation, dataset, model, mesh)[0](jax.random.key(0)).params
    rows = mesh_lib.batch_sharding(mesh)
    x_init = jax.device_put(np.ones((16, 2), np.float32), rows)
    x = sample(jax.random.key(1), run_predictor(config, formulation, model, params), formulation.process,
               formulation.sampler, (16, 2), x_init=x_init)
    assert x.sharding.is_equivalent_to(rows, 2)
    assert {shard.data.shape for shard in x.addressable_shards} == {(2, 2)}


# --- weak scaling -------------------------------------------------------------------------------------------------

PER_DEVICE, CURVE_STEPS = 16, 64


def _loss_curve(devices: int, *, state0=None, batch=None):
    """Losses of CURVE_STEPS steps on the first `devices` devices with a global batch of `batch` rows (default
    PER_DEVICE per device) cut into `devices` fixed gradient shards, from the initial state `state0`."""
    batch = PER_DEVICE * devices if batch is None else batch
    config = _config(f"training.batch_size={batch}", f"training.grad_shards={batch // PER_DEVICE}")
    formulation, dataset, model = validate(config)
    mesh = mesh_lib.make_mesh(jax.devices()[:devices])
    _, _, sharding, (optimizer, schedule) = state_spec(config, formulation, dataset, model, mesh)
    state = jax.device_put(state0, sharding)
    step = jax.jit(make_train_step(model, formulation.objective, optimizer, schedule, seed=config.seed,
                                   ema_decay=0.999, grad_shards=config.training.grad_shards, mesh=mesh),
                   in_shardings=(sharding, mesh_lib.batch_sharding(mesh)),
                   out_shardings=(sharding, mesh_lib.replicated(mesh)), donate_argnums=0)
    losses = []
    for s in range(CURVE_STEPS):
        rows = dataset.batch(s, batch, seed=config.seed)
        rows.pop("label", None)
        state, metrics = step(state, mesh_lib.global_batch(rows, mesh))
        losses.append(metrics["loss"])
        jax.block_until_ready(losses[-2:-1])  # a long queue of dispatched collectives deadlocks XLA:CPU (see loop)
    return np.asarray(jax.device_get(losses), np.float64)


@pytest.fixture(scope="module")
def initial_state():
    """One initial state (on the host) for every curve: only the data and the device count differ."""
    config = _config()
    formulation, dataset, model = validate(config)
    init = state_spec(config, formulation, dataset, model, mesh_lib.make_mesh(jax.devices()[:1]))[0]
    return jax.device_get(jax.jit(init)(jax.random.key(config.seed)))


def _noise(curve):
    """The step-to-step standard deviation of a loss curve, blind to its slow trend (successive differences)."""
    return np.std(np.diff(curve), ddof=1) / np.sqrt(2)


def test_weak_scaling_keeps_the_loss_curve(initial_state):
    """Weak scaling: 1, 2, 4, 8 devices with PER_DEVICE rows each (global batch 16, 32, 64, 128).

    'The same loss curve' (docs/scaling.md) means two things, both checked:
    1. exact: N devices with b rows each run the very computation of 1 device with N b rows (here N = 8,
       bit for bit, gradients in N fixed shards): adding devices only adds rows;
    2. statistical: every step's loss is a mean over N b examples, so the curves have the same level and their
       step-to-step noise shrinks as 1/sqrt(N). Level: the means over K = CURVE_STEPS steps agree within 4
       standard errors. Noise: `noise_N * sqrt(N) / noise_1` lies within exp(+-4 s), where s = 1.22 / sqrt(K) is
       the large-sample spread of the log-ratio of two successive-difference estimates (0.87 / sqrt(K) each);
       exp(4 s) = 1.84 at K = 64. A bug that feeds every device the same rows keeps the noise of 1 device: a
       ratio of sqrt(8) = 2.8 for N = 8, 2 for N = 4.
    Measured over seeds 0-11 (N = 2 and 8, K = 64): log-ratios with standard deviation 0.12 and at most 0.33
    (bound 0.61); level gaps with standard deviation 1.0 and at most 2.7 standard errors (bound 4; seed 0, this
    test's, N = 8: its larger batch trains a little faster, -0.33 standard errors on average).
    """
    curves = {n: _loss_curve(n, state0=initial_state) for n in (1, 2, 4, 8)}
    np.testing.assert_array_equal(curves[8], _loss_curve(1, state0=initial_state, batch=8 * PER_DEVICE))
    s = 1.22 / np.sqrt(CURVE_STEPS)
    for n in (2, 4, 8):
        ratio = _noise(curves[n]) * np.sqrt(n) / _noise(curves[1])
        assert abs(np.log(ratio)) < 4 * s, (n, ratio)
        stderr = np.hypot(_noise(curves[1]), _noise(curves[n])) / np.sqrt(CURVE_STEPS)
        assert abs(curves[n].mean() - curves[1].mean()) < 4 * stderr, (n, curves[n].mean(), curves[1].mean())


@pytest.mark.slow
@pytest.mark.parametrize("devices", [2, 4])
def test_weak_scaling_is_exact_on_two_and_four_devices(devices, initial_state):
    np.testing.assert_array_equal(_loss_curve(devices, state0=initial_state),
                                  _loss_curve(1, state0=initial_state, batch=devices * PER_DEVICE))


@pytest.mark.slow
def test_fsdp_without_grad_shards_matches_replicated_to_rounding(tmp_path):
    """With grad_shards=0 the compiler reduces the gradient differently under FSDP (reduce-scatter instead of
    all-reduce). Where a gradient element cancels across the batch its rounding is relatively large and Adam's
    normalisation passes it on: measured at most 4.6e-7 absolute after 3 steps (4.6e-4 learning rates; 1.1e-6
    after 5 steps with fsdp=4). Asserted: rtol 1e-5 plus a floor of 1e-2 learning rates, still 100 times below
    the whole-update moves of a sharding bug."""
    base = ["training.grad_shards=0", "training.num_steps=3", "training.checkpoint_every=3"]
    replicated = train(_config(*base), tmp_path / "replicated").state
    fsdp = train(_config(*base, "training.fsdp=8"), tmp_path / "fsdp").state
    floor = 1e-2 * load_config(CONFIG).optimizer.learning_rate
    for a, b in zip(jax.tree.leaves(replicated.params), jax.tree.leaves(fsdp.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=floor)


# --- two processes --------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_with_fsdp_like_one(runs, tmp_path):
    """2 processes x 2 devices, fsdp=2 (each parameter split over one host's 2 devices, the batch over all 4):
    the parameters at step 2 equal the one-process replicated run's to rounding, and sampling gathers every
    process's rows."""
    workdir, port = tmp_path / "multihost", _free_port()
    procs = [_cli("train", "--config", CONFIG, "--workdir", str(workdir), *(f"--config.{o}" for o in RUN),
                  "--config.training.fsdp=2", "--coordinator_address", f"localhost:{port}", "--num_processes", "2",
                  "--process_id", str(i), devices=2) for i in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
    step, multi = restore_state(load_run_config(workdir), workdir)
    assert int(step) == 2
    _leaves_equal(multi.params, _restore_step(runs["replicated"][0], 2, mesh_lib.make_mesh()).params, rtol=1e-5,
                  atol=FSDP_ATOL)
    assert np.load(workdir / "samples" / "samples.npz")["samples"].shape == (16, 2)
