"""Strict test set-up: 8 fake CPU devices before JAX starts, fixed keys, and a compile counter."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def key():
    """A fixed PRNG key: tests are deterministic."""
    return jax.random.key(0)


@pytest.fixture
def x64():
    """Runs the test body with 64-bit floats (for identities checked to near machine precision)."""
    with jax.enable_x64(True):
        yield
