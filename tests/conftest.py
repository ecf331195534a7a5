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


@pytest.fixture(scope="module")
def mixture():
    """The three-component 2-D Gaussian mixture the sampler tests check laws against."""
    from diffjax.testing import gaussian_mixture

    return gaussian_mixture(
        weights=[0.2, 0.3, 0.5],
        means=[[-2.0, -1.0], [0.0, 2.0], [2.0, -0.5]],
        stds=[[0.3, 0.6], [0.5, 0.25], [0.4, 0.4]],
    )


@pytest.fixture(scope="module")
def reference(mixture):
    """4000 data draws of `mixture` (a fixed key), the reference of the law tests."""
    return mixture.sample(jax.random.key(100), 4000)
