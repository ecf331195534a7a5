"""Objectives against exact oracles: the Bayes-optimal prediction is a stationary point of every loss,
closed-form values at a zero network, and the identities of FORMULATIONS (一), (二), (五) and the EDM note.

Noise floors (measured, float32):

* Stationarity: the gradient along a direction h is a batch mean of i.i.d. per-example contributions, so its
  standard error is their std / sqrt(B). Over 8 keys x 15 cases x 3 directions at the oracle the z-scores had
  rms 0.97 and max |z| 2.8, so the bound is |z| < 4. With the oracle of a mixture whose means are shifted by
  0.5 the largest |z| per case was >= 14.8 (ELBO, posterior sigma), so power is asserted as max |z| > 8.
* Zero-network values: 32 keys x 2048 points; each estimate is within 1.3 SE of the closed form (SE from the
  32 per-key values, 0.4-2% relative), so the bound is 4 SE.
* Exact identities: float32 round-off (<= 1e-6 relative), bound rtol 1e-5; float64 ones rtol 1e-10.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from diffjax.objectives import OBJECTIVES, TIME_SAMPLINGS, LogNormal, Uniform, UniformDiscrete, elbo_weight, objective
from diffjax.preconditioning import PRECONDITIONINGS, edm_coefficients, edm_loss_weight
from diffjax.processes import process
from diffjax.testing import gaussian_mixture

MEANS = np.array([[-1.0, 0.5], [1.5, -0.5]])
DATA = gaussian_mixture([0.3, 0.7], MEANS, [0.3, 0.5])
WRONG = gaussian_mixture([0.3, 0.7], MEANS + 0.5, [0.3, 0.5])  # a plausible but wrong oracle
BATCH = 16384


def _directions(x, t, t_scale):
    """Three fixed smooth perturbation directions `(B, 3, d)`: sin(x)(1 + t), x, and (1 + t)."""
    tt = jnp.asarray(t, x.dtype)[:, None, None] / t_scale
    x = x[:, None, :]
    return jnp.concatenate([jnp.sin(x) * (1 + tt), x, jnp.ones_like(x) * (1 + tt)], axis=1)


def _sigma_from_c_noise(row, c_noise):
    """Inverts EDM's c_noise(sigma) for the `edm` and `vp` rows."""
    if row == "edm":
        return jnp.exp(4.0 * c_noise)
    t_vp = c_noise / 999.0
    return jnp.sqrt(jnp.expm1(0.5 * 19.9 * t_vp**2 + 0.1 * t_vp))


def _perturbed_oracle(proc, kind, precond):
    """`apply_fn(params, ...) = exact(...) + sum_k params[:, k] h_k(...)`, with the data inside params.

    For a preconditioned EDM loss the exact raw network is `F* = (D* - c_skip x_hat) / c_out`, with `x_hat` and
    `sigma` recovered from the network's inputs `(c_in x_hat, c_noise)` on the `edm` process (alpha = 1).
    """
    if precond is None:
        def apply_fn(params, x, t):
            exact = params["data"].predictor(proc, kind)(x, t)
            return exact + (params["p"][:, :, None] * _directions(x, t, proc.t_max)).sum(1)
        return apply_fn

    def raw_fn(params, x_in, c_noise):
        sigma = _sigma_from_c_noise(precond, c_noise)
        c_skip, c_out, c_in, _ = edm_coefficients(precond, sigma)
        x_hat = x_in / c_in[:, None]
        denoised = params["data"].posterior_mean(x_hat, 1.0, sigma)
        exact = (denoised - c_skip[:, None] * x_hat) / c_out[:, None]
        return exact + (params["p"][:, :, None] * _directions(x_in, c_noise, 10.0)).sum(1)
    return raw_fn


STATIONARY_CASES = [
    ("eps_mse", "ddpm", "eps", {}),
    ("eps_mse", "ddpm", "x0", {}),
    ("eps_mse", "ddpm", "v", {}),
    ("elbo", "ddpm", "eps", {"sigma_type": "posterior"}),
    ("elbo", "ddpm", "eps", {"sigma_type": "beta"}),
    ("x0_mse", "ve", "eps", {}),
    ("v_mse", "vp", "x0", {}),
    ("dsm", "vp", "eps", {"weighting": "sigma2"}),
    ("dsm", "vp", "score", {"weighting": "g2"}),
    ("dsm", "vp", "score", {"weighting": "none"}),
    ("flow_matching", "flow", "velocity", {"t_min": 1e-3}),  # eps is undefined at t = 0 (sigma = 0)
    ("flow_matching", "vp", "velocity", {}),
    ("edm", "edm", "x0", {"precond": None}),
    ("edm", "edm", "eps", {"precond": "edm"}),
    ("edm", "edm", "eps", {"precond": "vp"}),
]


@pytest.mark.parametrize("name, proc_name, kind, knobs", STATIONARY_CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}-{'-'.join(map(str, c[3].values()))}" for c in STATIONARY_CASES])
def test_bayes_optimal_prediction_is_stationary(name, proc_name, kind, knobs):
    """d loss / d params = 0 at the exact posterior-mean prediction, and != 0 at a wrong oracle."""
    proc = process(proc_name)
    loss = objective(name, proc, prediction=kind, **knobs)
    apply_fn = _perturbed_oracle(proc, kind, knobs.get("precond"))
    x0 = DATA.sample(jax.random.key(1), BATCH)

    @jax.jit
    def per_example_grads(data):
        # One parameter per example and direction: B * dL/dp_b is example b's i.i.d. gradient contribution.
        grad_fn = jax.grad(lambda p: loss(jax.random.key(2), apply_fn, {"p": p, "data": data}, x0))
        return grad_fn(jnp.zeros((BATCH, 3)))

    def z_scores(data):
        contrib = np.asarray(per_example_grads(data), np.float64) * BATCH
        return contrib.mean(0) / (contrib.std(0, ddof=1) / np.sqrt(BATCH))

    z_exact, z_wrong = z_scores(DATA), z_scores(WRONG)
    assert np.all(np.isfinite(z_exact))
    assert np.max(np.abs(z_exact)) < 4.0, z_exact
    assert np.max(np.abs(z_wrong)) > 8.0, z_wrong


# ---- closed-form values at a zero network and x0 = 0 -----------------------------------------------------------
def _zero_network(params, x, t):
    return jnp.zeros_like(x)


def _assert_mc_close(loss, exact, num_keys=32, batch=2048):
    keys = jax.random.split(jax.random.key(3), num_keys)
    x0 = jnp.zeros((batch, 2))
    values = np.asarray(jax.jit(jax.vmap(lambda k: loss(k, _zero_network, None, x0)))(keys), np.float64)
    se = values.std(ddof=1) / np.sqrt(num_keys)
    assert abs(values.mean() - exact) < 4 * se, (values.mean(), exact, se)


def test_eps_mse_of_zero_network_is_one():
    """`E ||eps - 0||^2 / d = 1`; with the `velocity` kind on the flow, `u = eps - x_0 = eps` gives 1 too."""
    _assert_mc_close(objective("eps_mse", process("vp")), 1.0)
    _assert_mc_close(objective("flow_matching", process("flow"), prediction="velocity"), 1.0)


@pytest.mark.parametrize("sigma_type", ["posterior", "beta"])
def test_elbo_of_zero_network_is_mean_weight(sigma_type):
    """`E_t w_t ||eps||^2 / d = mean_t w_t`, with w_t in Ho's form `beta_t^4 / (2 bbar_t^2 alpha_t^2 sigma_t^2)`."""
    ddpm = process("ddpm")
    abar = ddpm.alpha_bars()
    alpha2, bbar2 = abar[1:] ** 2 / abar[:-1] ** 2, 1 - abar**2
    beta2 = 1 - alpha2
    sigma2 = beta2 * bbar2[:-1] / bbar2[1:] if sigma_type == "posterior" else beta2.copy()
    sigma2[0] = beta2[0]  # the documented t = 1 convention: posterior sigma_1 = 0 is replaced by beta_1
    w = beta2**2 / (2 * bbar2[1:] * alpha2 * sigma2)
    _assert_mc_close(objective("elbo", ddpm, sigma_type=sigma_type), w.mean())


def test_dsm_likelihood_weighting_of_zero_network():
    """VP: `E_t g^2/sigma^2 = E_t d/dt log(e^{B(t)} - 1)` with `B = -2 log alpha`, in closed form."""
    vp = process("vp")

    def log_expm1_b(t):
        return np.log(np.expm1(0.5 * t**2 * (vp.beta_max - vp.beta_min) + t * vp.beta_min))

    exact = (log_expm1_b(1.0) - log_expm1_b(vp.t_eps)) / (1.0 - vp.t_eps)
    _assert_mc_close(objective("dsm", vp, weighting="g2"), exact)


def test_x0_mse_of_zero_eps_network_on_ve():
    """VE with eps_hat = 0: `x0_hat = x_t = sigma eps`, so the loss is `E_t sigma^2 = s_min^2 (r^2 - 1)/(2 ln r)`."""
    ve = process("ve")
    ratio = ve.sigma_max / ve.sigma_min
    _assert_mc_close(objective("x0_mse", ve), ve.sigma_min**2 * (ratio**2 - 1) / (2 * np.log(ratio)))


def test_edm_of_zero_raw_network():
    """F = 0: `D = c_skip sigma eps`, so the loss is `E lambda c_skip^2 sigma^2 = E s_d^2/(sigma^2 + s_d^2)`.

    With ln sigma ~ N(-1.2, 1.2^2) that expectation is a 1-D integral, done by quadrature.
    """
    sd = 0.5
    exact = integrate.quad(lambda z: sd**2 / (np.exp(2 * (-1.2 + 1.2 * z)) + sd**2) * stats.norm.pdf(z), -12, 12)[0]
    _assert_mc_close(objective("edm", process("edm")), exact)


# ---- identities ------------------------------------------------------------------------------------------------
def _smooth_network(params, x, t):
    return params * jnp.tanh(x) + 0.1 * jnp.cos(x)


def _each_objective():
    for name in OBJECTIVES:
        proc = process("ddpm", num_steps=100) if name == "elbo" else process("vp")
        kind = "velocity" if name == "flow_matching" else "eps"
        yield name, proc, kind


@pytest.mark.parametrize("name, proc, kind", list(_each_objective()), ids=list(OBJECTIVES))
def test_sum_reduction_is_d_times_mean(name, proc, kind):
    """On x0 of shape (B, 3, 4) the per-example sum is d = 12 times the per-example mean (same key)."""
    x0 = jax.random.normal(jax.random.key(4), (64, 3, 4))
    key = jax.random.key(5)
    by_sum = objective(name, proc, prediction=kind, reduction="sum")(key, _smooth_network, 0.7, x0)
    by_mean = objective(name, proc, prediction=kind, reduction="mean")(key, _smooth_network, 0.7, x0)
    np.testing.assert_allclose(by_sum, 12 * by_mean, rtol=1e-5)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "su"])
def test_elbo_weight_identity(schedule):
    """(二): `beta_t^2/(alpha_t^2 bbar_{t-1}^2) = SNR_{t-1}/SNR_t - 1` for t >= 2, in float64."""
    abar = process("ddpm", schedule=schedule).alpha_bars()
    alpha2, bbar2 = abar[1:] ** 2 / abar[:-1] ** 2, 1 - abar**2
    snr = abar[1:] ** 2 / bbar2[1:]  # SNR_t for t = 1..T
    lhs = (1 - alpha2[1:]) / (alpha2[1:] * bbar2[1:-1])
    np.testing.assert_allclose(lhs, snr[:-1] / snr[1:] - 1, rtol=1e-10)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "su"])
def test_elbo_weight_matches_formulas(schedule, x64):
    """`elbo_weight` = 1/2 (SNR_{t-1}/SNR_t - 1) (posterior, t >= 2) and 1/2 beta_t^2/(alpha_t^2 bbar_t^2) (beta)."""
    ddpm = process("ddpm", schedule=schedule)
    abar = ddpm.alpha_bars()
    alpha2, bbar2 = abar[1:] ** 2 / abar[:-1] ** 2, 1 - abar**2
    snr = abar[1:] ** 2 / bbar2[1:]  # SNR_t for t = 1..T
    t = jnp.arange(1, ddpm.num_steps + 1)
    beta_w = 0.5 * (1 - alpha2) / (alpha2 * bbar2[1:])
    posterior_w = np.concatenate([beta_w[:1], 0.5 * (snr[:-1] / snr[1:] - 1)])
    np.testing.assert_allclose(elbo_weight(ddpm, t, "beta"), beta_w, rtol=1e-10)
    np.testing.assert_allclose(elbo_weight(ddpm, t, "posterior"), posterior_w, rtol=1e-10)
    assert elbo_weight(ddpm, t, "posterior").dtype == jnp.float64


@pytest.mark.parametrize("kind", ["eps", "score", "x0"])
def test_dsm_sigma2_equals_eps_mse(kind):
    """(五): `sigma^2 ||s_hat + eps/sigma||^2 = ||eps - eps_hat||^2`, so the two losses agree on one key."""
    vp = process("vp")
    x0 = DATA.sample(jax.random.key(6), 512)
    key = jax.random.key(7)
    dsm = objective("dsm", vp, prediction=kind, weighting="sigma2")(key, _smooth_network, 0.3, x0)
    eps_mse = objective("eps_mse", vp, prediction=kind)(key, _smooth_network, 0.3, x0)
    np.testing.assert_allclose(dsm, eps_mse, rtol=1e-5)


@pytest.mark.parametrize("precond", PRECONDITIONINGS)
def test_edm_weight_times_c_out_squared_is_one(precond, x64):
    """EDM note: `lambda(sigma) c_out(sigma)^2 = 1` for every preconditioning row."""
    sigma = jnp.geomspace(2e-3, 80.0, 50)
    c_out = edm_coefficients(precond, sigma)[1]
    np.testing.assert_allclose(edm_loss_weight(precond, sigma) * c_out**2, 1.0, rtol=1e-12)


# ---- calling convention, jit and grad --------------------------------------------------------------------------
@pytest.mark.parametrize("proc_name, dtype", [("ddpm", jnp.int32), ("vp", jnp.float32)])
def test_network_sees_batch_times_and_cond(proc_name, dtype):
    """`t` reaches the network with shape (B,) (int32 steps on DDPM) and `cond` as a fourth argument."""
    seen = {}

    def apply_fn(params, x, t, cond):
        seen["t"], seen["cond"] = t, cond
        return params * x + cond[:, None]

    x0 = jnp.ones((8, 2))
    loss = objective("eps_mse", process(proc_name))
    value = loss(jax.random.key(0), apply_fn, 0.5, x0, jnp.arange(8.0))
    assert seen["t"].shape == (8,) and seen["t"].dtype == dtype
    assert seen["cond"].shape == (8,)
    assert value != loss(jax.random.key(0), apply_fn, 0.5, x0, jnp.zeros(8))


def test_preconditioned_edm_passes_cond_positionally():
    """With `precond`, the raw network is called as `F(params, c_in x_hat, c_noise, cond)`."""
    def raw_fn(params, x_in, c_noise, cond):
        assert c_noise.shape == (x_in.shape[0],)
        return params * x_in + cond

    loss = objective("edm", process("edm"), precond="edm")
    x0 = jnp.ones((8, 2))
    a = loss(jax.random.key(0), raw_fn, 0.5, x0, 1.0)
    b = loss(jax.random.key(0), raw_fn, 0.5, x0, -1.0)
    assert np.isfinite(a) and a != b


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_jit_and_grad(name):
    """`jax.jit(loss, static_argnums=1)` matches the eager value and `jax.grad` w.r.t. params is finite."""
    proc = process("ddpm", num_steps=100) if name == "elbo" else process("vp")
    loss = objective(name, proc, prediction="velocity" if name == "flow_matching" else "eps")
    x0 = DATA.sample(jax.random.key(8), 256)
    key = jax.random.key(9)
    jitted = jax.jit(loss, static_argnums=1)(key, _smooth_network, 0.3, x0)
    np.testing.assert_allclose(jitted, loss(key, _smooth_network, 0.3, x0), rtol=1e-5)
    grad = jax.grad(lambda p: loss(key, _smooth_network, p, x0))(0.3)
    assert np.isfinite(grad) and grad != 0.0


def test_default_time_samplings():
    """Discrete -> uniform_discrete; edm objective -> log_normal (with its knobs); otherwise uniform."""
    assert objective("eps_mse", process("ddpm")).time_sampling == UniformDiscrete()
    assert objective("eps_mse", process("vp")).time_sampling == Uniform()
    assert objective("edm", process("ddpm")).time_sampling == LogNormal()
    assert objective("edm", process("vp"), p_mean=0.3, p_std=0.5).time_sampling == LogNormal(0.3, 0.5)
    assert isinstance(objective("v_mse", process("vp"), time_sampling="logit_normal").time_sampling,
                      TIME_SAMPLINGS["logit_normal"])


# ---- errors ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, match", [
    (lambda: objective("eps_mes", process("vp")), "valid objectives: dsm, edm, elbo, eps_mse, flow_matching"),
    (lambda: objective("eps_mse", process("vp"), sigma_type="beta"), "valid knobs: t_max, t_min"),
    (lambda: objective("dsm", process("vp"), p_mean=0.0), "valid knobs: t_max, t_min, weighting"),
    (lambda: objective("edm", process("vp"), time_sampling="uniform", p_mean=0.0),
     "valid knobs: precond, sigma_data, t_max, t_min, weighting"),
    (lambda: objective("eps_mse", process("vp"), time_sampling="lognormal"), "valid time samplings: log_normal"),
    (lambda: objective("eps_mse", process("vp"), prediction="noise"), "valid choices: 'eps', 'x0'"),
    (lambda: objective("eps_mse", process("vp"), reduction="max"), "valid choices: 'mean', 'sum'"),
    (lambda: objective("elbo", process("vp")), "needs the discrete 'ddpm' process.*weighting='g2'"),
    (lambda: objective("elbo", process("ddpm"), sigma_type="large"), "valid choices: 'posterior', 'beta'"),
    (lambda: objective("dsm", process("vp"), weighting="elbo"), "valid choices: 'sigma2', 'g2', 'none'"),
    (lambda: objective("edm", process("edm"), precond="iddpm"), "valid choices: 'vp', 've', 'edm', 'fm'"),
    (lambda: objective("eps_mse", process("vp"), time_sampling="uniform_discrete"),
     "needs a discrete process.*use 'uniform', 'log_normal' or 'logit_normal'"),
    (lambda: objective("eps_mse", process("ddpm"), time_sampling="uniform"), "use time_sampling='uniform_discrete'"),
    (lambda: objective("flow_matching", process("ddpm")), "needs a continuous process.*use process 'flow' or 'vp'"),
    (lambda: objective("eps_mse", process("ddpm"), prediction="velocity"), "use prediction 'eps', 'x0', 'v'"),
])
def test_errors_name_the_fix(call, match):
    with pytest.raises(ValueError, match=match):
        call()
