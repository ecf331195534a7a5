"""EDM preconditioning (EDM unification note, Table 1): coefficient identities and an exact wrapper."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax.preconditioning import PRECONDITIONINGS, edm_coefficients, edm_loss_weight, precondition
from diffjax.processes import process
from diffjax.testing import gaussian_mixture

SIGMA_DATA = 0.5
SIGMAS = np.logspace(-3, 2, 51)


def _table_lambda(row, sigma, sigma_data=SIGMA_DATA):
    """The λ(σ) column of the table in FORMULATIONS (EDM note), written out independently."""
    return {
        "vp": 1 / sigma**2,
        "ve": 1 / sigma**2,
        "edm": (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2,
        "fm": (1 + sigma) ** 2 / sigma**2,
    }[row]


@pytest.mark.parametrize("row", PRECONDITIONINGS)
def test_loss_weight_times_c_out_squared_is_one(row, x64):
    sigma = jnp.asarray(SIGMAS)
    c_out = edm_coefficients(row, sigma, SIGMA_DATA)[1]
    lam = _table_lambda(row, SIGMAS)
    np.testing.assert_allclose(lam * np.asarray(c_out) ** 2, 1.0, rtol=1e-12)
    np.testing.assert_allclose(edm_loss_weight(row, sigma, SIGMA_DATA), lam, rtol=1e-12)


def test_coefficients_match_the_table(x64):
    s, sd = SIGMAS, SIGMA_DATA
    expected = {
        "vp": (1 + 0 * s, -s, 1 / np.sqrt(s**2 + 1), None),
        "ve": (1 + 0 * s, s, 1 + 0 * s, np.log(s / 2)),
        "edm": (sd**2 / (s**2 + sd**2), s * sd / np.sqrt(s**2 + sd**2), 1 / np.sqrt(s**2 + sd**2), np.log(s) / 4),
        "fm": (1 / (1 + s), -s / (1 + s), 1 / (1 + s), s / (1 + s)),
    }
    for row, coefs in expected.items():
        got = edm_coefficients(row, jnp.asarray(s), sd)
        for name, g, e in zip(("c_skip", "c_out", "c_in", "c_noise"), got, coefs, strict=True):
            if e is not None:
                np.testing.assert_allclose(g, e, rtol=1e-13, atol=1e-15, err_msg=f"{row} {name}")


def test_vp_c_noise_is_scaled_vp_time(x64):
    """EDM's vp row: c_noise = (M - 1) t where sigma = VP(beta_min = 0.1, beta_max = 20)'s sigma(t)/alpha(t)."""
    vp = process("vp", beta_min=0.1, beta_max=20.0)  # beta_d = beta_max - beta_min = 19.9
    t = jnp.linspace(1e-3, 1.0, 200)
    c_noise = edm_coefficients("vp", vp.edm_sigma(t))[3]
    np.testing.assert_allclose(c_noise, 999.0 * t, rtol=1e-10)
    # EDM's closed form sigma(t) = sqrt(exp(1/2 beta_d t^2 + beta_min t) - 1) is the same edm_sigma.
    np.testing.assert_allclose(vp.edm_sigma(t), np.sqrt(np.expm1(0.5 * 19.9 * t**2 + 0.1 * t)), rtol=1e-12)


def test_edm_row_has_unit_variance_in_closed_form(x64):
    s, sd = jnp.asarray(SIGMAS), SIGMA_DATA
    c_skip, c_out, c_in, _ = edm_coefficients("edm", s, sd)
    np.testing.assert_allclose(c_in**2 * (sd**2 + s**2), 1.0, rtol=1e-13)
    target_var = ((1 - c_skip) ** 2 * sd**2 + c_skip**2 * s**2) / c_out**2
    np.testing.assert_allclose(target_var, 1.0, rtol=1e-12)


def test_edm_row_has_unit_variance_by_monte_carlo(key, x64):
    """x_0 ~ N(0, σ_d²), n ~ N(0, 1): the network input c_in (x_0 + σ n) and its target both have variance 1.

    Both are Gaussian, so a sample variance has standard error sqrt(2/(N-1)) = 0.32% at N = 200k; the
    tolerance is 5 of them (1.6%). Measured worst deviation with this key: 0.5% (1.6 standard errors).
    The VE row (c_in = 1) is a control that must fail the same check.
    """
    n = 200_000
    k0, k1 = jax.random.split(key)
    x0 = SIGMA_DATA * jax.random.normal(k0, (n,), jnp.float64)
    noise = jax.random.normal(k1, (n,), jnp.float64)
    tol = 5 * np.sqrt(2 / (n - 1))
    for sigma in (0.002, 0.05, 0.5, 2.0, 80.0):
        c_skip, c_out, c_in, _ = edm_coefficients("edm", sigma, SIGMA_DATA)
        x_hat = x0 + sigma * noise
        assert abs(float(jnp.var(c_in * x_hat)) - 1) < tol, sigma
        assert abs(float(jnp.var((x0 - c_skip * x_hat) / c_out)) - 1) < tol, sigma
        _, _, c_in_ve, _ = edm_coefficients("ve", sigma, SIGMA_DATA)
        if sigma >= 0.5:
            assert abs(float(jnp.var(c_in_ve * x_hat)) - 1) > 10 * tol


# ---- the wrapper is exact ----------------------------------------------------------------------------------
def _sigma_from_c_noise(row, c_noise):
    """Inverts each row's c_noise(σ), so the raw network below sees only what a real network sees."""
    if row == "vp":
        t = c_noise / 999.0
        return jnp.sqrt(jnp.expm1(0.5 * 19.9 * t**2 + 0.1 * t))
    if row == "ve":
        return 2.0 * jnp.exp(c_noise)
    if row == "edm":
        return jnp.exp(4.0 * c_noise)
    return c_noise / (1.0 - c_noise)


def _ideal_raw_network(data, row):
    """F* = (D* - c_skip x̂) / c_out, with D*(x̂; σ) = E[x_0 | x_0 + σ n = x̂] the exact denoiser."""

    def raw(x_in, c_noise):
        sigma = _sigma_from_c_noise(row, c_noise)
        c_skip, c_out, c_in, _ = (jnp.reshape(c, (-1, 1)) if jnp.ndim(c) else c
                                  for c in edm_coefficients(row, sigma, SIGMA_DATA))
        x_hat = x_in / c_in
        return (data.posterior_mean(x_hat, 1.0, sigma) - c_skip * x_hat) / c_out

    return raw


_TIMES = {"edm": [0.01, 0.3, 2.0, 40.0], "vp": [0.02, 0.3, 0.6, 0.9], "ve": [0.05, 0.3, 0.6, 0.95],
          "subvp": [0.02, 0.3, 0.6, 0.9], "flow": [0.05, 0.3, 0.6, 0.9], "ddpm": [10, 250, 600, 900]}


@pytest.mark.parametrize("name", list(_TIMES))
@pytest.mark.parametrize("row", PRECONDITIONINGS)
def test_preconditioned_ideal_network_is_the_oracle_denoiser(name, row, key, x64):
    """precondition(F*) reproduces the oracle x0 predictor (measured worst relative error 5e-12)."""
    p = process(name)
    data = gaussian_mixture([0.3, 0.7], [[-1.0, 0.5], [0.8, -0.2]], [0.2, 0.5])
    oracle = data.predictor(p, "x0")
    wrapped = precondition(_ideal_raw_network(data, row), p, row, SIGMA_DATA)
    assert wrapped.kind == "x0"
    x = 2.0 * jax.random.normal(key, (4, 2), jnp.float64)
    dtype = jnp.int32 if p.is_discrete else jnp.float64
    ts = [jnp.asarray(t, dtype) for t in _TIMES[name]] + [jnp.asarray(_TIMES[name], dtype)]
    for t in ts:
        np.testing.assert_allclose(wrapped(x, t), oracle(x, t), rtol=1e-9, atol=1e-10, err_msg=f"t={t}")


def test_precondition_with_params_and_conditioning(key):
    p = process("edm")
    raw = lambda prm, x_in, c_noise, scale: prm * scale * x_in + c_noise[:, None]  # noqa: E731
    wrapped = precondition(raw, p, "edm", params=jnp.asarray(0.5))
    closure = precondition(lambda x_in, c_noise, scale: 0.5 * scale * x_in + c_noise[:, None], p, "edm")
    assert len(jax.tree_util.tree_leaves(wrapped)) == 1
    x, t = jax.random.normal(key, (3, 2)), jnp.asarray([0.1, 1.0, 10.0])
    np.testing.assert_allclose(wrapped(x, t, scale=2.0), closure(x, t, scale=2.0), rtol=1e-6)
    # By hand: D = c_skip x + c_out F(c_in x, c_noise).
    c_skip, c_out, c_in, c_noise = (c[:, None] for c in edm_coefficients("edm", t))
    np.testing.assert_allclose(wrapped(x, t, scale=2.0), c_skip * x + c_out * (c_in * x + c_noise),
                               rtol=1e-6)


def test_unknown_row_raises():
    p = process("edm")
    with pytest.raises(ValueError, match="valid choices: 'vp', 've', 'edm', 'fm'"):
        edm_coefficients("iddpm", 1.0)
    with pytest.raises(ValueError, match="preconditioning"):
        edm_loss_weight("nope", 1.0)
    with pytest.raises(ValueError, match="preconditioning"):
        precondition(lambda x, c: x, p, "nope")
