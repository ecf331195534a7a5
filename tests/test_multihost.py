"""Two processes on localhost (2 x 2 fake CPU devices) train a few steps with jax.distributed and checkpoint."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from diffjax.config import load_config
from diffjax.generate import load_run_config
from diffjax.training import restore_state, train

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = f"{ROOT / 'configs' / 'ddpm.py'}:toy2d,smoke"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_train_and_checkpoint_like_one(tmp_path):
    workdir, port = tmp_path / "multihost", _free_port()
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen([sys.executable, "-m", "diffjax.cli", "train", "--config", CONFIG, "--workdir",
                               str(workdir), "--coordinator_address", f"localhost:{port}", "--num_processes", "2",
                               "--process_id", str(i)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for i in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
    info = json.loads((workdir / "run_info.json").read_text())
    assert info["processes"] == 2 and info["devices"] == 4
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["1", "2"]
    assert (workdir / "samples" / "samples.npz").exists()
    # Data, randomness and (with grad_shards) rounding do not depend on the number of hosts: the parameters
    # equal a one-process run's bit for bit.
    single = train(load_config(CONFIG), tmp_path / "single").state
    multi = restore_state(load_run_config(workdir), workdir)[1]
    for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(multi.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("victim", [1, pytest.param(0, marks=pytest.mark.slow)])
def test_a_dead_peer_stops_the_others_quickly_with_one_line(tmp_path, victim):
    """kill -9 of one process (a worker, or process 0 which hosts the coordinator) mid-training: the survivor
    stops within a bounded time instead of hanging. Killed inside a collective (the usual case, measured under
    1 s) it prints diffjax's one line and exits 1. Killed while the survivor waits outside a collective (e.g. in
    a checkpoint barrier), JAX's heartbeat (10 s here) ends it with JAX's own message naming a dead task."""
    workdir, port = tmp_path / "peer", _free_port()
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen([sys.executable, "-m", "diffjax.cli", "train", "--config", CONFIG, "--workdir",
                               str(workdir), "--coordinator_address", f"localhost:{port}", "--num_processes", "2",
                               "--process_id", str(i), "--heartbeat_timeout", "10",
                               "--config.training.num_steps=1000000", "--config.training.log_every=20",
                               "--config.training.checkpoint_every=100000"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    try:
        metrics, deadline = workdir / "metrics.jsonl", time.time() + 240
        while not (metrics.exists() and metrics.read_text().strip()) and time.time() < deadline:
            time.sleep(0.2)
        assert metrics.exists(), "training never started"
        procs[victim].kill()
        start = time.time()
        out = procs[1 - victim].communicate(timeout=60)[0]
        elapsed = time.time() - start
    finally:
        for p in procs:
            p.kill()
    assert procs[1 - victim].returncode != 0 and elapsed < 30, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    if errors:
        assert len(errors) == 1 and "most likely because a peer died" in errors[0], out[-3000:]
        assert procs[1 - victim].returncode == 1 and "Traceback" not in out
    else:
        assert "another task died" in out, out[-3000:]
