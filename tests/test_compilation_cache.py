"""The CLI's persistent compilation cache (`diffjax.training.compilation_cache`): where it goes, that a second
run loads what the first compiled, that `off` writes nothing, and the one-line error for a bad directory."""

import os
import subprocess
import sys

import pytest

from diffjax.cli import main as run_cli
from diffjax.training.compilation_cache import ENV_VARIABLE, cache_dir, configure_compilation_cache

CONFIG = "configs/ddpm.py:toy2d,smoke"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cache_dir_follows_the_flag_and_leaves_the_environments_choice_alone(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VARIABLE, raising=False)
    assert cache_dir("workdir", tmp_path / "w") == str(tmp_path / "w" / "xla_cache")
    assert cache_dir("off", tmp_path / "w") is None
    assert cache_dir("~/xla", tmp_path / "w") == os.path.expanduser("~/xla")
    assert cache_dir("workdir", "gs://bucket/run") is None  # remote run directories keep it off
    monkeypatch.setenv(ENV_VARIABLE, str(tmp_path / "shared"))
    assert cache_dir("workdir", tmp_path / "w") == str(tmp_path / "shared")
    assert cache_dir(str(tmp_path / "mine"), tmp_path / "w") == str(tmp_path / "mine")


def test_a_directory_that_cannot_be_made_is_one_line_naming_the_fix(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"cannot write to .*a_file/cache .*give a writable directory, or .off."):
        configure_compilation_cache(str(blocker / "cache"), tmp_path / "w")
    code = run_cli(["train", "--config", os.path.join(ROOT, CONFIG), "--workdir", str(tmp_path / "w"),
                    "--compilation_cache", str(blocker / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--compilation_cache: cannot write to" in err[0]
    assert not (tmp_path / "w").exists()  # refused before the run directory was made


def _cli(*args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != ENV_VARIABLE}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1",
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", **(env_extra or {}))  # keep every program
    out = subprocess.run([sys.executable, "-m", "diffjax.cli", *args], env=env, capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def _entries(path):
    return sorted(p for p in os.listdir(path) if not p.startswith(".")) if os.path.isdir(path) else []


def test_the_run_directory_keeps_the_programs_and_the_next_command_loads_them(tmp_path):
    workdir = tmp_path / "w"
    _cli("train", "--config", CONFIG, "--workdir", str(workdir), "--config.training.num_steps=2")
    cache = workdir / "xla_cache"
    after_train = _entries(cache)
    assert after_train, "train left no compiled program in <workdir>/xla_cache"

    # the programs train ran for its own samples and evaluation; JAX's compiler logs each lookup at debug level
    out = _cli("sample", "--workdir", str(workdir), env_extra={"JAX_DEBUG_LOG_MODULES": "jax._src.compiler"})
    assert "Persistent compilation cache hit" in out.stderr
    assert "PERSISTENT COMPILATION CACHE MISS" not in out.stderr  # every program came from the cache
    assert _entries(cache) == after_train

    shared = tmp_path / "shared"
    _cli("sample", "--workdir", str(workdir), "--num_samples", "64", "--compilation_cache", "off",
         env_extra={ENV_VARIABLE: str(shared)})
    assert _entries(shared) == []  # off means off, even with a cache in the environment
