"""Strict test set-up: 8 fake CPU devices before JAX starts, fixed keys, and one compilation cache per run.

The cache (JAX's persistent compilation cache, as the CLI keeps one per run directory) is a fresh directory made
by the first pytest process and inherited through the environment by its xdist workers and by every CLI the
tests start, so a program compiled once (a train step the fault and resume tests run again and again) loads in
the next process instead of compiling; it is removed at the end. A cache the environment already sets is used
as it is.
"""

import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
_OWN_CACHE = None
if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):  # the first process of the run (workers inherit its choice)
    _OWN_CACHE = tempfile.mkdtemp(prefix="diffjax-tests-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE

import jax  # noqa: E402
import pytest  # noqa: E402


def pytest_sessionfinish(session):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


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
