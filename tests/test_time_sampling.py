"""Training-time distributions against their definitions (Kolmogorov-Smirnov / chi-square, fixed keys).

Noise floor: each test draws N = 8192 times with a fixed key and asserts p > 1e-3 for the exact law. The
clipping of log_normal into [t_min, t_max] moves at most 0.3% of the mass (vp: ln sigma(t_min) = -4.6 is
2.8 std below -1.2), below the KS critical distance 1.95/sqrt(N) = 0.022 at p = 1e-3.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from diffjax.objectives import TIME_SAMPLINGS, sample_times
from diffjax.processes import process

N = 8192


def test_uniform_discrete_covers_exactly_one_to_T():
    ddpm = process("ddpm", num_steps=50)
    t = sample_times(jax.random.key(0), ddpm, N, "uniform_discrete")
    assert t.dtype == jnp.int32 and t.shape == (N,)
    assert set(np.asarray(t).tolist()) == set(range(1, 51))
    counts = np.bincount(np.asarray(t), minlength=51)[1:]
    assert stats.chisquare(counts).pvalue > 1e-3


@pytest.mark.parametrize("proc_name, knobs, bounds", [
    ("vp", {}, (1e-3, 1.0)),
    ("edm", {}, (0.002, 80.0)),
    ("flow", {"t_min": 0.2, "t_max": 0.5}, (0.2, 0.5)),
])
def test_uniform_within_bounds(proc_name, knobs, bounds):
    t = np.asarray(sample_times(jax.random.key(1), process(proc_name), N, "uniform", **knobs), np.float64)
    lo, hi = bounds
    assert t.shape == (N,) and t.min() >= np.float32(lo) and t.max() <= np.float32(hi)
    assert stats.kstest(t, stats.uniform(lo, hi - lo).cdf).pvalue > 1e-3


@pytest.mark.parametrize("proc_name", ["edm", "vp", "ve", "flow"])
@pytest.mark.parametrize("p_mean, p_std", [(-1.2, 1.2), (0.4, 0.6)])
def test_log_normal_edm_sigma(proc_name, p_mean, p_std):
    """`ln(sigma(t)/alpha(t)) ~ N(p_mean, p_std^2)` after mapping sigma to each process's time."""
    proc = process(proc_name)
    t = sample_times(jax.random.key(2), proc, N, "log_normal", p_mean=p_mean, p_std=p_std)
    assert t.shape == (N,) and float(t.min()) >= proc.t_min and float(t.max()) <= proc.t_max
    log_sigma = np.log(np.asarray(proc.edm_sigma(t), np.float64))
    assert stats.kstest(log_sigma, stats.norm(p_mean, p_std).cdf).pvalue > 1e-3


def test_log_normal_on_ddpm_picks_nearest_steps():
    """On DDPM the drawn sigma maps to the step with the nearest log-SNR: int32 in 1..T."""
    ddpm = process("ddpm")
    t = sample_times(jax.random.key(3), ddpm, N, "log_normal")
    assert t.dtype == jnp.int32 and int(t.min()) >= 1 and int(t.max()) <= ddpm.num_steps
    assert stats.kstest(np.log(np.asarray(ddpm.edm_sigma(t), np.float64)), stats.norm(-1.2, 1.2).cdf).pvalue > 1e-3


@pytest.mark.parametrize("proc_name", ["vp", "flow", "edm"])
@pytest.mark.parametrize("logit_mean, logit_std", [(0.0, 1.0), (-0.4, 1.5)])
def test_logit_normal(proc_name, logit_mean, logit_std):
    """`logit((t - t_min)/(t_max - t_min)) ~ N(logit_mean, logit_std^2)`."""
    proc = process(proc_name)
    t = np.asarray(sample_times(jax.random.key(4), proc, N, "logit_normal", logit_mean=logit_mean,
                                logit_std=logit_std), np.float64)
    u = (t - proc.t_min) / (proc.t_max - proc.t_min)
    assert np.all((u > 0) & (u < 1))
    assert stats.kstest(np.log(u) - np.log1p(-u), stats.norm(logit_mean, logit_std).cdf).pvalue > 1e-3


def test_default_and_jit():
    """`None` picks uniform_discrete on DDPM and uniform otherwise; sampling jits with a static process."""
    assert sample_times(jax.random.key(5), process("ddpm"), 16).dtype == jnp.int32
    vp = process("vp")
    draw = jax.jit(sample_times, static_argnums=(1, 2, 3))
    np.testing.assert_allclose(draw(jax.random.key(6), vp, 16, "uniform"),
                               sample_times(jax.random.key(6), vp, 16, "uniform"), rtol=1e-6)


@pytest.mark.parametrize("proc_name, name, knobs, match", [
    ("vp", "gaussian", {}, "valid time samplings: log_normal, logit_normal, uniform, uniform_discrete"),
    ("vp", "uniform", {"p_mean": 0.0}, "valid knobs: t_max, t_min"),
    ("vp", "log_normal", {"t_min": 0.1}, "valid knobs: p_mean, p_std"),
    ("ddpm", "uniform_discrete", {"t_max": 5}, r"valid knobs: \(none\)"),
    ("vp", "uniform_discrete", {}, "needs a discrete process"),
    ("ddpm", "uniform", {}, "use time_sampling='uniform_discrete'"),
    ("ddpm", "logit_normal", {}, "use time_sampling='uniform_discrete'"),
    ("vp", "uniform", {"t_min": 0.5, "t_max": 0.5}, "t_min < t_max"),
    ("vp", "log_normal", {"p_std": 0.0}, "p_std > 0"),
    ("vp", "logit_normal", {"logit_std": -1.0}, "logit_std > 0"),
])
def test_errors(proc_name, name, knobs, match):
    with pytest.raises(ValueError, match=match):
        sample_times(jax.random.key(0), process(proc_name), 4, name, **knobs)


def test_table_is_explicit():
    assert set(TIME_SAMPLINGS) == {"uniform_discrete", "uniform", "log_normal", "logit_normal"}
