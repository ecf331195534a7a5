"""Continuous-time samplers, articles (五), (六), (二十一), EDM and DPM-Solver++, against exact oracles.

The law tests follow tests/test_samplers.py: the sliced-W1 distance between a sampler's output and a data
draw must stay under the data's own noise floor (mean + 4 std of the distance between fresh data draws).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import io_callback

import diffjax as dj
from diffjax.samplers import _sample
from diffjax.samplers._noise import step_noise
from diffjax.samplers._ode import ProbabilityFlowODE
from diffjax.samplers._pc import langevin_step
from diffjax.testing import gaussian_mixture, sliced_wasserstein

N = 4000  # samples per law comparison
PROJECTIONS = 64  # sliced-W1 directions: in 2-D, 64 give the 256-direction values to ~2% at a quarter of the cost
NOISE_RNG = dj.sampler("euler_maruyama").noise_rng  # the samplers' default noise generator, to replay their draws


def _sliced_w1(x, y):
    return float(sliced_wasserstein(jax.random.key(7), x, y, num_projections=PROJECTIONS))


def _noise_floor(law, reference, draws=32):
    """Mean + 4 std of the sliced-W1 between `reference` and fresh draws of `law` of the same size.

    32 draws, not 8: the std of 8 is too uncertain for a 4-std bound. For the mixture, 8 draws gave a floor of
    0.058 while 256 give mean 0.036, std 0.010, floor 0.077, and 2.7% of exact data draws lie above 0.058: a
    test with three law checks then failed for an exact sampler about once in 12 keys (the reverse-SDE family
    test did, at 0.0579, when the samplers' noise generator changed; over 24 keys its sigma_rev = 1 distances
    had mean 0.039 and std 0.011 with either generator's noise, like the data's own).
    """
    null = [_sliced_w1(law.sample(jax.random.key(200 + i), len(reference)), reference) for i in range(draws)]
    return float(np.mean(null) + 4 * np.std(null))


@pytest.fixture(scope="module")
def noise_floor(mixture, reference):
    """Measured: null mean 0.035, std 0.009, floor 0.072."""
    return _noise_floor(mixture, reference)


def _assert_law(x, mixture, reference, noise_floor, label):
    assert bool(jnp.all(jnp.isfinite(x))), label
    distance = _sliced_w1(x, reference)
    assert distance < noise_floor, f"{label}: sliced-W1 {distance:.4f} above the noise floor {noise_floor:.4f}"
    # Mass per component: E[w_k(x_0)] = pi_k under the data law; 5 standard errors.
    resp = mixture.responsibilities(x)
    np.testing.assert_array_less(jnp.abs(resp.mean(0) - mixture.weights), 5 * resp.std(0) / np.sqrt(len(x)) + 1e-3)
    return distance


# ---- the acceptance claims: default knobs, few evaluations ------------------------------------------------------
# Measured sliced-W1 (null mean 0.035, std 0.009, floor 0.072): heun 0.043 (vp), 0.031 (ve), 0.039 (edm), 0.035
# (flow); dpm_solver 0.039 (vp), 0.032 (ve), 0.040 (edm), 0.038 (flow). Heun-18's bias on this data is a 2% wider
# spread (it has order 2), visible at N = 20000 but inside the N = 4000 floor. (With threefry noise and an 8-draw
# floor of 0.058, the figures were 0.048, 0.041, 0.046, 0.026 and 0.032, 0.033, 0.036, 0.024.)
DEFAULT_CASES = {
    "heun-vp-eps": ("heun", "vp", "eps", 35),
    "heun-ve-x0": ("heun", "ve", "x0", 35),
    "heun-edm-v": ("heun", "edm", "v", 35),
    "heun-flow-velocity": ("heun", "flow", "velocity", 35),
    "dpm_solver-vp-x0": ("dpm_solver", "vp", "x0", 20),
    "dpm_solver-ve-score": ("dpm_solver", "ve", "score", 20),
    "dpm_solver-edm-eps": ("dpm_solver", "edm", "eps", 20),
    "dpm_solver-flow-velocity": ("dpm_solver", "flow", "velocity", 20),
    "dpm_solver-ddpm-eps": ("dpm_solver", "ddpm", "eps", 20),
}
SLOW_DEFAULT_CASES = {"dpm_solver-ddpm-eps"}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, marks=pytest.mark.slow) if case in SLOW_DEFAULT_CASES else case
        for case in sorted(DEFAULT_CASES)
    ],
)
def test_default_knobs_reproduce_mixture_with_few_evaluations(case, mixture, reference, noise_floor):
    """Heun with 35 evaluations and DPM-Solver++(2M) with 20, default knobs, exact model of each kind."""
    name, process_name, kind, nfe = DEFAULT_CASES[case]
    process = dj.process(process_name)
    x, info = dj.sample(
        jax.random.key(3), mixture.predictor(process, kind), process, dj.sampler(name), (N, 2), return_info=True
    )
    assert int(info["nfe"]) == nfe
    _assert_law(x, mixture, reference, noise_floor, case)


def _counting(predictor):
    """The same model, also counting its evaluations on the host (one count per batched call)."""
    calls = [0]

    def bump(_):
        calls[0] += 1
        return np.int32(0)

    def fn(x, t):
        tick = io_callback(bump, jax.ShapeDtypeStruct((), jnp.int32), t[0], ordered=True)
        return predictor(x, t) + tick.astype(x.dtype)

    return dj.Predictor(fn, kind=predictor.kind), calls


# Measured sliced-W1 (floor 0.072): pc 0.025, ode 0.034 (92 evaluations), euler 0.038 (with threefry noise: 0.032,
# 0.027, 0.025, and the slow cases 0.024 to 0.040).
OTHER_CASES = {
    "pc-vp-eps": ("vp", {}, "eps", "pc", {"steps": 300}),
    "ode-flow-velocity-adaptive": ("flow", {}, "velocity", "ode", {}),
    "euler-flow-velocity": ("flow", {}, "velocity", "euler", {"steps": 100}),
    # slow:
    "euler_maruyama-flow-velocity": ("flow", {"t_end": 0.999}, "velocity", "euler_maruyama", {"steps": 400}),
    "euler_maruyama-ve-eps": ("ve", {}, "eps", "euler_maruyama", {"steps": 500}),
    "euler_maruyama-edm-x0": ("edm", {}, "x0", "euler_maruyama", {"steps": 500}),
    "pc-ve-ancestral": ("ve", {}, "eps", "pc", {"steps": 300, "predictor": "ancestral"}),
    "pc-edm-score": ("edm", {}, "score", "pc", {"steps": 300}),
    "pc-subvp-v-euler_maruyama": ("subvp", {}, "v", "pc", {"steps": 300, "predictor": "euler_maruyama"}),
    "ode-vp-x0-heun-fixed": ("vp", {}, "x0", "ode", {"solver": "heun", "adaptive": False, "steps": 30}),
    "ode-vp-eps-tsit5-fixed": ("vp", {}, "eps", "ode", {"solver": "tsit5", "adaptive": False, "steps": 10}),
    "ode-edm-v-dopri5": ("edm", {}, "v", "ode", {"solver": "dopri5"}),
    "heun-subvp-eps-36": ("subvp", {}, "eps", "heun", {"steps": 36}),
    "heun-vp-churn-100": (
        "vp",
        {},
        "eps",
        "heun",
        {"steps": 100, "S_churn": 10.0, "S_tmin": 0.05, "S_tmax": 50.0, "S_noise": 1.003},
    ),
    "heun-flow-x0-sigma": ("flow", {"t_end": 0.999, "t_eps": 1e-3}, "x0", "heun", {"steps": 60, "spacing": "log_snr"}),
    "dpm_solver-flow-singlestep": ("flow", {}, "velocity", "dpm_solver", {"method": "singlestep", "steps": 10}),
    "dpm_solver-ddpm-cosine-singlestep": (
        "ddpm",
        {"num_steps": 50, "schedule": "cosine"},
        "eps",
        "dpm_solver",
        {"method": "singlestep", "steps": 50},
    ),
}
FAST_OTHER_CASES = {"pc-vp-eps", "ode-flow-velocity-adaptive", "euler-flow-velocity"}
SLOW_OTHER_CASES = set(OTHER_CASES) - FAST_OTHER_CASES


@pytest.mark.parametrize(
    "case", [pytest.param(case, marks=pytest.mark.slow) if case in SLOW_OTHER_CASES else case for case in OTHER_CASES]
)
def test_sampler_reproduces_mixture_and_counts_evaluations(case, mixture, reference, noise_floor):
    """Each sampler with the exact model reproduces the mixture; `nfe` equals the evaluations counted on the host."""
    process_name, process_knobs, kind, name, knobs = OTHER_CASES[case]
    process = dj.process(process_name, **process_knobs)
    predictor, calls = _counting(mixture.predictor(process, kind))
    x, info = dj.sample(jax.random.key(3), predictor, process, dj.sampler(name, **knobs), (N, 2), return_info=True)
    _assert_law(x, mixture, reference, noise_floor, case)
    assert int(info["nfe"]) == calls[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, knobs",
    [
        ("heun", {}),
        ("dpm_solver", {}),
        ("dpm_solver", {"method": "singlestep"}),
        ("ode", {"solver": "heun", "adaptive": False, "steps": 30}),
        ("reverse_sde", {"sigma_rev": 0.0, "steps": 100}),
    ],
)
def test_deterministic_samplers_are_the_same_for_every_prediction_kind(mixture, name, knobs):
    """Exact conversions: eps, x0, v, score and velocity oracles drive each deterministic sampler to one output."""
    process = dj.process("vp")
    outs = {
        kind: dj.sample(
            jax.random.key(4), mixture.predictor(process, kind), process, dj.sampler(name, **knobs), (256, 2)
        )
        for kind in dj.KINDS
    }
    for kind in dj.KINDS:
        np.testing.assert_allclose(outs[kind], outs["eps"], atol=2e-4, err_msg=kind)


# ---- article (六): the equal-marginal family --------------------------------------------------------------------
def test_reverse_sde_family_has_the_data_marginals_but_other_paths(mixture, reference, noise_floor):
    """sigma_t = lam g_t, lam in {0, 0.5, 1}: all three land on the mixture law from the same x_T and noise, while
    the paths differ. Measured at the default 1000 steps: sliced-W1 0.021, 0.040, 0.058 (floor 0.072; over 24 keys
    lam = 1 gives mean 0.039, std 0.011, the data's own spread; with threefry noise this key gave 0.021, 0.030, 0.037);
    median path gaps 2.1 (0 vs 0.5), 0.45 (0.5 vs 1), 3.0 (0 vs 1)."""
    process = dj.process("vp")
    predictor = mixture.predictor(process)
    x_T = process.prior_sample(jax.random.key(1), (N, 2))
    outs = {}
    for lam in (0.0, 0.5, 1.0):
        sampler = dj.sampler("reverse_sde", sigma_rev=lam)
        outs[lam] = dj.sample(jax.random.key(3), predictor, process, sampler, (N, 2), x_init=x_T)
        _assert_law(outs[lam], mixture, reference, noise_floor, f"sigma_rev={lam}")
    for a, b in [(0.0, 0.5), (0.5, 1.0), (0.0, 1.0)]:
        assert float(jnp.median(jnp.linalg.norm(outs[a] - outs[b], axis=-1))) > 0.3, (a, b)
    em = dj.sample(jax.random.key(3), predictor, process, dj.sampler("euler_maruyama"), (N, 2), x_init=x_T)
    np.testing.assert_array_equal(em, outs[1.0])  # sigma_rev = 1 is the reverse SDE of article (五)


@pytest.mark.slow
def test_pc_without_corrector_is_its_predictor(mixture):
    """pc with n_corrector = 0 runs its predictor alone: with `euler_maruyama`, that sampler (same noise draws)."""
    process = dj.process("vp")
    predictor = mixture.predictor(process)
    x_T = process.prior_sample(jax.random.key(1), (512, 2))
    em = dj.sample(jax.random.key(3), predictor, process, dj.sampler("euler_maruyama", steps=200), (512, 2), x_init=x_T)
    pc = dj.sample(
        jax.random.key(3),
        predictor,
        process,
        dj.sampler("pc", predictor="euler_maruyama", n_corrector=0, steps=200),
        (512, 2),
        x_init=x_T,
    )
    np.testing.assert_allclose(pc, em, atol=1e-5)


def test_reverse_euler_maruyama_agrees_with_ddpm_to_first_order(mixture):
    """Article (五): with score = -eps/sigma, EM on the reverse SDE and DDPM's ancestral step (sigma = beta), given the
    same x_T and noise, differ by O(dt) over the whole path.

    DDPM's last step adds `sigma(t_min) z` where EM returns x̂_0, so that known draw is removed first. Measured
    median distances: 0.028 and 0.0027 at 100 and 1000 steps (slope -1.01; 0.0070 and 0.0017 at 400 and 1600). The
    1000-step EM run is the article-(六) test's (same x_T, key and shape), so it is not compiled again.
    """
    process = dj.process("vp")
    predictor = mixture.predictor(process)
    x_T = process.prior_sample(jax.random.key(1), (N, 2))
    key = jax.random.key(3)
    steps, gaps = (100, 1000), []
    for n in steps:
        em = dj.sample(key, predictor, process, dj.sampler("euler_maruyama", steps=n), x_T.shape, x_init=x_T)
        ddpm = dj.sample(
            key, predictor, process, dj.sampler("ancestral", variance="beta", steps=n), x_T.shape, x_init=x_T
        )
        last = process.sigma(jnp.float32(process.t_min)) * step_noise(key, n - 1, x_T.shape, x_T.dtype, NOISE_RNG)
        gaps.append(float(jnp.median(jnp.linalg.norm(em - (ddpm - last), axis=-1))))
    slope = np.polyfit(np.log(steps), np.log(gaps), 1)[0]
    assert -1.3 < slope < -0.7, (gaps, slope)


# ---- predictor-corrector -----------------------------------------------------------------------------------------
def test_langevin_corrector_leaves_the_noisy_marginal_invariant(mixture):
    """20 corrector steps with the exact score of p_t keep exact p_t samples at p_t (up to the step-size bias);
    the score of another time moves them off. Measured sliced-W1: 0.025 (floor 0.069; the start 0.024), median move
    0.67; with the score of t = 0.3 instead of 0.1, 0.30."""
    process = dj.process("vp")
    t = jnp.float32(0.1)
    alpha, sigma = float(process.alpha(t)), float(process.sigma(t))
    marginal = gaussian_mixture(mixture.weights, alpha * mixture.means, jnp.sqrt(alpha**2 * mixture.stds**2 + sigma**2))
    reference = marginal.sample(jax.random.key(100), N)
    floor = _noise_floor(marginal, reference)
    predictor = mixture.predictor(process, "x0")

    @jax.jit
    def corrected(x, t_score):
        def body(j, x):
            score = predictor.predict(process, x, jnp.full((N,), t_score), "score")
            return langevin_step(x, score, step_noise(jax.random.key(5), j, x.shape, x.dtype, NOISE_RNG), snr=0.16)

        return jax.lax.fori_loop(0, 20, body, x)

    start = marginal.sample(jax.random.key(4), N)
    exact = corrected(start, t)
    assert _sliced_w1(exact, reference) < floor
    assert float(jnp.median(jnp.linalg.norm(exact - start, axis=-1))) > 0.1  # the chain does move
    wrong = corrected(start, jnp.float32(0.3))
    assert _sliced_w1(wrong, reference) > 2 * floor


# ---- the probability-flow ODE ------------------------------------------------------------------------------------
def test_probability_flow_ode_is_invertible(mixture):
    """Article (六): x_T -> x(t_min) -> x_T through diffrax (dopri5, rtol = atol = 1e-6) returns x_T, while the map
    itself moves points by O(1). Measured max error 2.5e-5 (float32; 4.5e-4 at the default 1e-5)."""
    process = dj.process("vp")
    predictor = mixture.predictor(process, "eps")
    ode = dj.sampler("ode", solver="dopri5", rtol=1e-6, atol=1e-6, steps=50)
    solve = jax.jit(lambda x, ts: ode.integrate(predictor, process, x, ts, {})[0])  # one program, both directions
    ts = ode.grid(process)
    x_T = process.prior_sample(jax.random.key(0), (256, 2))
    x_min = solve(x_T, ts)
    back = solve(x_min, ts[::-1])
    assert float(jnp.abs(back - x_T).max()) < 2e-4
    assert float(jnp.abs(x_min - x_T).max()) > 1.0


# ---- EDM: convergence orders, determinism, identities ------------------------------------------------------------
def _exact_ode_sample(data_mean, data_std, process, t_start, t_end, x_start):
    """x̂_0 at `t_end` of the exact PF-ODE solution from `x_start` at `t_start`, for data N(mean, std^2 I).

    The ODE keeps the standardised coordinate `(x - alpha mean) / sqrt(alpha^2 std^2 + sigma^2)` fixed.
    """
    a0, s0 = process.alpha(t_start), process.sigma(t_start)
    a1, s1 = process.alpha(t_end), process.sigma(t_end)
    v0, v1 = a0**2 * data_std**2 + s0**2, a1**2 * data_std**2 + s1**2
    x_end = a1 * data_mean + jnp.sqrt(v1 / v0) * (x_start - a0 * data_mean)
    return data_mean + a1 * data_std**2 / v1 * (x_end - a1 * data_mean)


@pytest.mark.parametrize("name, order", [("euler", 1), ("heun", 2)])
def test_edm_sampler_global_convergence_order(name, order, x64):
    """Article (二十一): Euler and Heun on EDM's rho-grid converge at orders 1 and 2 (+-0.3) to the exact ODE map.

    Data N(mu, 0.7^2 I), where the probability-flow map is known in closed form. Measured max errors at 32, 64,
    128 steps: Euler 0.150, 0.076, 0.038 (order 0.99), Heun 0.026, 0.0060, 0.0014 (order 2.07).
    """
    mean, std = jnp.asarray([0.5, -0.3]), 0.7
    data = gaussian_mixture([1.0], mean[None], std)
    process = dj.process("edm")
    x_T = process.prior_sample(jax.random.key(0), (64, 2))
    steps, errors = (32, 64, 128), []
    for n in steps:
        sampler = dj.sampler(name, steps=n)
        ts = sampler.grid(process)
        x = dj.sample(jax.random.key(0), data.predictor(process, "eps"), process, sampler, x_T.shape, x_init=x_T)
        exact = _exact_ode_sample(mean, std, process, ts[0], ts[-1], x_T)
        errors.append(float(jnp.abs(x - exact).max()))
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.3, (errors, slope)


def test_heun_without_churn_is_deterministic_and_draws_no_noise(mixture):
    process = dj.process("edm")
    predictor = mixture.predictor(process, "x0")
    x_T = process.prior_sample(jax.random.key(0), (64, 2))
    heun = dj.sampler("heun")
    a = dj.sample(jax.random.key(1), predictor, process, heun, x_T.shape, x_init=x_T)
    b = dj.sample(jax.random.key(2), predictor, process, heun, x_T.shape, x_init=x_T)
    np.testing.assert_array_equal(a, b)
    program = str(jax.make_jaxpr(lambda k, x: heun.run(k, predictor, process, x, {}))(jax.random.key(1), x_T))
    assert "random_bits" not in program and "threefry" not in program
    # With churn, two keys give two samples (the test's power).
    churn = dj.sampler("heun", S_churn=40.0, S_tmin=0.05, S_tmax=50.0, S_noise=1.003)
    c = dj.sample(jax.random.key(1), predictor, process, churn, x_T.shape, x_init=x_T)
    d = dj.sample(jax.random.key(2), predictor, process, churn, x_T.shape, x_init=x_T)
    assert float(jnp.abs(c - d).max()) > 0.1


def _edm_algorithm_2(denoise, x, sigmas, key, S_churn, S_tmin, S_tmax, S_noise):
    """Karras et al. (2022), Algorithm 2, transcribed literally (EDM process: x = x_0 + sigma eps)."""
    n = len(sigmas)
    sigmas = [float(v) for v in sigmas] + [0.0]
    for i in range(n):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        gamma = min(S_churn / n, np.sqrt(2.0) - 1.0) if S_tmin <= sigma <= S_tmax else 0.0
        sigma_hat = sigma * (1.0 + gamma)
        x_hat = x + np.sqrt(sigma_hat**2 - sigma**2) * S_noise * step_noise(key, i, x.shape, x.dtype, NOISE_RNG)
        d = (x_hat - denoise(x_hat, sigma_hat)) / sigma_hat
        x = x_hat + (sigma_next - sigma_hat) * d
        if i < n - 1:
            x = x_hat + (sigma_next - sigma_hat) * 0.5 * (d + (x - denoise(x, sigma_next)) / sigma_next)
    return x


def test_heun_is_edm_algorithm_2(mixture):
    """On the EDM process, heun (with churn) is Algorithm 2 step for step, given the same noise draws.

    Measured max gap 1e-6 (float32, 64 points); churn moves the result by 1.2, so the comparison sees it.
    """
    process = dj.process("edm")
    knobs = {"S_churn": 30.0, "S_tmin": 0.01, "S_tmax": 1.0, "S_noise": 1.007}
    sampler = dj.sampler("heun", **knobs)
    x_T = process.prior_sample(jax.random.key(0), (64, 2))
    key = jax.random.key(1)
    x = dj.sample(key, mixture.predictor(process, "x0"), process, sampler, x_T.shape, x_init=x_T)
    reference = _edm_algorithm_2(
        lambda x, sigma: mixture.posterior_mean(x, 1.0, sigma), x_T, sampler.grid(process), key, **knobs
    )
    np.testing.assert_allclose(x, reference, atol=1e-4)
    deterministic = _edm_algorithm_2(
        lambda x, sigma: mixture.posterior_mean(x, 1.0, sigma), x_T, sampler.grid(process), key, 0.0, 0.0, np.inf, 1.0
    )
    assert float(jnp.abs(deterministic - reference).max()) > 0.1


@pytest.mark.slow
def test_first_order_samplers_are_ddim(mixture):
    """Euler in sigma/alpha and DPM-Solver++ of order 1 are deterministic DDIM (article (四)) on the same grid.

    Same prior draw as the `heun-vp-eps` case above (that Heun run is reused to show the comparison tells orders
    apart). Float32 rounding is amplified at the few points between modes, where the ODE map is ill-conditioned.
    Measured per-point gaps, median / 99% / max: Euler 5e-7 / 8e-6 / 2e-4, DPM-Solver 4e-7 / 2e-6 / 8e-5; Heun 0.15
    in median.
    """
    process = dj.process("vp")
    predictor = mixture.predictor(process, "eps")

    def gaps(name, **knobs):
        x = dj.sample(jax.random.key(3), predictor, process, dj.sampler(name, **knobs), (N, 2))
        return np.asarray(jnp.abs(x - ddim).max(-1))

    ddim = dj.sample(jax.random.key(3), predictor, process, dj.sampler("ddim", steps=18, spacing="edm"), (N, 2))
    for name, knobs in [("euler", {}), ("dpm_solver", {"order": 1, "steps": 18, "spacing": "edm"})]:
        gap = gaps(name, **knobs)
        assert np.median(gap) < 1e-5 and np.quantile(gap, 0.99) < 1e-4 and gap.max() < 2e-3, name
    assert np.median(gaps("heun")) > 0.05


# ---- validation ---------------------------------------------------------------------------------------------------
def _model(kind="eps"):
    return dj.Predictor(lambda x, t: x, kind=kind)


INVALID = [
    ("heun", {}, "ddpm", {}, "eps", "continuous-time process"),
    ("euler_maruyama", {}, "ddpm", {}, "eps", "use process 'vp'"),
    ("euler_maruyama", {}, "flow", {}, "velocity", "singular at t_max"),
    ("pc", {"predictor": "euler_maruyama"}, "flow", {}, "x0", "singular at t_max"),
    ("heun", {}, "flow", {}, "eps", "alpha\\(t_max\\) = 0"),
    ("dpm_solver", {}, "flow", {}, "score", "alpha\\(t_max\\) = 0"),
    ("heun", {"variable": "sigma"}, "flow", {}, "velocity", "sigma/alpha is infinite"),
    ("heun", {"variable": "x"}, "vp", {}, "eps", "valid choices: 'sigma', 't'"),
    ("heun", {"order": 3}, "vp", {}, "eps", "order must be"),
    ("heun", {"S_churn": -1.0}, "vp", {}, "eps", "S_churn >= 0"),
    ("euler", {"steps": 0}, "vp", {}, "eps", "steps >= 1"),
    ("reverse_sde", {"sigma_rev": 1.5}, "vp", {}, "eps", "sigma_rev must lie in"),
    ("pc", {"predictor": "langevin"}, "vp", {}, "eps", "valid choices: 'euler_maruyama'"),
    ("pc", {"snr": 0.0}, "vp", {}, "eps", "snr must be positive"),
    ("pc", {"n_corrector": -1}, "vp", {}, "eps", "n_corrector must be"),
    ("ode", {"solver": "rk4"}, "vp", {}, "eps", "valid choices: 'euler', 'heun'"),
    ("ode", {"solver": "euler"}, "vp", {}, "eps", "need an error estimate"),
    ("ode", {"rtol": 0.0}, "vp", {}, "eps", "rtol and atol must be positive"),
    ("ode", {"steps": 1, "adaptive": False}, "vp", {}, "eps", "steps >= 2"),
    ("dpm_solver", {"method": "adaptive"}, "vp", {}, "eps", "valid choices: 'multistep', 'singlestep'"),
    ("dpm_solver", {"order": 3}, "vp", {}, "eps", "order must be 1 or 2"),
    ("dpm_solver", {"steps": 2000}, "ddpm", {}, "eps", "between 1 and T=1000"),
    ("euler", {"timesteps": (1.0, 0.5, 0.0)}, "flow", {}, "velocity", "above clean data"),
]


@pytest.mark.parametrize("name, knobs, process_name, process_knobs, kind, message", INVALID)
def test_bad_choices_raise_before_tracing(name, knobs, process_name, process_knobs, kind, message):
    before = _sample._cache_size()
    with pytest.raises(ValueError, match=message):
        dj.sample(
            jax.random.key(0),
            _model(kind),
            dj.process(process_name, **process_knobs),
            dj.sampler(name, **knobs),
            (2, 2),
        )
    assert _sample._cache_size() == before


def test_unknown_knobs_and_table():
    with pytest.raises(ValueError, match="valid knobs: .*S_churn"):
        dj.sampler("heun", churn=1.0)
    with pytest.raises(ValueError, match="dpm_solver, euler, euler_maruyama, heun, ode, pc, reverse_sde"):
        dj.sampler("rk45")
    assert isinstance(dj.sampler("reverse_sde"), dj.sampler("euler_maruyama").__class__)
    assert isinstance(dj.sampler("ode"), ProbabilityFlowODE)
    assert hash(dj.sampler("heun", S_churn=1.0)) == hash(dj.sampler("heun", S_churn=1.0))
