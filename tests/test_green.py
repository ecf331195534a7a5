"""Green's-function ODEs (article (十四)) against quadrature, the continuity equation and exact point-set oracles."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import diffjax as dj
from diffjax import green
from diffjax.testing import gaussian_mixture

N = 4000  # draws per KS test; the 1% critical value of the KS statistic is about 1.63 / sqrt(N) = 0.026


def _sigma_quadratic(t):
    """A non-linear noise schedule, sigma_0 = 0, for the Gaussian kernel."""
    return t + 0.5 * t**2


KERNELS = {
    "gravity": green.Gravity(),
    "cdf_tanh": green.RadialCDF("tanh"),
    "cdf_exp": green.RadialCDF("exp"),
    "gaussian": green.Gaussian(),
    "gaussian_quadratic": green.Gaussian(_sigma_quadratic),
}


_VELOCITY = dj.Predictor(lambda x, t: x, kind="velocity")
_green_function = jax.jit(green.green_function, static_argnums=0)


def _radial_nodes(t, n=400):
    """Gauss-Legendre nodes and weights for `int_0^inf g(r) dr` after `r = t s / (1 - s)`, s in (0, 1)."""
    s, w = np.polynomial.legendre.leggauss(n)
    s, w = 0.5 * (s + 1.0), 0.5 * w
    return t * s / (1.0 - s), w * t / (1.0 - s) ** 2


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_each_kernel_integrates_to_one(name, x64):
    """`int G_1 dx_t = 1` for every t and x_0 (article (十四)'s integral condition), by Gauss-Legendre quadrature of
    the code's `G_1(x_t, x_0)` at Cartesian points: over the line in d = 1 (both sides of x_0), and over the plane
    in polar coordinates about x_0 in d = 2 (which absorbs the integrable `1/r` peak of the CDF kernels and checks
    the sphere-area constant `S_2 = 2 pi`). Measured errors below 3e-14; tolerance 1e-6."""
    kernel = KERNELS[name]
    theta, w_theta = np.polynomial.legendre.leggauss(64)
    theta, w_theta = np.pi * (theta + 1.0), np.pi * w_theta
    for t in (0.3, 2.0):
        r, w_r = _radial_nodes(t)
        x0 = np.array([[0.4]])
        line = sum(np.asarray(_green_function(kernel, t, x0 + sign * r[:, None], x0)[0]) @ w_r for sign in (-1.0, 1.0))
        assert abs(line - 1.0) < 1e-6, (t, line)
        x0 = np.array([[-0.5, 1.2]])
        ring = np.stack([np.cos(theta), np.sin(theta)], axis=1)  # (64, 2)
        x_t = (x0 + r[:, None, None] * ring[None]).reshape(-1, 2)
        g1 = np.asarray(_green_function(kernel, t, x_t, x0)[0]).reshape(len(r), len(theta))
        plane = (w_r * r) @ g1 @ w_theta
        assert abs(plane - 1.0) < 1e-6, (t, plane)


@pytest.mark.parametrize("name", sorted(KERNELS))
@pytest.mark.parametrize("d", [1, 2, 3])
def test_green_function_is_divergence_free(name, d, x64):
    """`d_t G_1 + div_x G_{>1} = 0` (the continuity equation of article (十四)) by central differences (h = 1e-5) at
    random points: the residual is below 1e-6 of the size of the terms (measured 3e-8); a flux off by 10%
    leaves a residual of order 0.1, so the check sees the ratio varphi/phi."""
    kernel = KERNELS[name]
    rng = np.random.default_rng(d)
    x0 = rng.normal(size=(16, d))
    x_t = x0 + rng.normal(size=(16, d)) * 0.8
    t, h = 0.7, 1e-5
    g1 = lambda s, x: _green_function(kernel, s, x, x0)[0]  # noqa: E731
    flux = lambda x: _green_function(kernel, t, x, x0)[1]  # noqa: E731
    d_t = (g1(t + h, x_t) - g1(t - h, x_t)) / (2 * h)
    div = sum((flux(x_t + h * np.eye(d)[k]) - flux(x_t - h * np.eye(d)[k]))[:, k] / (2 * h) for k in range(d))
    scale = jnp.abs(d_t) + jnp.abs(div)
    np.testing.assert_array_less(jnp.abs(d_t + div), 1e-6 * scale + 1e-300)
    wrong = d_t + 1.1 * div
    assert float(jnp.max(jnp.abs(wrong) / scale)) > 1e-2


def radius_cdf_by_quadrature(radii, log_density_of_radius):
    """The CDF at `radii` of a radius with unnormalised log-density `log_density_of_radius(r)` (vectorised), by
    cumulative Simpson quadrature in `log r` over [1e-8, 1e8] (200k nodes; error below 1e-9 for these laws)."""
    v = np.linspace(math.log(1e-8), math.log(1e8), 200_001)
    integrand = np.exp(log_density_of_radius(np.exp(v)) + v)
    cdf = integrate.cumulative_simpson(integrand, x=v, initial=0.0)
    return np.interp(np.log(radii), v, cdf / cdf[-1])


@pytest.mark.parametrize("d", [2, 64])
def test_gravity_ratio_of_norms_sampler_has_density_p_z(d):
    """Article (十四): `z = eps_x / |eps_t|` has `p(z) ∝ (1 + ||z||^2)^{-(d+1)/2}`, i.e. radius density
    `∝ r^{d-1} (1 + r^2)^{-(d+1)/2}`. KS against that CDF by quadrature (p > 0.01, statistic below the 1% critical
    value; measured p 0.94 and 0.32), and the kernel's closed-form CDF (the Beta relation) agrees with the
    quadrature to 1e-6 (measured 6e-8). A radius law from twice the dimension is rejected (p < 1e-90)."""
    kernel = green.Gravity()
    radius = np.asarray(kernel.sample_radius(jax.random.key(d), 1.0, N, d), np.float64)
    cdf = lambda r: radius_cdf_by_quadrature(r, lambda s: (d - 1) * np.log(s) - 0.5 * (d + 1) * np.log1p(s * s))  # noqa: E731
    result = stats.kstest(radius, cdf)
    assert result.pvalue > 0.01 and result.statistic < 1.63 / math.sqrt(N), result
    with jax.enable_x64(True):
        closed_form = np.asarray(kernel.radial_cdf(1.0, jnp.asarray(radius, jnp.float64), d))
    np.testing.assert_allclose(closed_form, cdf(radius), atol=1e-6)
    other = np.asarray(kernel.sample_radius(jax.random.key(d), 1.0, N, 2 * d), np.float64)
    assert stats.kstest(other, lambda r: np.asarray(kernel.radial_cdf(1.0, jnp.asarray(r), d))).pvalue < 1e-4


@pytest.mark.parametrize(
    "name, cdf",
    [
        ("cdf_tanh", lambda r, t: np.tanh(r / t)),
        ("cdf_exp", lambda r, t: 1.0 - np.exp(-r / t)),
        ("gaussian", lambda r, t: stats.chi(3).cdf(r / t)),
    ],
)
def test_radial_samplers_match_their_cdfs(name, cdf):
    """Inverse-CDF radii `r = psi_t^{-1}(U)` (and the Gaussian's chi radii) pass a KS test against `psi_t`
    written independently (p > 0.01, statistic below the 1% critical value) for d = 3, t = 0.5 and 2; the full
    sampler's displacement norms do too. The law at the other t is rejected."""
    kernel = KERNELS[name]
    for i, t in enumerate((0.5, 2.0)):
        radius = np.asarray(kernel.sample_radius(jax.random.key(i), t, N, 3), np.float64)
        result = stats.kstest(radius, lambda r, t=t: cdf(r, t))
        assert result.pvalue > 0.01 and result.statistic < 1.63 / math.sqrt(N), (t, result)
        norms = np.linalg.norm(np.asarray(kernel.sample(jax.random.key(10 + i), t, (N, 3))), axis=-1)
        assert stats.kstest(norms, lambda r, t=t: cdf(r, t)).pvalue > 0.01
        wrong_t = 2.0 if t == 0.5 else 0.5
        assert stats.kstest(radius, lambda r, s=wrong_t: cdf(r, s)).pvalue < 1e-6


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_radial_cdf_is_the_integral_of_the_density(name, x64):
    """`P(r' <= r) = int_0^r S_d s^{d-1} phi_t(s) ds` in d = 3 at several radii (quadrature, tolerance 1e-7)."""
    kernel, d, t = KERNELS[name], 3, 0.8
    area = math.exp(green.log_sphere_area(d))
    radial = lambda s: area * s ** (d - 1) * float(jnp.exp(kernel.log_density(t, s, d)))  # noqa: E731
    for r in (0.1, 0.8, 3.0):
        np.testing.assert_allclose(float(kernel.radial_cdf(t, r, d)), integrate.quad(radial, 0.0, r)[0], atol=1e-7)


POINTS = np.array([[-1.0, 0.5], [1.0, -0.5], [0.3, 1.2]])
WEIGHTS = np.array([0.5, 0.3, 0.2])


@pytest.mark.parametrize("kernel", [green.Gaussian(), green.Gaussian(_sigma_quadratic)], ids=["sigma=t", "quadratic"])
def test_gaussian_kernel_velocity_is_the_heat_equation_ode(kernel, x64):
    """Article (十四) recovers (十二): for the Gaussian kernel the exact velocity is `-sigma' sigma grad log p_t`,
    with the score of the mixture oracle (Dirac components, sigma = sigma_t). Measured agreement 1e-14; 1e-5."""
    mixture = gaussian_mixture(WEIGHTS, POINTS, 0.0)
    exact = green.exact_green_velocity(POINTS, WEIGHTS, kernel)
    x = jax.random.normal(jax.random.key(0), (64, 2), jnp.float64) * 1.5
    for t in (0.05, 0.6, 3.0):
        sigma = kernel.sigma(t)
        expected = -kernel.sigma_dot(t) * sigma * mixture.score(x, 1.0, sigma)
        np.testing.assert_allclose(exact.velocity(x, t), expected, atol=1e-5, rtol=1e-5)


def _chi_square_pvalue(endpoints, points, weights):
    nearest = np.argmin(np.linalg.norm(np.asarray(endpoints)[:, None] - points[None], axis=-1), axis=1)
    counts = np.bincount(nearest, minlength=len(weights))
    return stats.chisquare(counts, len(nearest) * weights).pvalue, counts / len(nearest)


@pytest.mark.parametrize("name", ["gravity", "cdf_tanh", "cdf_exp", "gaussian"])
def test_exact_velocity_ode_lands_on_the_points_with_their_weights(name):
    """From the process prior at T = 100, the ODE with the exact velocity takes 2000 draws to the three points with
    frequencies equal to their weights (chi-square p > 0.001; measured 0.29-0.45), and the distances to the
    nearest point follow the kernel at t_min (KS p > 0.001; measured 0.05-0.36): the ODE carries p_T to p_{t_min}.
    Endpoints with the wrong weights 0.4/0.35/0.25 are rejected (p < 1e-6; measured < 1e-18). 103-127 evaluations."""
    n = 2000
    process = green.green_process(KERNELS[name], T=100.0, t_min=1e-3)
    exact = green.exact_green_velocity(POINTS, WEIGHTS, process.kernel)
    x, info = dj.sample(jax.random.key(3), exact.predictor(), process, green.GreenODE(), (n, 2), return_info=True)
    assert bool(jnp.all(jnp.isfinite(x))) and 0 < int(info["nfe"]) < 400
    pvalue, freq = _chi_square_pvalue(x, POINTS, WEIGHTS)
    assert pvalue > 1e-3, freq
    assert _chi_square_pvalue(x, POINTS, np.array([0.4, 0.35, 0.25]))[0] < 1e-6
    distance = np.min(np.linalg.norm(np.asarray(x, np.float64)[:, None] - POINTS[None], axis=-1), axis=1)
    kernel_cdf = lambda r: np.asarray(process.kernel.radial_cdf(process.t_min, jnp.asarray(r), 2))  # noqa: E731
    assert stats.kstest(distance, kernel_cdf).pvalue > 1e-3


def _directions(x, t):
    return jnp.sin(x + t[:, None]) + 0.3 * jnp.cos(2.0 * x[:, ::-1])


@pytest.mark.parametrize("name", ["cdf_exp", "gaussian"])
def test_exact_velocity_minimises_green_velocity_loss(name):
    """The loss's minimiser is the ratio of expectations: at the exact velocity the gradient along a fixed field h
    and toward a wrong velocity has zero mean (|z| < 4 over 4096 examples; measured 0.3-1.7), at the velocity of
    wrongly weighted data (0.1/0.2/0.7) the gradient toward the exact one does not (|z| > 6; measured 8.8, 14)."""
    process = green.green_process(KERNELS[name], T=10.0, t_min=0.05)
    loss = green.GreenVelocityLoss(process)
    x0 = jnp.asarray(POINTS)[jax.random.choice(jax.random.key(1), 3, (4096,), p=jnp.asarray(WEIGHTS))]
    exact = green.exact_green_velocity(POINTS, WEIGHTS, process.kernel)
    wrong = green.exact_green_velocity(POINTS, [0.1, 0.2, 0.7], process.kernel)

    def z_score(model, toward):
        def apply(p, x, t):
            v = model.velocity(x, t)
            return v + p[:, :1] * _directions(x, t) + p[:, 1:] * (toward.velocity(x, t) - v)

        grad = jax.jit(jax.grad(lambda p: loss(jax.random.key(2), apply, p, x0)))(jnp.zeros((4096, 2)))
        contrib = np.asarray(grad, np.float64) * 4096
        return contrib.mean(0) / (contrib.std(0, ddof=1) / math.sqrt(4096))

    assert np.all(np.abs(z_score(exact, wrong)) < 4.0)
    assert abs(z_score(wrong, exact)[1]) > 6.0


def test_loss_is_zero_on_its_own_target():
    """A network returning the conditional velocity of each row has zero loss; the loss sums over dimensions."""
    process = green.green_process("cdf_tanh")
    loss = green.GreenVelocityLoss(process, time_sampling="uniform")
    x0 = jax.random.normal(jax.random.key(0), (32, 4, 4, 1))
    key = jax.random.key(5)

    @jax.jit
    def losses(x0):
        key_t, key_x = jax.random.split(key)
        _, target = process.perturb(key_x, x0, loss.sample_times(key_t, 32))
        return loss(key, lambda p, x, s: target, None, x0), loss(key, lambda p, x, s: target + 0.5, None, x0)

    exact, shifted = losses(x0)
    assert float(exact) == 0.0
    assert float(shifted) == pytest.approx(0.25 * 16, rel=1e-6)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: green.green_process("newton"), "unknown green kernel"),
        (lambda: green.green_process("cdf", psi="sigmoid"), "unknown radial CDF psi"),
        (lambda: green.green_process("gravity", psi="tanh"), "unknown knob"),
        (lambda: green.green_process("gaussian", T=1.0, t_min=2.0), "0 < t_min < T"),
        (lambda: green.GreenVelocityLoss(green.green_process(), time_sampling="beta"), "time_sampling"),
        (lambda: green.GreenODE(solver="rk4").validate(green.green_process(), _VELOCITY), "unknown ODE solver"),
        (lambda: green.GreenODE(solver="euler").validate(green.green_process(), _VELOCITY), "adaptive=False"),
        (lambda: green.GreenODE().validate(dj.process("vp"), _VELOCITY), "needs a GreenProcess"),
        (lambda: green.GreenODE().validate(green.green_process(), dj.Predictor(lambda x, t: x)), "'velocity'"),
    ],
)
def test_bad_knobs_raise_one_line(make, message):
    with pytest.raises(ValueError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


def test_green_ode_reports_fixed_step_evaluations():
    """Fixed steps: 2 evaluations per Heun step, and with 40 steps in log t the samples still land on the points;
    the prior is the kernel around `prior_center`."""
    process = green.green_process("cdf_exp", T=20.0, prior_center=3.0)
    exact = green.exact_green_velocity(POINTS, WEIGHTS, process.kernel)
    x, info = dj.sample(
        jax.random.key(0),
        exact.predictor(),
        process,
        green.GreenODE(solver="heun", adaptive=False, steps=40),
        (64, 2),
        return_info=True,
    )
    assert int(info["nfe"]) == 80
    assert float(np.median(np.min(np.linalg.norm(np.asarray(x)[:, None] - POINTS[None], axis=-1), axis=1))) < 0.01
    prior = process.prior_sample(jax.random.key(1), (N, 2))
    assert abs(float(jnp.median(prior)) - 3.0) < 0.5
