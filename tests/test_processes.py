"""Forward processes against their closed forms, articles (一), (四), (五), (二十一) and the EDM note."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax.processes import DDPM, PROCESSES, GaussianProcess, process

CONTINUOUS = [name for name, cls in PROCESSES.items() if not cls.is_discrete]

# Interior times of each continuous process, away from singular ends (the flow's f and g^2 blow up at t = 1).
INTERIOR = {
    "vp": [0.01, 0.2, 0.5, 0.9],
    "subvp": [0.01, 0.2, 0.5, 0.9],
    "ve": [0.0, 0.3, 0.7, 1.0],
    "edm": [0.003, 0.1, 2.0, 50.0],
    "flow": [0.05, 0.3, 0.6, 0.9],
}


def _times(name):
    return jnp.asarray(INTERIOR[name], dtype=jnp.float64)


# ---- the forward SDE: closed forms == autodiff of alpha, sigma (article (五)) --------------------------------
@pytest.mark.parametrize("name", CONTINUOUS)
def test_closed_form_sde_coefficients_match_autodiff(name, x64):
    p, t = process(name), _times(name)
    # Both sides are float64 closed forms / their exact derivatives: agreement to ~1e-13 relative.
    np.testing.assert_allclose(p.drift_coef(t), GaussianProcess.drift_coef(p, t), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(p.g2(t), GaussianProcess.g2(p, t), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(p.alpha_dot(t), GaussianProcess.alpha_dot(p, t), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(p.sigma_dot(t), GaussianProcess.sigma_dot(p, t), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_sde_coefficients_against_finite_differences(name, x64):
    """Independent of autodiff: f = (log alpha)' and g^2 = (sigma^2)' - 2 f sigma^2 by central differences."""
    p, t = process(name), _times(name)
    h = 1e-6 * jnp.maximum(1.0, t)
    d = lambda fn: (fn(t + h) - fn(t - h)) / (2 * h)  # noqa: E731  O(h^2) ~ 1e-12, round-off ~ 1e-10
    f = d(lambda s: jnp.log(p.alpha(s)))
    g2 = d(lambda s: p.sigma(s) ** 2) - 2 * f * p.sigma(t) ** 2
    np.testing.assert_allclose(p.drift_coef(t), f, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(p.g2(t), g2, rtol=1e-7, atol=1e-8)


def test_vp_identities(x64):
    p = process("vp")
    t = jnp.linspace(0.0, 1.0, 101)
    np.testing.assert_array_equal(p.g2(t), -2.0 * p.drift_coef(t))
    np.testing.assert_allclose(p.alpha(t) ** 2 + p.sigma(t) ** 2, 1.0, rtol=1e-14)
    np.testing.assert_allclose(p.g2(t), 0.1 + t * 19.9, rtol=1e-14)  # Song's beta(t)
    # log alpha = -1/4 t^2 (beta_max - beta_min) - 1/2 t beta_min, i.e. alpha = exp(-1/2 int_0^t beta).
    np.testing.assert_allclose(p.alpha(t), np.exp(-0.25 * t**2 * 19.9 - 0.05 * t), rtol=1e-14)


def test_subvp_identities(x64):
    p, vp = process("subvp"), process("vp")
    t = jnp.linspace(0.0, 1.0, 101)
    np.testing.assert_allclose(p.sigma(t), 1.0 - p.alpha(t) ** 2, rtol=1e-14, atol=1e-16)
    np.testing.assert_array_equal(p.alpha(t), vp.alpha(t))  # sub-VP shares VP's drift
    np.testing.assert_array_equal(p.drift_coef(t), vp.drift_coef(t))
    # g^2 = beta(t) (1 - exp(-2 int_0^t beta)) <= beta(t): sub-VP injects less noise than VP.
    np.testing.assert_allclose(p.g2(t), vp.g2(t) * (1 - np.exp(-2 * (0.1 * t + 0.5 * 19.9 * t**2))), rtol=1e-12)
    assert bool(jnp.all(p.sigma(t) <= vp.sigma(t)))


def test_ve_and_edm_identities(x64):
    ve, edm = process("ve"), process("edm")
    t = jnp.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(ve.sigma(t), 0.01 * 5000.0**t, rtol=1e-13)
    np.testing.assert_array_equal(ve.alpha(t), 1.0)
    np.testing.assert_allclose(ve.g2(t), 2 * ve.sigma(t) ** 2 * np.log(5000.0), rtol=1e-13)
    s = jnp.asarray([0.002, 1.0, 80.0])
    np.testing.assert_array_equal(edm.sigma(s), s)
    np.testing.assert_array_equal(edm.g2(s), 2 * s)


# ---- DDPM's one-step analogues (article (一)) ---------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["linear", "cosine", "su"])
def test_ddpm_one_step_coefficients(schedule):
    p = process("ddpm", schedule=schedule)
    t = jnp.arange(1, p.num_steps + 1)
    step_alpha, step_beta = p.step_alpha(t), p.step_beta(t)
    np.testing.assert_array_equal(p.drift_coef(t), step_alpha - 1.0)
    np.testing.assert_array_equal(p.g2(t), step_beta**2)
    # The tables are float32: identities hold to a few float32 ulps.
    np.testing.assert_allclose(step_alpha**2 + step_beta**2, 1.0, rtol=3e-7)
    np.testing.assert_allclose(p.alpha(t) ** 2 + p.sigma(t) ** 2, 1.0, rtol=3e-7)
    # abar_t = alpha_1 ... alpha_t, accumulated in float64 from the float32 per-step table.
    cumprod = np.cumprod(np.asarray(step_alpha, np.float64))
    np.testing.assert_allclose(p.alpha(t), cumprod, rtol=2e-6)
    assert float(p.alpha(0)) == 1.0 and float(p.sigma(0)) == 0.0


def test_ddpm_per_step_alphas_match_the_schedules():
    """Independent oracles for the per-step scales: Su `alpha_t = sqrt(1 - 0.02 t/T)`, Ho `1 - beta^Ho_t`."""
    t = np.arange(1, 1001)
    su = process("ddpm", schedule="su")
    np.testing.assert_allclose(su.step_alpha(t), np.sqrt(1 - 0.02 * t / 1000), rtol=1e-6)
    lin = process("ddpm", schedule="linear")
    np.testing.assert_allclose(lin.step_beta(t) ** 2, np.linspace(1e-4, 0.02, 1000), rtol=1e-4, atol=1e-7)


def test_su_schedule_sanity():
    # (一): abar_T = 0.00648 for T = 1000 (quoted to 3 digits in FORMULATIONS §1.1).
    abar_T = float(DDPM(schedule="su").alpha_bars()[-1])
    np.testing.assert_allclose(abar_T, 6.48e-3, rtol=1e-3)
    np.testing.assert_allclose(float(process("ddpm", schedule="su").alpha(1000)), abar_T, rtol=1e-6)
    # Su's bound: log abar_T = 1/2 sum log(1 - 0.02 t/T) < -0.005 (T + 1), for any T.
    for T in (10, 100, 1000, 4000):
        assert np.log(DDPM(num_steps=T, schedule="su").alpha_bars()[-1]) < -0.005 * (T + 1)


def test_linear_schedule_matches_ho():
    p = process("ddpm", schedule="linear")
    abar_ho_T = np.prod(1.0 - np.linspace(1e-4, 0.02, 1000))
    np.testing.assert_allclose(p.alpha_bars()[-1] ** 2, abar_ho_T, rtol=1e-12)
    np.testing.assert_allclose(float(p.alpha(1000)) ** 2, abar_ho_T, rtol=1e-6)  # float32 table


def test_cosine_schedule():
    p = process("ddpm", schedule="cosine")
    T, s = 1000, 0.008
    beta_ho = 1.0 - np.asarray(p.step_alpha(np.arange(1, T + 1)), np.float64) ** 2
    assert beta_ho.max() <= 0.999 + 1e-6
    np.testing.assert_allclose(beta_ho.max(), 0.999, rtol=1e-5)  # the last step is clipped
    f = np.cos((np.arange(T + 1) / T + s) / (1 + s) * np.pi / 2) ** 2
    unclipped = np.flatnonzero(1 - f[1:] / f[:-1] < 0.999)
    assert unclipped.size > 990  # only the very end is clipped
    n = unclipped[-1] + 1  # t = 0..n are before the first clipped step
    assert np.all(np.diff(unclipped) == 1) and unclipped[0] == 0
    np.testing.assert_allclose(p.alpha_bars()[: n + 1] ** 2, f[: n + 1] / f[0], rtol=1e-10, atol=1e-15)


# ---- log-SNR and its inverses ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CONTINUOUS)
def test_log_snr_and_inverse(name, x64):
    p, t = process(name), _times(name)
    if name == "ve":
        t = t[1:-1] + 0.05  # keep bisection brackets strictly inside [t_min, t_max]
    expected = 2 * (np.log(np.asarray(p.alpha(t))) - np.log(np.asarray(p.sigma(t))))
    log_snr = p.log_snr(t)
    np.testing.assert_allclose(log_snr, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(p.t_from_log_snr(log_snr), t, rtol=1e-9, atol=1e-12)
    # The generic 64-step bisection (SubVP's own inverse) on every process; it brackets [t_min, t_max].
    inside = t[(t > p.t_min) & (t < p.t_max)]
    np.testing.assert_allclose(GaussianProcess.t_from_log_snr(p, p.log_snr(inside)), inside, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(p.edm_sigma(t), np.asarray(p.sigma(t)) / np.asarray(p.alpha(t)), rtol=1e-14)
    np.testing.assert_allclose(p.t_from_edm_sigma(p.edm_sigma(inside)), inside, rtol=1e-9, atol=1e-12)


def test_subvp_uses_bisection_and_inverts(x64):
    p = process("subvp")
    t = jnp.linspace(0.01, 0.99, 50)
    np.testing.assert_allclose(p.t_from_log_snr(p.log_snr(t)), t, rtol=1e-10)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "su"])
def test_ddpm_log_snr_and_nearest_step_inverse(schedule):
    p = process("ddpm", schedule=schedule)
    t = jnp.arange(1, p.num_steps + 1)
    a, s = np.asarray(p.alpha_bars()[1:]), np.sqrt(1 - p.alpha_bars()[1:] ** 2)
    np.testing.assert_allclose(p.log_snr(t), 2 * (np.log(a) - np.log(s)), rtol=1e-5, atol=1e-5)
    assert bool(jnp.all(jnp.diff(p.log_snr(t)) < 0))
    np.testing.assert_array_equal(p.t_from_log_snr(p.log_snr(t)), t)
    # A log-SNR a quarter of the way from step 500 to step 501 maps to 500; three quarters to 501.
    l500, l501 = float(p.log_snr(500)), float(p.log_snr(501))
    assert int(p.t_from_log_snr(0.75 * l500 + 0.25 * l501)) == 500
    assert int(p.t_from_log_snr(0.25 * l500 + 0.75 * l501)) == 501
    assert p.t_from_log_snr(jnp.zeros((2, 3))).shape == (2, 3)


# ---- time grids (articles (四), (二十一)) -------------------------------------------------------------------
def _check_strictly_decreasing_int32(steps):
    assert steps.dtype == jnp.int32
    assert bool(jnp.all(jnp.diff(steps) < 0))


def test_ddpm_grids():
    p = process("ddpm", num_steps=1000)
    leading = p.timesteps(10, "leading")
    np.testing.assert_array_equal(leading, np.arange(901, 0, -100))
    trailing = p.timesteps(10, "trailing")
    np.testing.assert_array_equal(trailing, np.arange(1000, 0, -100))
    linspace = p.timesteps(10, "linspace")
    assert int(linspace[0]) == 1000 and int(linspace[-1]) == 1 and linspace.shape == (10,)
    for steps in (leading, trailing, linspace, p.timesteps(10), p.timesteps(1000, "trailing")):
        _check_strictly_decreasing_int32(steps)
    np.testing.assert_array_equal(p.timesteps(10), leading)  # Su's ddim.py default
    np.testing.assert_array_equal(p.timesteps(1000, "leading"), np.arange(1000, 0, -1))
    edm = p.timesteps(18, "edm")
    _check_strictly_decreasing_int32(edm)
    assert 1 <= int(edm[-1]) and int(edm[0]) <= 1000
    for bad in (1001, 0):
        with pytest.raises(ValueError, match="num_steps"):
            p.timesteps(bad)
    with pytest.raises(ValueError, match="spacing"):
        p.timesteps(10, "nope")


# Every step count up to 200 and a few larger ones (each new length costs a small compilation in jnp.asarray).
_STEP_COUNTS = {1000: list(range(1, 201)) + [250, 333, 500, 999, 1000], 50: list(range(1, 51))}


@pytest.mark.parametrize("spacing", ["leading", "linspace"])
def test_ddpm_grids_have_num_steps_steps_within_1_to_T(spacing):
    for T, counts in _STEP_COUNTS.items():
        p = process("ddpm", num_steps=T)
        for n in counts:
            steps = np.asarray(p.timesteps(n, spacing))
            assert len(steps) == n and steps.min() >= 1 and steps.max() <= T, (T, n, steps)


def test_ddpm_trailing_grid_has_num_steps_steps_within_1_to_T():
    """Regression: a float np.arange(T, 0, -T/n) once gave n + 1 steps ending at step 0 (T=1000: n=61, ...)."""
    for T, counts in _STEP_COUNTS.items():
        p = process("ddpm", num_steps=T)
        for n in counts:
            steps = np.asarray(p.timesteps(n, "trailing"))
            assert len(steps) == n and steps.min() >= 1 and steps.max() == T, (T, n, steps)


def test_edm_default_grid():
    p = process("edm")
    grid = p.timesteps(18)
    assert grid.shape == (18,)
    np.testing.assert_allclose(float(grid[0]), 80.0, rtol=1e-5)
    np.testing.assert_allclose(float(grid[-1]), 0.002, rtol=1e-5)
    assert bool(jnp.all(jnp.diff(grid) < 0))
    # EDM eq. 5 with rho = 7 (float64 reference).
    i = np.arange(18)
    ref = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    np.testing.assert_allclose(grid, ref, rtol=1e-5)
    uniform = p.timesteps(18, rho=1.0)
    np.testing.assert_allclose(np.diff(uniform), (0.002 - 80) / 17, rtol=1e-4)


@pytest.mark.parametrize("name", ["vp", "ve"])
def test_edm_spacing_on_other_processes(name):
    p = process(name)
    grid = p.timesteps(10, "edm")
    s = np.asarray(p.edm_sigma(grid), np.float64)
    s_max, s_min = float(p.edm_sigma(p.t_max)), float(p.edm_sigma(p.t_min))
    i = np.arange(10)
    ref = (s_max ** (1 / 7) + i / 9 * (s_min ** (1 / 7) - s_max ** (1 / 7))) ** 7
    np.testing.assert_allclose(s, ref, rtol=1e-4)
    assert bool(jnp.all(jnp.diff(grid) < 0))


@pytest.mark.parametrize("n", [1, 4, 10])
def test_flow_uniform_grid_excludes_clean_data(n):
    grid = process("flow").timesteps(n)
    np.testing.assert_allclose(grid, 1.0 - np.arange(n) / n, rtol=1e-6, atol=1e-7)


def test_continuous_grids_endpoints_and_log_snr_spacing():
    p = process("vp")
    grid = p.timesteps(20)
    np.testing.assert_allclose([grid[0], grid[-1]], [1.0, 1e-3], rtol=1e-6)
    lam = np.asarray(p.log_snr(p.timesteps(20, "log_snr")), np.float64)
    np.testing.assert_allclose(np.diff(lam), np.full(19, (lam[-1] - lam[0]) / 19), rtol=1e-3)
    with pytest.raises(ValueError, match="log_snr"):
        process("flow").timesteps(5, "log_snr")
    with pytest.raises(ValueError, match="num_steps"):
        p.timesteps(0)


# ---- the marginal identity of article (一) ---------------------------------------------------------------
def test_unrolled_ddpm_noising_has_the_marginal_moments(key):
    """`x_t = alpha_t x_{t-1} + beta_t eps_t`, t = 1..50, has mean abar_t x_0 and variance bbar_t^2.

    Tolerance: 5 standard errors of the sample mean (bbar_t / sqrt(n)) and variance (bbar_t^2 sqrt(2/(n-1)))
    per (t, dim); with 200 such checks the chance of a false alarm is ~1e-4. Measured with this key: max |z| = 2.2
    (mean) and 2.7 (variance).
    """
    p = process("ddpm", schedule="su", num_steps=1000)
    n, steps = 200_000, 50
    x0 = jnp.asarray([1.5, -0.7], jnp.float32)
    t = jnp.arange(1, steps + 1)
    a, b = p.step_alpha(t), p.step_beta(t)

    def step(x, inputs):
        a_t, b_t, k = inputs
        x = a_t * x + b_t * jax.random.normal(k, x.shape)
        return x, (x.mean(0), x.var(0))

    _, (mean, var) = jax.lax.scan(step, jnp.broadcast_to(x0, (n, 2)), (a, b, jax.random.split(key, steps)))
    abar, bbar = p.alpha(t)[:, None], p.sigma(t)[:, None]
    z_mean = (mean - abar * x0) / (bbar / np.sqrt(n))
    z_var = (var - bbar**2) / (bbar**2 * np.sqrt(2 / (n - 1)))
    assert float(jnp.abs(z_mean).max()) < 5.0, z_mean
    assert float(jnp.abs(z_var).max()) < 5.0, z_var


# ---- simulating the derived SDE reproduces the marginal (article (五)) ------------------------------------------
def _moment_recursion(p, t_end, num_steps):
    """Exact mean factor and variance of the Euler-Maruyama chain `x += f x dt + g sqrt(dt) z` (float64)."""
    dt = t_end / num_steps
    ts = np.arange(num_steps) * dt
    f, g2 = np.asarray(p.drift_coef(ts), np.float64), np.asarray(p.g2(ts), np.float64)
    m, v = 1.0, 0.0
    for k in range(num_steps):
        m, v = (1 + f[k] * dt) * m, (1 + f[k] * dt) ** 2 * v + g2[k] * dt
    return m, v


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_euler_maruyama_discretisation_converges_with_order_one(name, x64):
    """Deterministic: the EM chain's exact moments approach (alpha x_0, sigma^2) with error O(dt)."""
    p, t_end = process(name), 0.5
    a, s2 = float(p.alpha(t_end)), float(p.sigma(t_end)) ** 2
    errs = []
    for n in (500, 1000, 2000):
        m, v = _moment_recursion(p, t_end, n)
        errs.append(abs(m / a - 1) + abs(v / s2 - 1))
    assert errs[-1] < 5e-3
    orders = np.log2(np.asarray(errs[:-1]) / np.asarray(errs[1:]))
    assert np.all(np.abs(orders - 1.0) < 0.2), orders


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_euler_maruyama_simulation_reproduces_marginal_moments(name, key):
    """Simulate `dx = f(t) x dt + g(t) dw` from x_0 to t = 0.5 (1000 steps, 20k paths, 8 dims).

    Tolerance = 5 Monte-Carlo standard errors + the O(dt) bias of the EM chain, which `_moment_recursion`
    computes exactly (measured: |mean bias| <= 2e-4 relative, |variance bias| <= 4.5e-3 relative for VE, 1e-3
    VP). Measured with this key: |z_mean| <= 2.4, variance off by <= 0.62% (MC standard error 0.35%).
    """
    p, t_end, num_steps, n = process(name), 0.5, 1000, 20_000
    dt = t_end / num_steps
    ts = jnp.arange(num_steps, dtype=jnp.float32) * dt
    f, g = p.drift_coef(ts), jnp.sqrt(p.g2(ts))
    x0 = jnp.linspace(-3.0, 3.0, 8)

    def step(x, inputs):
        f_k, g_k, k = inputs
        return x + f_k * x * dt + g_k * jnp.sqrt(dt) * jax.random.normal(k, x.shape), None

    x, _ = jax.lax.scan(step, jnp.broadcast_to(x0, (n, 8)), (f, g, jax.random.split(key, num_steps)))
    a, s = float(p.alpha(t_end)), float(p.sigma(t_end))
    with jax.enable_x64(True):
        m_bias, v_bias = _moment_recursion(p, t_end, num_steps)
    m_bias, v_bias = abs(m_bias / a - 1), abs(v_bias / s**2 - 1)
    mean_err = np.abs(np.asarray(x.mean(0)) - a * np.asarray(x0))
    assert np.all(mean_err < 5 * s / np.sqrt(n) + m_bias * a * np.abs(np.asarray(x0))), mean_err
    var_rel = abs(float(x.var(0).mean()) / s**2 - 1)  # 8 independent dims pooled: n_eff = 8 n
    assert var_rel < 5 * np.sqrt(2 / (8 * n)) + v_bias, var_rel
    # A wrong diffusion (g^2 off by 5%) would be caught: the tolerance is below that.
    assert 5 * np.sqrt(2 / (8 * n)) + v_bias < 0.05


# ---- the factory ------------------------------------------------------------------------------------------
def test_factory_builds_every_process_and_rejects_unknowns():
    for name, cls in PROCESSES.items():
        assert type(process(name)) is cls
    assert process("vp", beta_max=10.0).beta_max == 10.0
    with pytest.raises(ValueError, match="valid .*: ddpm, edm, flow, subvp, ve, vp"):
        process("nope")
    with pytest.raises(ValueError, match="valid knobs: beta_max, beta_min, t_eps"):
        process("vp", sigma_max=3.0)
    with pytest.raises(ValueError, match="valid choices"):
        process("ddpm", schedule="quadratic")
    with pytest.raises(ValueError, match="num_steps"):
        process("ddpm", num_steps=0)


def test_processes_are_static_hashable_arguments():
    p = process("vp")
    assert hash(p) == hash(process("vp")) and p == process("vp")
    traces = []

    def alpha(proc, t):
        traces.append(None)
        return proc.alpha(t)

    alpha = jax.jit(alpha, static_argnums=0)
    alpha(p, 0.1)
    alpha(process("vp"), 0.2)  # an equal process built again: no retrace
    assert len(traces) == 1
    alpha(process("vp", beta_max=10.0), 0.2)
    assert len(traces) == 2
