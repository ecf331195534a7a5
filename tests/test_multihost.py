"""Two processes on localhost (2 x 2 fake CPU devices) train a few steps with jax.distributed and checkpoint."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np

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
    # Data and randomness do not depend on the number of hosts: the parameters equal a one-process run's.
    single = train(load_config(CONFIG), tmp_path / "single").state
    multi = restore_state(load_run_config(workdir), workdir)[1]
    floor = 1e-3 * load_config(CONFIG).optimizer.learning_rate  # see test_eight_devices_match_one_device
    for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(multi.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=floor)
