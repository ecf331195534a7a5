"""PFGM (article (十三)): the perturbation and prior laws, the field target, the loss and the field-line sampler."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import diffjax as dj
from diffjax import green, pfgm
from diffjax.pfgm._sampler import PoissonFlowODE
from diffjax.samplers import _sample

N = 4000  # draws per KS test; the 1% critical value of the KS statistic is about 1.63 / sqrt(N) = 0.026
KS_CRITICAL = 1.63 / math.sqrt(N)


def _radius_cdf(radii, d, scale):
    """CDF of the radius law `∝ r^{d-1} (r^2 + scale^2)^{-(d+1)/2}` by cumulative Simpson quadrature in log r."""
    from scipy import integrate

    v = np.linspace(math.log(1e-8 * scale), math.log(1e8 * scale), 200_001)
    r = np.exp(v)
    log_f = (d - 1) * np.log(r) - 0.5 * (d + 1) * np.log(r * r + scale * scale) + v
    cdf = integrate.cumulative_simpson(np.exp(log_f - log_f.max()), x=v, initial=0.0)
    return np.interp(np.log(radii), v, cdf / cdf[-1])


# ---- the perturbation (Algorithm 2) and the prior ------------------------------------------------------------
@pytest.mark.parametrize("d", [2, 64])
def test_perturbation_ratio_is_f_distributed(d):
    """Article (十四)'s proof: `x - x_0 = z (||eps_x|| / |eps_z|) u`, and `r = ||eps_x|| / |eps_z|` has r^2/d ~ F(d, 1).

    The identity holds on every entry to the float32 rounding of `x = x_0 + perturbation` (`1e-6 (|x| + |x_0|)`).
    KS of `(||x - x_0|| / z)^2 / d` against F(d, 1): p > 0.01 and statistic below the 1% critical value 0.026
    (measured 0.022 and 0.018); F(d, 2) is rejected (statistic 0.12, 0.16). Where restrict_M applies
    (`|eps_z| < 0.005`: 37% of rows), `m < floor(0.7 M)`."""
    process = pfgm.PoissonProcess()
    x0 = jax.random.uniform(jax.random.key(1), (N, d), minval=-1.0, maxval=1.0)
    x, z, parts = process.perturb(jax.random.key(d), x0, return_parts=True)
    ratio = parts["noise_norm"] / parts["z_noise"]
    gap = jnp.abs((x - x0) - (z * ratio)[:, None] * parts["direction"])
    assert bool(jnp.all(gap <= 1e-6 * (jnp.abs(x) + jnp.abs(x0)) + 1e-6 * jnp.abs(x - x0)))
    np.testing.assert_allclose(z, parts["z_noise"] * 1.03 ** parts["m"], rtol=1e-5)
    f = np.asarray((jnp.linalg.norm(x - x0, axis=-1) / z) ** 2 / d, np.float64)
    result = stats.kstest(f, stats.f(d, 1).cdf)
    assert result.pvalue > 0.01 and result.statistic < KS_CRITICAL, result
    assert stats.kstest(f, stats.f(d, 2).cdf).statistic > 2 * KS_CRITICAL
    restricted = np.asarray(parts["z_noise"] < 0.005)
    assert 0.3 < restricted.mean() < 0.45  # P(|N(0, 1)| < 0.5) = 0.383
    assert float(parts["m"][restricted].max()) < math.floor(0.7 * 291) <= float(parts["m"][~restricted].max())


@pytest.mark.parametrize("d", [2, 64])
def test_prior_radius_has_the_hemisphere_law(d):
    """The prior radius `z_max sqrt(B / (1 - B))`, `B ~ Beta(d/2, 1/2)`, against the CDF of
    `r^{d-1} (r^2 + z_max^2)^{-(d+1)/2}` by quadrature: KS p > 0.01, statistic below 0.026 (clipping off); a law
    with z_max 25% larger is rejected (statistic 0.09, 0.11 against 0.009, 0.013). With a clip every radius lies in
    [1, upper_norm], and the fraction clipped to upper_norm = 3000 is the law's tail mass there (measured 1.5% and
    8.5% against 1.3% and 8.5%, within 4 binomial standard errors)."""
    process = pfgm.PoissonProcess(z_max=40.0, lower_norm=0.0, upper_norm=float("inf"))
    radius = np.asarray(process.prior_radius(jax.random.key(d), N, d), np.float64)
    result = stats.kstest(radius, lambda r: _radius_cdf(r, d, 40.0))
    assert result.pvalue > 0.01 and result.statistic < KS_CRITICAL, result
    assert stats.kstest(radius, lambda r: _radius_cdf(r, d, 50.0)).statistic > 2 * KS_CRITICAL
    x = pfgm.PoissonProcess(z_max=40.0, upper_norm=3000.0).prior_sample(jax.random.key(d), (N, d))
    norms = np.asarray(jnp.linalg.norm(x, axis=-1))
    assert norms.min() >= 1.0 - 1e-4 and norms.max() <= 3000.0 * (1 + 1e-5)
    clipped = (norms > 3000.0 * (1 - 1e-5)).mean()
    expected = 1.0 - _radius_cdf(np.array([3000.0]), d, 40.0)[0]
    assert abs(clipped - expected) < 4 * math.sqrt(expected * (1 - expected) / N) + 1e-3


# ---- the field and its targets --------------------------------------------------------------------------------
def _naive_field(x, z, sources, weights):
    """`sum_j p_j (y_j - x, -z) / R_j^{d+1}` in float64 NumPy, straight from the definition."""
    diff = sources[None] - x[:, None]
    r2 = (diff**2).sum(-1) + z[:, None] ** 2
    w = weights[None] * r2 ** (-0.5 * (x.shape[1] + 1))
    return (w[..., None] * diff).sum(1), -(w * z[:, None]).sum(1)


@pytest.mark.parametrize("d", [3, 64])
def test_chunked_target_equals_the_unchunked_one(d):
    """The log-space sums over blocks of sources (chunk 8 of 37 sources: padding included) equal the one-block
    sums to float32 rounding (measured 5e-7 of the largest entry in d = 3, 6e-6 in d = 64; tolerance 1e-5), for
    the sums with weights and excluded sources and for both targets; in d = 3 the targets equal the float64
    definition (normalised target to 4e-8, `z^d E` to 1.4e-5 relative; tolerance 1e-5 and 1e-4). In d = 64,
    `R^{-(d+1)}` spans far more than float32's range, yet the chunked sums stay finite."""
    rng = np.random.default_rng(d)
    sources = rng.normal(size=(37, d)).astype(np.float32)
    x = (sources[:12] + rng.normal(size=(12, d)) * 0.3).astype(np.float32)
    z = rng.uniform(0.01, 2.0, size=12).astype(np.float32)
    weights = rng.dirichlet(np.ones(37))
    exclude = jnp.asarray(np.where(np.arange(12) % 2 == 0, np.arange(12), -1))
    log_w = jnp.log(weights)
    full = pfgm.field_sums(x, z, sources, log_w, exclude=exclude)
    chunked = pfgm.field_sums(x, z, sources, log_w, exclude=exclude, chunk_size=8)
    for a, b in zip(full, chunked, strict=True):
        assert bool(jnp.all(jnp.isfinite(a)))
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-5 * float(jnp.abs(a).max()))
    targets = {}
    for target in pfgm.TARGETS:
        full = pfgm.poisson_target(x, z, sources, target=target, log_weights=log_w)
        targets[target] = pfgm.poisson_target(x, z, sources, target=target, log_weights=log_w, chunk_size=8)
        for a, b in zip(full, targets[target], strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-5 * float(jnp.abs(a).max()))
    if d == 3:
        e_x, e_z = _naive_field(x.astype(np.float64), z.astype(np.float64), sources.astype(np.float64), weights)
        n_x, n_z = e_x / (-e_z / z)[:, None], -z
        norm = np.sqrt((n_x**2).sum(-1) + n_z**2)
        np.testing.assert_allclose(
            targets["normalized_empirical"][0], math.sqrt(d) * n_x / (norm + 5.0)[:, None], rtol=1e-5, atol=1e-6
        )
        u_x, u_z = targets["unbiased"]
        np.testing.assert_allclose(u_x, e_x * z[:, None] ** d, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(u_z, e_z * z**d, rtol=1e-4, atol=1e-7)


def test_exact_field_matches_the_definition_and_the_green_gravity_velocity(x64):
    """`E = (1/S_{d+1}) sum_i p_i (y_i - x, -z) / R_i^{d+1}` (S_4 = 2 pi^2 in d = 3), and its field lines
    `dx/dz = E_x / E_z` are the Green's-function ODE of the gravity kernel (article (十四)), to 1e-10."""
    rng = np.random.default_rng(0)
    points, weights = rng.normal(size=(4, 3)), np.array([0.1, 0.2, 0.3, 0.4])
    x, z = rng.normal(size=(16, 3)) * 2.0, rng.uniform(0.05, 3.0, size=16)
    field = pfgm.exact_poisson_field(points, weights)
    e_x, e_z = field.field(jnp.asarray(x), jnp.asarray(z))
    naive_x, naive_z = _naive_field(x, z, points, weights)
    np.testing.assert_allclose(e_x, naive_x / (2 * np.pi**2), rtol=1e-10)
    np.testing.assert_allclose(e_z, naive_z / (2 * np.pi**2), rtol=1e-10)
    velocity = green.exact_green_velocity(points, weights, green.Gravity()).velocity(jnp.asarray(x), jnp.asarray(z))
    np.testing.assert_allclose(velocity, e_x / e_z[:, None], rtol=1e-10)


@pytest.mark.parametrize("gamma", [0.0, 5.0])
def test_z_exp_substitution_is_exact_for_the_target_form(gamma, x64):
    """`normalized_z_component` recovers the z-component of `sqrt(d) N / (||N|| + gamma)` from its x-part (measured
    2e-16 for gamma = 5; 1e-9 for gamma = 0, where `1 - n^2 = z^2/||N||^2` is ill-conditioned; tolerance 1e-7); the
    official small-z approximation is off by up to 4% at z = 5 here (0.1% at z = 0.3)."""
    rng = np.random.default_rng(1)
    points = rng.normal(size=(5, 4))
    field = pfgm.exact_poisson_field(points)
    x = jnp.asarray(points[rng.integers(0, 5, 64)] + rng.normal(size=(64, 4)) * 0.5)
    for z in (1e-3, 0.3, 5.0):
        t_x, t_z = field.target(x, jnp.full((64,), z), gamma=gamma)
        np.testing.assert_allclose(pfgm.normalized_z_component(t_x, z, gamma), t_z, rtol=1e-7)
    if gamma:
        n1 = jnp.linalg.norm(t_x, axis=-1) / 2.0
        official_norm = jnp.sqrt((gamma * n1 / (1 - n1)) ** 2 + 25.0)
        assert float(jnp.max(jnp.abs(-2.0 * 5.0 / (official_norm + gamma) / t_z - 1))) > 0.02


def test_network_convention_round_trips():
    """`(B, H, W, C) -> (B, H, W, C + 1)` and `(B, D) -> (B, D + 1)`; the z-part is the mean of the extra channel."""
    assert pfgm.field_output_channels((8, 8, 1)) == 2 and pfgm.field_output_channels((2,)) == 3
    for shape in ((5, 8, 8, 3), (5, 2)):
        f_x = jax.random.normal(jax.random.key(0), shape)
        f_z = jnp.arange(5.0)
        out = pfgm.join_field(f_x, f_z)
        assert out.shape == shape[:-1] + (shape[-1] + 1,)
        back_x, back_z = pfgm.split_field(out)
        np.testing.assert_array_equal(back_x, f_x)
        np.testing.assert_allclose(back_z, f_z)
    noisy = out.at[:, -1].add(jnp.array([1.0, -1.0, 0, 0, 0]))  # only the channel's mean counts (vectors: itself)
    np.testing.assert_allclose(pfgm.split_field(noisy)[1], f_z + jnp.array([1.0, -1.0, 0, 0, 0]))


# ---- the loss -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, rows, chunk", [((64, 2), (None, None), None), ((64, 4, 4, 1), (16, 48), 7)])
def test_loss_is_zero_when_the_network_outputs_the_target(shape, rows, chunk):
    """A network returning the exact normalised field of the source rows (uniform weights: the empirical law
    of the batch) has zero loss (float32 rounding: measured 1e-13); the loss of a shifted output is the
    shift squared times d + 1. `small_batch`, `large_batch` pick the leading rows; the sources may be chunked."""
    small, large = rows
    process = pfgm.PoissonProcess(small_batch=small, large_batch=large)
    x0 = jax.random.uniform(jax.random.key(0), shape, minval=-1.0, maxval=1.0)
    sources = x0[: large or shape[0]].reshape(large or shape[0], -1)
    exact = pfgm.exact_poisson_field(sources)

    def apply(params, x, t):
        t_x, t_z = exact.target(x.reshape(x.shape[0], -1), t, gamma=process.gamma)
        return pfgm.join_field(t_x.reshape(x.shape), t_z) + params

    loss = jax.jit(lambda key, params: pfgm.PoissonFieldLoss(process, chunk)(key, apply, params, x0))
    assert float(loss(jax.random.key(1), 0.0)) < 1e-8
    d = math.prod(shape[1:])
    assert float(loss(jax.random.key(1), 0.1)) == pytest.approx(0.01 * (d + 1), rel=1e-3)


def test_unbiased_loss_is_zero_on_the_leave_one_out_field():
    """The `unbiased` target of row i is `z^d` times the field of the other source rows (its own source left out)."""
    process = pfgm.PoissonProcess(target="unbiased", small_batch=4)
    x0 = jax.random.uniform(jax.random.key(0), (32, 2), minval=-1.0, maxval=1.0)
    others = [pfgm.exact_poisson_field(jnp.delete(x0, i, axis=0)) for i in range(4)]  # row i's 31 other rows

    def apply(params, x, t):
        rows = [pfgm.join_field(*f.target(x[i : i + 1], t[i : i + 1], target="unbiased")) for i, f in enumerate(others)]
        return jnp.concatenate(rows)

    loss = jax.jit(lambda key: pfgm.PoissonFieldLoss(process, chunk_size=5)(key, apply, None, x0))
    assert float(loss(jax.random.key(3))) < 1e-10


def test_unbiased_target_estimates_the_field_without_bias():
    """Why `unbiased` is unbiased: averaged over independent batches of 16 sources drawn from a three-point law, the
    target equals `z^d S_{d+1} E` of that law (every component within 4 standard errors over 4000 batches), so the
    loss's minimiser is that scaled field. The normalised empirical target is a ratio of batch sums: its average
    misses the exact normalised field by many standard errors (worst |z| measured 1.5 and 33)."""
    points, weights = np.array([[-1.0, 0.5], [1.0, -0.5], [0.3, 1.2]]), np.array([0.5, 0.3, 0.2])
    field = pfgm.exact_poisson_field(points, weights)
    x = jnp.asarray(np.random.default_rng(0).uniform(-1.5, 1.5, size=(8, 2)), jnp.float32)
    z = jnp.full((8,), 0.7)

    @functools.partial(jax.jit, static_argnums=1)
    def batch_targets(key, target):
        sources = jnp.asarray(points, jnp.float32)[jax.random.choice(key, 3, (16,), p=jnp.asarray(weights))]
        return pfgm.poisson_target(x, z, sources, target=target)

    keys = jax.random.split(jax.random.key(4), 4000)
    for target, biased in (("unbiased", False), ("normalized_empirical", True)):
        draws = jax.vmap(lambda k, target=target: batch_targets(k, target))(keys)
        exact = field.target(x, z, target=target)
        worst = 0.0
        for draw, truth in zip(draws, exact, strict=True):
            draw = np.asarray(draw, np.float64)
            z_score = (draw.mean(0) - np.asarray(truth)) / (draw.std(0, ddof=1) / math.sqrt(len(keys)) + 1e-12)
            worst = max(worst, float(np.abs(z_score).max()))
        assert (worst > 10.0) if biased else (worst < 4.0), (target, worst)


# ---- the sampler ----------------------------------------------------------------------------------------------
def test_single_point_field_lines_are_straight_rays():
    """For one data point the exact field lines are straight rays into it: from `(x_T, z_max)` the ODE reaches
    `y + (x_T - y) z_min / z_max` (measured 7e-5 with Tsit5 at 1e-4; tolerance 1e-3), within 1e-3 of the point at
    z_min = 1e-5."""
    point = jnp.array([[0.3, -0.7, 0.5]])
    process = pfgm.PoissonProcess(z_min=1e-5)
    predictor = pfgm.exact_poisson_field(point).predictor(process)
    key = jax.random.key(1)
    x_init = process.prior_sample(key, (256, 3))
    ray = point + (x_init - point) * process.z_min / process.z_max
    x, info = dj.sample(key, predictor, process, PoissonFlowODE(), (256, 3), x_init=x_init, return_info=True)
    np.testing.assert_allclose(x, ray, atol=1e-3)
    assert float(jnp.abs(x - point).max()) < 1e-3
    assert 0 < int(info["nfe"]) < 400


POINTS_1D = np.array([-1.0, 0.2, 1.5])
WEIGHTS_1D = np.array([0.5, 0.3, 0.2])


@pytest.fixture(scope="module")
def far_process():
    """z_max = 200 for data within [-1, 1.5] (prior mismatch ~ 1e-4 in probability), clipping off."""
    return pfgm.PoissonProcess(z_max=200.0, upper_norm=1e7, lower_norm=0.0)


def test_exact_field_lands_on_the_points_with_their_weights(far_process):
    """Three 1-D points with weights 0.5/0.3/0.2: 4000 prior draws follow the exact (normalised, z_exp-substituted)
    field to the points with those frequencies (chi-square p > 0.001; measured p = 0.51) and 99% end within 0.1 of
    a point (measured 0.056; 133 evaluations); the wrong weights 0.45/0.33/0.22 are rejected (p < 1e-3; measured
    2e-11). The `unbiased` target's field (`z^d E`, no normalisation) has the same field lines: from the same
    prior draws every path ends at the same point, and 99% within 1e-3 of the same place (the adaptive steps
    differ by rounding; measured 5 of 4000 paths in the far tails differ by up to 0.013)."""
    field = pfgm.exact_poisson_field(POINTS_1D, WEIGHTS_1D)
    x_init = far_process.prior_sample(jax.random.key(0), (N, 1))
    x, info = dj.sample(
        jax.random.key(0),
        field.predictor(far_process),
        far_process,
        PoissonFlowODE(),
        (N, 1),
        x_init=x_init,
        return_info=True,
    )
    distance = np.abs(np.asarray(x) - POINTS_1D[None])
    counts = np.bincount(distance.argmin(1), minlength=3)
    assert stats.chisquare(counts, N * WEIGHTS_1D).pvalue > 1e-3, counts / N
    assert stats.chisquare(counts, N * np.array([0.45, 0.33, 0.22])).pvalue < 1e-3
    assert np.quantile(distance.min(1), 0.99) < 0.1
    assert 0 < int(info["nfe"]) < 400
    unbiased = dataclasses.replace(far_process, target="unbiased")
    x_unbiased = dj.sample(
        jax.random.key(0), field.predictor(unbiased), unbiased, PoissonFlowODE(), (N, 1), x_init=x_init
    )
    nearest = np.abs(np.asarray(x_unbiased) - POINTS_1D[None]).argmin(1)
    np.testing.assert_array_equal(nearest, distance.argmin(1))
    assert np.mean(np.abs(np.asarray(x_unbiased - x)) < 1e-3) > 0.99


def test_sampler_compiles_once_for_new_points(far_process):
    """The exact field is the predictor's `params`: other points of the same shape reuse the compiled sampler."""
    x_init = far_process.prior_sample(jax.random.key(1), (N, 1))  # as in the test above: no new compile if run after
    field = pfgm.exact_poisson_field(POINTS_1D, WEIGHTS_1D)
    dj.sample(jax.random.key(1), field.predictor(far_process), far_process, PoissonFlowODE(), (N, 1), x_init=x_init)
    size = _sample._cache_size()
    field = pfgm.exact_poisson_field(POINTS_1D + 0.5, WEIGHTS_1D)
    x = dj.sample(jax.random.key(1), field.predictor(far_process), far_process, PoissonFlowODE(), (N, 1), x_init=x_init)
    assert _sample._cache_size() == size
    assert np.quantile(np.abs(np.asarray(x) - (POINTS_1D[None] + 0.5)).min(1), 0.9) < 0.1


# ---- validation -----------------------------------------------------------------------------------------------
_FIELD = dj.Predictor(lambda x, t: jnp.concatenate([x, x[..., :1]], -1), kind="x0")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: pfgm.PoissonProcess(M=0), "M must be positive"),
        (lambda: pfgm.PoissonProcess(target="biased"), "unknown pfgm target"),
        (lambda: pfgm.PoissonProcess(z_max=1e-4), "z_max > z_min"),
        (lambda: pfgm.PoissonProcess(upper_norm=0.5), "lower_norm < upper_norm"),
        (lambda: pfgm.PoissonProcess(gamma=-1.0), "gamma must be >= 0"),
        (lambda: pfgm.PoissonProcess(large_batch=0), "large_batch must be None"),
        (lambda: pfgm.PoissonProcess(time_input="t"), "unknown pfgm time_input"),
        (lambda: pfgm.PoissonFieldLoss(pfgm.PoissonProcess(), chunk_size=0), "chunk_size"),
        (
            lambda: jax.eval_shape(
                lambda: pfgm.PoissonFieldLoss(pfgm.PoissonProcess(large_batch=128))(
                    jax.random.key(0), lambda p, x, t: x, None, jnp.zeros((64, 2))
                )
            ),
            "large_batch=128 exceeds",
        ),
        (
            lambda: jax.eval_shape(
                lambda: pfgm.PoissonFieldLoss()(jax.random.key(0), lambda p, x, t: x, None, jnp.zeros((8, 2)))
            ),
            "extra channel",
        ),
        (lambda: PoissonFlowODE().validate(dj.process("vp"), _FIELD), "needs the pfgm PoissonProcess"),
        (lambda: PoissonFlowODE().validate(pfgm.PoissonProcess(), dj.Predictor(lambda x, t: x)), "kind='x0'"),
        (lambda: PoissonFlowODE(solver="rk45").validate(pfgm.PoissonProcess(), _FIELD), "unknown ODE solver"),
        (lambda: PoissonFlowODE(rtol=0.0).validate(pfgm.PoissonProcess(), _FIELD), "rtol and atol"),
        (lambda: dj.sample(jax.random.key(0), _FIELD, pfgm.PoissonProcess(), PoissonFlowODE(steps=0), (4, 2)), "steps"),
    ],
)
def test_bad_knobs_raise_one_line(make, message):
    with pytest.raises(ValueError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


def test_scaled_knobs_reproduce_the_official_cifar_settings():
    """The official recipe at CIFAR-10's scale (mean norm ~30, d = 3072) gives M ~ 291, z_max ~ 40, upper_norm ~
    3000 within the official rounding, and the digits preset follows from the same recipe."""
    cifar = pfgm.scaled_knobs(30.0, 3072)
    assert abs(cifar["M"] - 291) <= 5 and abs(cifar["z_max"] - 40) < 3 and abs(cifar["upper_norm"] - 3000) < 400
    digits = pfgm.scaled_knobs(6.77, 64)
    assert digits["M"] == pfgm.PRESETS["digits"]["M"] and abs(digits["z_max"] - pfgm.PRESETS["digits"]["z_max"]) < 0.5
    for preset in pfgm.PRESETS.values():
        pfgm.PoissonProcess(**preset)
