"""The Gaussian-mixture oracle (FORMULATIONS §1.4) against autodiff, quadrature, scipy and Monte Carlo."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from diffjax.processes import process
from diffjax.testing import dirac, gaussian_mixture, standard_normal

# (alpha, sigma) pairs: clean-ish, VP-like, VE-like, mostly noise.
LEVELS = [(1.0, 0.05), (0.8, 0.6), (1.0, 3.0), (0.1, 0.995)]


def _mixture_3d():
    return gaussian_mixture([0.2, 0.5, 0.3], [[-1.0, 0.5, 0.0], [0.7, -0.3, 1.2], [0.0, 1.5, -1.0]],
                            [[0.3, 0.3, 0.3], [0.6, 0.2, 0.4], [0.2, 0.4, 0.8]])


def _mixture_1d():
    return gaussian_mixture([0.2, 0.5, 0.3], [[-2.0], [0.0], [1.5]], [0.1, 0.5, 0.3])


def _points(key, n=6, d=3):
    return 1.5 * jax.random.normal(key, (n, d), jnp.float64)


# ---- score, Tweedie --------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", LEVELS)
def test_score_is_the_gradient_of_log_prob(level, key, x64):
    data, x = _mixture_3d(), _points(key)
    alpha, sigma = level
    grad = jax.grad(lambda y: data.log_prob(y, alpha, sigma).sum())(x)  # rows are independent
    np.testing.assert_allclose(data.score(x, alpha, sigma), grad, rtol=1e-10, atol=1e-12)


def test_per_example_levels_match_scalar_levels(key, x64):
    data, x = _mixture_3d(), _points(key, n=len(LEVELS))
    alphas, sigmas = (jnp.asarray(v, jnp.float64) for v in zip(*LEVELS, strict=True))
    for method in ("log_prob", "score", "posterior_mean", "eps", "responsibilities"):
        batched = getattr(data, method)(x, alphas, sigmas)
        for i, (a, s) in enumerate(LEVELS):
            np.testing.assert_allclose(batched[i], getattr(data, method)(x[i:i + 1], a, s)[0], rtol=1e-12,
                                       err_msg=method)


@pytest.mark.parametrize("level", LEVELS)
def test_tweedie_first_and_second_order(level, key, x64):
    """E[x_0|x_t] = (x_t + σ² ∇log p_t)/α and Var[x_0|x_t] = (σ²/α²)(1 + σ² diag ∇² log p_t)."""
    data, x = _mixture_3d(), _points(key)
    alpha, sigma = level
    mean, var = data.posterior(x, alpha, sigma)
    score = data.score(x, alpha, sigma)
    np.testing.assert_allclose(mean, (x + sigma**2 * score) / alpha, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(data.posterior_mean(x, alpha, sigma), mean, rtol=0, atol=0)
    hessian = jax.vmap(jax.hessian(lambda y: data.log_prob(y[None], alpha, sigma)[0]))(x)
    diag = jnp.diagonal(hessian, axis1=-2, axis2=-1)
    np.testing.assert_allclose(var, sigma**2 / alpha**2 * (1 + sigma**2 * diag), rtol=1e-8, atol=1e-11)
    assert bool(jnp.all(var > 0))


@pytest.mark.parametrize("level", [(1.0, 0.3), (0.6, 0.8)])
def test_posterior_moments_by_quadrature(level, x64):
    """In 1-D, E[x_0|x_t] and Var[x_0|x_t] by Bayes' rule on a fine grid (trapezoid, error < 1e-10)."""
    data = _mixture_1d()
    alpha, sigma = level
    grid = jnp.linspace(-6.0, 6.0, 60_001)
    prior = jnp.exp(data.log_prob(grid[:, None]))
    for x_t in (-1.7, 0.2, 1.1):
        weight = prior * jnp.exp(-0.5 * ((x_t - alpha * grid) / sigma) ** 2)
        z = jnp.trapezoid(weight, grid)
        m = jnp.trapezoid(weight * grid, grid) / z
        v = jnp.trapezoid(weight * grid**2, grid) / z - m**2
        mean, var = data.posterior(jnp.asarray([[x_t]]), alpha, sigma)
        np.testing.assert_allclose(mean[0, 0], m, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(var[0, 0], v, rtol=1e-8, atol=1e-10)


# ---- densities -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", [(1.0, 0.0), (0.6, 0.8), (1.0, 2.0)])
def test_1d_density_integrates_to_one(level, x64):
    data = _mixture_1d()
    grid = jnp.linspace(-15.0, 15.0, 30_001)  # dx = 1e-3 = std/100 of the narrowest component
    density = jnp.exp(data.log_prob(grid[:, None], *level))
    np.testing.assert_allclose(jnp.trapezoid(density, grid), 1.0, rtol=0, atol=1e-9)


def test_log_prob_of_data_matches_scipy(key, x64):
    data = _mixture_1d()
    x = np.linspace(-3.0, 3.0, 13)
    w, mu, s = (np.asarray(v) for v in (data.weights, data.means[:, 0], data.stds[:, 0]))
    ref = scipy.special.logsumexp(np.log(w) + scipy.stats.norm.logpdf(x[:, None], mu, s), axis=1)
    np.testing.assert_allclose(data.log_prob(x[:, None]), ref, rtol=1e-12)
    # 3-D with diagonal components.
    data3, x3 = _mixture_3d(), np.asarray(_points(key))
    terms = [np.log(float(data3.weights[k])) + scipy.stats.multivariate_normal.logpdf(
        x3, np.asarray(data3.means[k]), np.diag(np.asarray(data3.stds[k]) ** 2)) for k in range(3)]
    np.testing.assert_allclose(data3.log_prob(x3), scipy.special.logsumexp(terms, axis=0), rtol=1e-12)
    # A noisy marginal is the mixture of N(alpha mu_k, alpha^2 s_k^2 + sigma^2).
    a, sg = 0.6, 0.8
    ref = scipy.special.logsumexp(
        np.log(w) + scipy.stats.norm.logpdf(x[:, None], a * mu, np.sqrt(a**2 * s**2 + sg**2)), axis=1)
    np.testing.assert_allclose(data.log_prob(x[:, None], a, sg), ref, rtol=1e-12)


# ---- sampling and moments -------------------------------------------------------------------------------------
def test_mean_and_variance_closed_form(x64):
    data = gaussian_mixture([0.3, 0.7], [[-1.0], [2.0]], [0.5, 1.0])
    # E = 0.3(-1) + 0.7(2) = 1.1; E[x^2] = 0.3(0.25 + 1) + 0.7(1 + 4) = 3.875; Var = 3.875 - 1.21.
    np.testing.assert_allclose(data.mean(), [1.1], rtol=1e-14)
    np.testing.assert_allclose(data.variance(), [2.665], rtol=1e-14)


def test_sample_frequencies_and_moments(key):
    """Component frequencies within 5 binomial standard errors; per-component and overall moments within
    5 standard errors estimated from the sample itself. Measured worst |z| with this key: 2.7."""
    data, n = _mixture_3d(), 200_000
    x, comp = data.sample(key, n, return_components=True)
    assert x.shape == (n, 3) and comp.shape == (n,)
    x, comp = np.asarray(x, np.float64), np.asarray(comp)
    w = np.asarray(data.weights, np.float64)
    counts = np.bincount(comp, minlength=3)
    z_freq = (counts / n - w) / np.sqrt(w * (1 - w) / n)
    assert np.all(np.abs(z_freq) < 5), z_freq
    for k in range(3):
        xk = x[comp == k]
        mu, s = np.asarray(data.means[k]), np.asarray(data.stds[k])
        assert np.all(np.abs(xk.mean(0) - mu) < 5 * s / np.sqrt(len(xk))), k
        assert np.all(np.abs(xk.var(0) / s**2 - 1) < 5 * np.sqrt(2 / len(xk))), k
    mean, var = np.asarray(data.mean()), np.asarray(data.variance())
    centred = x - x.mean(0)
    assert np.all(np.abs(x.mean(0) - mean) < 5 * x.std(0) / np.sqrt(n))
    se_var = (centred**2).std(0) / np.sqrt(n)  # the sample variance's standard error, kurtosis included
    assert np.all(np.abs(x.var(0) - var) < 5 * se_var), (x.var(0), var, se_var)


def test_tower_property_of_the_posterior(key):
    """E[E[x_0|x_t]] = E[x_0] and E[Var[x_0|x_t]] + Var[E[x_0|x_t]] = Var[x_0] (Monte Carlo, 5 SE).

    The second SE is the sum of both terms' SEs (they are correlated). Measured worst |z| with this key: 1.2.
    """
    data, n, (alpha, sigma) = _mixture_3d(), 100_000, (0.8, 0.6)
    k0, k1 = jax.random.split(key)
    x_t = alpha * data.sample(k0, n) + sigma * jax.random.normal(k1, (n, 3))
    mean, var = (np.asarray(v, np.float64) for v in data.posterior(x_t, alpha, sigma))
    assert np.all(np.abs(mean.mean(0) - data.mean()) < 5 * mean.std(0) / np.sqrt(n))
    total = var.mean(0) + mean.var(0)
    se = (var.std(0) + ((mean - mean.mean(0)) ** 2).std(0)) / np.sqrt(n)
    assert np.all(np.abs(total - data.variance()) < 5 * se), (total, data.variance(), se)


# ---- special cases ---------------------------------------------------------------------------------------------
def test_dirac_posterior_is_the_point(key, x64):
    point = jnp.asarray([0.3, -1.2, 2.0])
    data, x = dirac(point), 4.0 * _points(key)
    for alpha, sigma in LEVELS:
        mean, var = data.posterior(x, alpha, sigma)
        np.testing.assert_allclose(mean, jnp.broadcast_to(point, x.shape), rtol=1e-14)
        np.testing.assert_array_equal(var, 0.0)
        np.testing.assert_allclose(data.eps(x, alpha, sigma), (x - alpha * point) / sigma, rtol=1e-12)
    p = process("ddpm")
    np.testing.assert_allclose(data.predictor(p, "x0")(x, jnp.arange(1, 7) * 150), jnp.broadcast_to(point, x.shape),
                               rtol=1e-14)


def test_standard_normal_eps_is_sigma_x_on_vp(key, x64):
    data, x = standard_normal(3), _points(key)
    np.testing.assert_array_equal(data.mean(), 0.0)
    np.testing.assert_array_equal(data.variance(), 1.0)
    for name in ("vp", "ddpm"):
        p = process(name)
        t = jnp.asarray([0.01, 0.2, 0.4, 0.6, 0.8, 1.0]) if name == "vp" else jnp.arange(1, 7) * 160
        sigma = p.sigma(t)[:, None]
        # VP tables for ddpm are float32, so alpha^2 + sigma^2 = 1 only to ~1e-7 there.
        rtol = 1e-12 if name == "vp" else 1e-6
        np.testing.assert_allclose(data.predictor(p, "eps")(x, t), sigma * x, rtol=rtol)
        np.testing.assert_allclose(data.predictor(p, "x0")(x, t), p.alpha(t)[:, None] * x, rtol=rtol)
    # Off VP the score is -x / (alpha^2 + sigma^2), not -x.
    np.testing.assert_allclose(data.score(x, 1.0, 2.0), -x / 5.0, rtol=1e-14)


def test_predictor_accepts_image_shapes_and_compiles_once(key):
    data = gaussian_mixture([0.5, 0.5], [[1.0] * 4, [-1.0] * 4], 0.3)
    p = process("vp")
    x = jax.random.normal(key, (3, 2, 2))
    out = data.predictor(p, "x0")(x, 0.5)
    assert out.shape == (3, 2, 2)
    np.testing.assert_allclose(out.reshape(3, 4), data.posterior_mean(x.reshape(3, 4), p.alpha(0.5), p.sigma(0.5)),
                               rtol=1e-6)
    traces = []

    @jax.jit
    def apply(predictor, x):
        traces.append(None)
        return predictor(x, 0.5)

    apply(data.predictor(p, "x0"), x)
    apply(data.predictor(p, "x0"), x)  # a second oracle for the same data: no recompilation
    assert len(traces) == 1


def test_constructor_errors():
    with pytest.raises(ValueError, match="shape"):
        gaussian_mixture([0.5, 0.5], [[0.0], [1.0], [2.0]], 1.0)
    with pytest.raises(ValueError, match="sum to one"):
        gaussian_mixture([0.5, 0.6], [[0.0], [1.0]], 1.0)
    with pytest.raises(ValueError, match="non-negative"):
        gaussian_mixture([1.5, -0.5], [[0.0], [1.0]], 1.0)
    with pytest.raises(ValueError, match="standard deviations"):
        gaussian_mixture([0.5, 0.5], [[0.0], [1.0]], [1.0, -0.1])
    data = gaussian_mixture([1.0], [0.0, 1.0], [[0.5, 2.0]])
    assert data.dim == 2 and data.num_components == 1
