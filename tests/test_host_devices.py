"""The host's cores as CPU devices: the automatic count, the user's own setting, and the CLI's `--cpu_devices`."""

import json
import os
import subprocess
import sys

import jax
import pytest

from diffjax.training import host_devices
from diffjax.training.host_devices import auto_device_count, configure_cpu_devices, device_count_is_set

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "ddpm.py") + ":toy2d,smoke"


@pytest.mark.parametrize(
    ("batch", "cores", "expected"),
    [(128, 2, 2), (8, 6, 4), (7, 4, 1), (None, 16, host_devices.MAX_AUTO_DEVICES), (64, 1, 1), (30, 8, 6)],
)
def test_auto_count_is_the_largest_divisor_of_the_batch_within_the_cores(batch, cores, expected):
    assert auto_device_count(batch, cores) == expected


def test_auto_splits_only_for_the_u_net():
    assert auto_device_count(128, 2, model="unet") == 2
    for model in ("mlp", "transformer", "encoder_decoder"):
        assert auto_device_count(128, 2, model=model) == 1


def test_a_count_in_the_environment_is_the_users_choice(monkeypatch):
    monkeypatch.delenv("JAX_NUM_CPU_DEVICES", raising=False)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    assert not device_count_is_set()
    monkeypatch.setenv("JAX_NUM_CPU_DEVICES", "4")
    assert device_count_is_set()
    assert configure_cpu_devices("auto", 8) is None  # left alone, before touching JAX
    monkeypatch.delenv("JAX_NUM_CPU_DEVICES")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    assert device_count_is_set()


def test_bad_counts_and_late_requests_fail_with_the_fix(monkeypatch):
    monkeypatch.delenv("JAX_NUM_CPU_DEVICES", raising=False)
    monkeypatch.setenv("XLA_FLAGS", "")
    jax.devices()  # the test process's backend is running
    assert configure_cpu_devices("auto", 8) is None
    with pytest.raises(ValueError, match="already started.*JAX_NUM_CPU_DEVICES=2"):
        configure_cpu_devices(2, 8)
    for bad in ("two", 0, -1):
        with pytest.raises(ValueError, match="'auto' or a positive integer"):
            configure_cpu_devices(bad, 8)
    with pytest.raises(ValueError, match="does not divide training.batch_size=8"):
        configure_cpu_devices(3, 8)


def _train(workdir, *extra):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, "-m", "diffjax.cli", "train", "--config", CONFIG, "--workdir", str(workdir),
           "--config.training.num_steps=3", *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_the_cli_sets_the_count_and_refuses_one_that_does_not_divide_the_batch(tmp_path):
    bad = _train(tmp_path / "bad", "--cpu_devices", "3")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        "error: --cpu_devices=3 does not divide training.batch_size=8; use a divisor of it or 'auto'")
    assert not (tmp_path / "bad" / "checkpoints").exists()

    for flag, devices in (("auto", 1), ("2", 2)):  # the toy MLP stays on one device unless asked
        out = _train(tmp_path / flag, "--cpu_devices", flag)
        assert out.returncode == 0, out.stderr[-2000:]
        info = json.loads((tmp_path / flag / "run_info.json").read_text())
        assert info["devices"] == devices
