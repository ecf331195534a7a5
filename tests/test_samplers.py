"""Samplers of articles (一)–(四) against exact oracles and the identities of FORMULATIONS.md."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffjax as dj
from diffjax.samplers import _sample
from diffjax.testing import dirac, gaussian_mixture, sliced_wasserstein, standard_normal

N = 4000  # samples per law comparison


@pytest.fixture(scope="module")
def noise_floor(mixture, reference):
    """Sliced-W1 between the reference and fresh data draws of the same size: its mean + 4 std over 8 draws.

    A perfect sampler lands here with high probability; a defect of the size the power test plants
    lands far above (measured: null mean ~0.032, std ~0.007).
    """
    null = np.array([float(sliced_wasserstein(jax.random.key(7), mixture.sample(jax.random.key(200 + i), N),
                                              reference)) for i in range(8)])
    return float(null.mean() + 4 * null.std())


SAMPLER_CASES = {
    "ddpm-ancestral-beta": ("ddpm", {}, "eps", ("ancestral", {"variance": "beta"})),
    "ddpm-ancestral-posterior": ("ddpm", {}, "eps", ("ancestral", {"variance": "posterior"})),
    "ddpm-ddim-eta0-50-leading": ("ddpm", {}, "eps", ("ddim", {"steps": 50})),
    "ddpm-ddim-eta0.5-100-linspace": ("ddpm", {}, "eps", ("ddim", {"steps": 100, "eta": 0.5, "spacing": "linspace"})),
    "ddpm-ddim-eta1-100-trailing": ("ddpm", {}, "x0", ("ddim", {"steps": 100, "eta": 1.0, "spacing": "trailing"})),
    "cosine-ddim-eta0-50": ("ddpm", {"schedule": "cosine"}, "v", ("ddim", {"steps": 50, "spacing": "trailing"})),
    "su-ancestral-beta": ("ddpm", {"schedule": "su"}, "eps", ("ancestral", {})),
    "vp-ancestral-500": ("vp", {}, "eps", ("ancestral", {"steps": 500})),
    "vp-ddim-100": ("vp", {}, "x0", ("ddim", {"steps": 100})),
    "ve-ddim-200-logsnr": ("ve", {}, "score", ("ddim", {"steps": 200, "spacing": "log_snr"})),
    "edm-ddim-100": ("edm", {}, "x0", ("ddim", {"steps": 100})),
    "flow-ddim-100-velocity": ("flow", {}, "velocity", ("ddim", {"steps": 100})),
    "flow-ancestral-200-v": ("flow", {}, "v", ("ancestral", {"steps": 200})),
}


@pytest.mark.parametrize("case", sorted(SAMPLER_CASES))
def test_sampler_with_exact_prediction_reproduces_mixture(case, mixture, reference, noise_floor):
    process_name, process_knobs, kind, (sampler_name, sampler_knobs) = SAMPLER_CASES[case]
    process = dj.process(process_name, **process_knobs)
    sampler = dj.sampler(sampler_name, **sampler_knobs)
    x, info = dj.sample(jax.random.key(3), mixture.predictor(process, kind), process, sampler, (N, 2),
                        return_info=True)
    assert bool(jnp.all(jnp.isfinite(x)))
    distance = float(sliced_wasserstein(jax.random.key(7), x, reference))
    assert distance < noise_floor, f"{case}: sliced-W1 {distance:.4f} above the data noise floor {noise_floor:.4f}"
    # Mass per component: E[w_k(x_0)] = pi_k exactly under the data law; 5 standard errors.
    resp = mixture.responsibilities(x)
    stderr = resp.std(0) / np.sqrt(N)
    np.testing.assert_array_less(jnp.abs(resp.mean(0) - mixture.weights), 5 * stderr + 1e-3)
    expected_nfe = sampler_knobs.get("steps", process.num_steps if process.is_discrete else 1000)
    assert int(info["nfe"]) == expected_nfe


def test_law_test_has_power(mixture, reference, noise_floor):
    """The same comparison flags a sampler driven by a slightly wrong model (weights 0.3/0.3/0.4)."""
    wrong = gaussian_mixture([0.3, 0.3, 0.4], mixture.means, mixture.stds)
    process = dj.process("ddpm")
    x = dj.sample(jax.random.key(3), wrong.predictor(process), process, dj.sampler("ddim", steps=50), (N, 2))
    assert float(sliced_wasserstein(jax.random.key(7), x, reference)) > 2 * noise_floor


def test_ddim_eta_one_equals_ancestral_posterior(mixture, x64):
    """Article (四): with eta = 1 the DDIM kernel is DDPM's with the posterior variance (same noise draws)."""
    process = dj.process("ddpm", num_steps=200, schedule="su")
    predictor = mixture.predictor(process)
    key = jax.random.key(11)
    ancestral = dj.sample(key, predictor, process, dj.sampler("ancestral", variance="posterior"), (256, 2))
    ddim = dj.sample(key, predictor, process, dj.sampler("ddim", steps=200, eta=1.0), (256, 2))
    np.testing.assert_allclose(ddim, ancestral, rtol=0, atol=1e-9)
    beta = dj.sample(key, predictor, process, dj.sampler("ancestral", variance="beta"), (256, 2))
    assert float(jnp.abs(beta - ancestral).max()) > 1e-2  # the comparison distinguishes variances


def test_ddim_eta_one_equals_ancestral_posterior_on_a_subsequence(mixture, x64):
    process = dj.process("vp")
    predictor = mixture.predictor(process, "x0")
    key = jax.random.key(12)
    anc = dj.sample(key, predictor, process, dj.sampler("ancestral", variance="posterior", steps=37), (64, 2))
    ddim = dj.sample(key, predictor, process, dj.sampler("ddim", steps=37, eta=1.0, spacing="uniform"), (64, 2))
    np.testing.assert_allclose(ddim, anc, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name, knobs", [("ancestral", {"variance": "beta"}), ("ddim", {"eta": 0.5}),
                                         ("ddim", {"eta": 0.0})])
def test_subsequence_over_all_steps_is_the_full_sampler(mixture, name, knobs):
    """Article (四): the sub-sequence sampler with tau = {1..T} reproduces the full sampler bit for bit."""
    process = dj.process("ddpm", num_steps=100)
    predictor = mixture.predictor(process)
    key = jax.random.key(5)
    full = dj.sample(key, predictor, process, dj.sampler(name, steps=100, **knobs), (128, 2))
    explicit = dj.sample(key, predictor, process, dj.sampler(name, timesteps=tuple(range(100, 0, -1)), **knobs),
                         (128, 2))
    np.testing.assert_array_equal(full, explicit)
    strided = dj.sample(key, predictor, process, dj.sampler(name, steps=50, **knobs), (128, 2))
    assert not np.array_equal(full, strided)


@pytest.mark.parametrize("num_steps", [1, 2, 7, 1000])
def test_beta_variance_is_exact_for_standard_normal_data(num_steps):
    """Article (二): for N(0, I) data and the exact eps, sigma_t = beta_t gives N(0, I) for any T.

    Each step is then the exact reverse kernel N(alpha_t x_t, beta_t^2). The posterior variance is not
    exact: with large steps its variance collapses (checked for T = 2 as the test's power).
    """
    n = 100_000
    process = dj.process("ddpm", num_steps=num_steps, beta_start=0.3 if num_steps < 10 else 1e-4,
                         beta_end=0.6 if num_steps < 10 else 0.02)
    data = standard_normal(1)
    x = dj.sample(jax.random.key(num_steps), data.predictor(process), process,
                  dj.sampler("ancestral", variance="beta"), (n, 1))
    # 5 standard errors: mean SE = 1/sqrt(n), variance SE = sqrt(2/n).
    assert abs(float(x.mean())) < 5 / np.sqrt(n)
    assert abs(float(x.var()) - 1.0) < 5 * np.sqrt(2 / n)
    if num_steps == 2:
        post = dj.sample(jax.random.key(0), data.predictor(process), process,
                         dj.sampler("ancestral", variance="posterior"), (n, 1))
        assert abs(float(post.var()) - 1.0) > 0.3


@pytest.mark.parametrize("num_steps", [2, 10, 1000])
def test_posterior_variance_returns_the_point_for_dirac_data(num_steps):
    """Article (二): for data at one point and the exact eps, posterior-sigma sampling returns that point."""
    point = jnp.array([0.7, -1.3, 0.25])
    data = dirac(point)
    process = dj.process("ddpm", num_steps=num_steps, schedule="su")
    x = dj.sample(jax.random.key(1), data.predictor(process), process,
                  dj.sampler("ancestral", variance="posterior"), (512, 3))
    np.testing.assert_allclose(x, jnp.broadcast_to(point, x.shape), atol=1e-5)
    beta = dj.sample(jax.random.key(1), data.predictor(process), process,
                     dj.sampler("ancestral", variance="beta"), (512, 3))
    assert float(jnp.abs(beta - point).max()) > 1e-2  # sigma = beta adds noise at the last step


@pytest.mark.parametrize("process_name", ["ddpm", "vp", "edm"])
def test_deterministic_ddim_is_the_same_for_every_prediction_kind(mixture, process_name):
    """Exact conversions: the eps, x0, v and score oracles drive deterministic DDIM to the same samples."""
    process = dj.process(process_name)
    key = jax.random.key(4)
    kinds = ["eps", "x0", "v", "score"] + ([] if process.is_discrete else ["velocity"])
    outs = {k: dj.sample(key, mixture.predictor(process, k), process, dj.sampler("ddim", steps=30), (256, 2))
            for k in kinds}
    for k in kinds[1:]:
        np.testing.assert_allclose(outs[k], outs["eps"], atol=2e-4, err_msg=k)


def test_ddim_inversion_round_trip_converges_at_first_order(mixture, reference):
    """Article (四): DDIM forwards then backwards returns x0, with first-order error in the step size.

    The median per-point error is used: the few points near the boundary between modes sit where the exact
    ODE map is ill-conditioned, and their errors shrink more slowly (measured median: 0.087, 0.022, 0.006 at
    25, 100, 400 steps, i.e. x4 per x4 steps).
    """
    process = dj.process("ddpm")
    predictor = mixture.predictor(process)
    x0 = reference[:512]
    errors = {}
    for steps in (25, 100, 400):
        x_T, info = dj.ddim_invert(predictor, process, x0, steps=steps, spacing="linspace", return_info=True)
        assert int(info["nfe"]) == steps
        back = dj.sample(jax.random.key(0), predictor, process, dj.sampler("ddim", steps=steps, spacing="linspace"),
                         x0.shape, x_init=x_T)
        errors[steps] = float(jnp.median(jnp.linalg.norm(back - x0, axis=-1)))
    assert errors[25] / errors[100] > 3 and errors[100] / errors[400] > 3, errors
    assert errors[400] < 0.01, errors


def test_inverted_noise_is_standard_normal(mixture, reference):
    """The DDIM encoding of data is (close to) a prior draw: mean 0, covariance I."""
    process = dj.process("ddpm")
    x_T = dj.ddim_invert(mixture.predictor(process), process, reference, steps=100)
    n = reference.shape[0]
    np.testing.assert_allclose(x_T.mean(0), 0.0, atol=5 / np.sqrt(n))
    np.testing.assert_allclose(jnp.cov(x_T.T), jnp.eye(2), atol=0.08)


def test_slerp_keeps_the_prior():
    z1, z2 = jax.random.normal(jax.random.key(0), (2, 50_000, 4))
    np.testing.assert_allclose(dj.slerp(z1, z2, 0.0), z1, atol=1e-6)
    np.testing.assert_allclose(dj.slerp(z1, z2, 1.0), z2, atol=1e-6)
    path = dj.slerp(z1, z2, jnp.linspace(0, 1, 5))
    assert path.shape == (5, 50_000, 4)
    np.testing.assert_allclose(path.var(axis=(1, 2)), 1.0, atol=0.02)
    linear_mid = 0.5 * (z1 + z2)  # the straight average would shrink the prior to variance 1/2
    assert abs(float(linear_mid.var()) - 1.0) > 0.4


def test_second_call_does_not_recompile(mixture):
    process = dj.process("ddpm", num_steps=50)
    predictor = mixture.predictor(process)
    sampler = dj.sampler("ddim", steps=10)
    dj.sample(jax.random.key(0), predictor, process, sampler, (32, 2)).block_until_ready()
    size = _sample._cache_size()
    dj.sample(jax.random.key(1), predictor, process, sampler, (32, 2)).block_until_ready()
    # Rebuilt from the same knobs, the process, sampler and oracle hash equal: still no new compile.
    again = dj.sample(jax.random.key(2), mixture.predictor(dj.process("ddpm", num_steps=50)),
                      dj.process("ddpm", num_steps=50), dj.sampler("ddim", steps=10), (32, 2))
    again.block_until_ready()
    assert _sample._cache_size() == size


def test_new_params_do_not_recompile():
    process = dj.process("ddpm", num_steps=20)

    def apply(params, x, t):
        return params["w"] * x

    dj.sample(jax.random.key(0), dj.Predictor(apply, "eps", params={"w": 0.1}), process, dj.sampler("ddim", steps=5),
              (8, 3))
    size = _sample._cache_size()
    out = dj.sample(jax.random.key(0), dj.Predictor(apply, "eps", params={"w": 0.2}), process,
                    dj.sampler("ddim", steps=5), (8, 3))
    assert _sample._cache_size() == size and out.shape == (8, 3)


def test_conditioning_reaches_the_model():
    process = dj.process("ddpm", num_steps=10)

    def fn(x, t, shift):
        return jnp.zeros_like(x) + shift[:, None]

    a = dj.sample(jax.random.key(0), dj.Predictor(fn), process, dj.sampler("ddim", steps=10), (4, 2),
                  cond={"shift": jnp.zeros(4)})
    b = dj.sample(jax.random.key(0), dj.Predictor(fn), process, dj.sampler("ddim", steps=10), (4, 2),
                  cond={"shift": jnp.ones(4)})
    assert not np.allclose(a, b)


def test_clipping():
    process = dj.process("ddpm", num_steps=20)
    far = dirac(jnp.array([3.0, -4.0]))
    x = dj.sample(jax.random.key(0), far.predictor(process), process,
                  dj.sampler("ancestral", variance="posterior", clip_final=True), (16, 2))
    np.testing.assert_array_equal(x, jnp.broadcast_to(jnp.array([1.0, -1.0]), x.shape))
    y = dj.sample(jax.random.key(0), far.predictor(process), process,
                  dj.sampler("ddim", steps=20, clip_x0=True), (16, 2))
    np.testing.assert_allclose(y, jnp.broadcast_to(jnp.array([1.0, -1.0]), y.shape), atol=1e-5)


@pytest.mark.parametrize("call, message", [
    (lambda: dj.sampler("heunn"), "valid samplers: ancestral, ddim"),
    (lambda: dj.sampler("ddim", etaa=0.1), "valid knobs"),
    (lambda: dj.sampler("ancestral", variance="large"), None),
])
def test_unknown_names_and_knobs_raise(call, message):
    if message is None:
        process = dj.process("ddpm", num_steps=10)
        with pytest.raises(ValueError, match="valid choices: 'beta', 'posterior'"):
            dj.sample(jax.random.key(0), dj.Predictor(lambda x, t: x), process, call(), (2, 2))
    else:
        with pytest.raises(ValueError, match=message):
            call()


def test_invalid_combinations_raise_before_compiling():
    ddpm = dj.process("ddpm", num_steps=10)
    model = dj.Predictor(lambda x, t: x)
    before = _sample._cache_size()
    with pytest.raises(ValueError, match="between 1 and T=10"):
        dj.sample(jax.random.key(0), model, ddpm, dj.sampler("ddim", steps=20), (2, 2))
    with pytest.raises(ValueError, match="eta must lie in"):
        dj.sample(jax.random.key(0), model, ddpm, dj.sampler("ddim", steps=5, eta=2.0), (2, 2))
    with pytest.raises(ValueError, match="continuous process"):
        dj.sample(jax.random.key(0), dj.Predictor(lambda x, t: x, kind="velocity"), ddpm, dj.sampler("ddim"), (2, 2))
    with pytest.raises(ValueError, match="shape must be"):
        dj.sample(jax.random.key(0), model, ddpm, dj.sampler("ddim", steps=5), (2,))
    with pytest.raises(ValueError, match="x_init must have"):
        dj.sample(jax.random.key(0), model, ddpm, dj.sampler("ddim", steps=5), (2, 2), x_init=jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="spacing"):
        dj.sample(jax.random.key(0), model, dj.process("vp"), dj.sampler("ddim", spacing="leading"), (2, 2))
    assert _sample._cache_size() == before
