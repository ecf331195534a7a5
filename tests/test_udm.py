"""The Unified Diffusion Model, articles (十) and (十一): corruptions, reverse designs, Cold Diffusion, losses."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import diffjax as dj
from diffjax import udm
from diffjax.samplers import _sample
from diffjax.testing import dirac, sliced_wasserstein, sliced_wasserstein_null


def _moments_ok(x, mean, std, num_se=5.0):
    """Per-coordinate sample mean and variance of `x` (N, ...) within `num_se` standard errors of N(mean, std^2).

    Standard errors of a Gaussian sample: mean `std/sqrt(N)`, variance `std^2 sqrt(2/(N-1))`.
    """
    n = x.shape[0]
    mean_err = np.abs(np.asarray(x.mean(0) - mean)) / (std / np.sqrt(n))
    var_err = np.abs(np.asarray(x.var(0) - std**2)) / (std**2 * np.sqrt(2.0 / (n - 1)))
    return float(mean_err.max()) < num_se and float(var_err.max()) < num_se


@functools.partial(jax.jit, static_argnums=(0, 1))
def _loss(loss, apply_fn, key, params, x0):
    """A loss evaluated under jit (one small program instead of many eager operations)."""
    return loss(key, apply_fn, params, x0)


# ---- the Gaussian instance against the core samplers ------------------------------------------------------------
@pytest.mark.parametrize(
    "kind, udm_knobs, core_knobs, atol",
    [
        # float32; measured max |difference|: 1.1e-5 (eps -> x̂_0 -> eps round trip), 7e-6
        # (sqrt(bbar_s^2 - sigma~^2) vs bbar_s sqrt(1 - sigma~^2))
        (
            "eps",
            {"reverse": "deterministic", "steps": 50, "spacing": "trailing"},
            {"eta": 0.0, "steps": 50, "spacing": "trailing"},
            5e-5,
        ),
        ("x0", {"reverse": "mixed", "sigma_tilde": "ddpm", "steps": 50}, {"eta": 1.0, "steps": 50}, 5e-5),
    ],
    ids=["deterministic-eps-trailing", "ddpm-x0-leading"],
)
def test_gaussian_udm_reproduces_ddim(mixture, kind, udm_knobs, core_knobs, atol):
    """Article (十一): sigmabar = 0 with sigma~ = 0 is DDIM, with the posterior sigma~ DDIM's eta = 1 (same key, same
    50-step sub-sequence); an eps predictor is converted through the DDPM process."""
    process = dj.process("ddpm")
    predictor = mixture.predictor(process, kind)
    key = jax.random.key(3)
    ours = dj.sample(key, predictor, udm.UDMGaussian(process), udm.UDM(**udm_knobs), (256, 2))
    theirs = dj.sample(key, predictor, process, dj.sampler("ddim", noise_rng="threefry", **core_knobs), (256, 2))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=atol)


def test_gaussian_udm_reproduces_ancestral_posterior(mixture, x64):
    """Article (十一): sigmabar = 0 and sigma_t = bbar_{t-1} beta_t / bbar_t is DDPM's ancestral sampler.

    In x64 over all 200 steps (measured max difference 1e-13; in float32 the core's own ancestral and DDIM eta = 1
    already differ by 1e-3 after 1000 steps, near the boundaries between modes).
    """
    process = dj.process("ddpm", num_steps=200, schedule="su")
    predictor = mixture.predictor(process, "x0")
    key = jax.random.key(11)
    core = dj.sampler("ancestral", variance="posterior", noise_rng="threefry")  # the UDM steps draw threefry
    ancestral = dj.sample(key, predictor, process, core, (256, 2))
    ours = dj.sample(key, predictor, udm.udm_gaussian(num_steps=200, schedule="su"), udm.UDM(reverse="mixed"), (256, 2))
    np.testing.assert_allclose(ours, ancestral, rtol=0, atol=1e-10)


LAW_SAMPLER = {"reverse": "mixed", "sigma_tilde": 0.2, "steps": 100}
LAW_N = 2000  # points per law comparison


@pytest.fixture(scope="module")
def law(mixture):
    """`LAW_N` reference draws of the mixture and the sliced-W1 noise floor of further draws against them (mean + 4 std
    over 8 draws; measured: null mean 0.067, std 0.015, floor 0.13)."""
    draw = jax.jit(lambda key: mixture.sample(key, LAW_N))
    reference = draw(jax.random.key(100))
    floor, _ = sliced_wasserstein_null(jax.random.key(7), draw, reference)
    return reference, floor


def test_mixed_sampler_reproduces_the_mixture(mixture, law):
    """The mixed design with a constant sigma~ = 0.2 (no core sampler has it) on a 100-step sub-sequence, driven by
    the exact x̂_0 = E[x_0 | x_t], lands under the data noise floor (measured 0.077 against 0.13; null mean 0.067).

    With x̂_0 the posterior mean rather than a posterior draw, a constant sigma~ is not exact: each step refreshes a
    fixed share of the noise, which drifts towards the baseline (measured over 6 keys: mean sliced-W1 0.068 at
    sigma~ = 0.2, 0.088 at 0.5). The baseline (sigma~ = 1) lands far above (measured 0.29): its fresh noise undoes
    each estimate and the errors accumulate, as article (十) says; this is also the power of the check.
    """
    reference, floor = law
    gaussian = udm.udm_gaussian()
    predictor = mixture.predictor(gaussian.process, "x0")
    x = dj.sample(jax.random.key(5), predictor, gaussian, udm.UDM(**LAW_SAMPLER), reference.shape)
    distance = float(sliced_wasserstein(jax.random.key(7), x, reference))
    assert distance < floor, f"sliced-W1 {distance:.4f} above the data noise floor {floor:.4f}"
    baseline = dj.sample(
        jax.random.key(5), predictor, gaussian, udm.UDM(reverse="baseline", steps=100), reference.shape
    )
    assert float(sliced_wasserstein(jax.random.key(7), baseline, reference)) > 2 * floor


# ---- marginal consistency of the reverse designs (article (十)) ------------------------------------------------
MARGINAL_CASES = {
    # corruption, (t, s), reverse designs
    "gaussian": (
        udm.udm_gaussian(num_steps=1000),
        (600, 550),
        (2,),
        [
            {"reverse": "baseline"},
            {"reverse": "deterministic"},
            {"reverse": "mixed", "sigma_tilde": 0.5},
            {"reverse": "mixed", "sigma_tilde": "ddpm"},
            {"reverse": "mixed", "sigma_tilde": 0.0},
            {"reverse": "mixed", "sigma_tilde": 1.0},
        ],
    ),
    "blur": (
        udm.ColdBlur(num_steps=40, cold_noise_sigma=0.05),
        (30, 17),
        (4, 4, 1),
        [{"reverse": "baseline"}, {"reverse": "deterministic"}, {"reverse": "mixed", "sigma_tilde": 0.3}],
    ),
    "mask": (
        udm.MaskPixels(num_steps=16, cold_noise_sigma=0.05),
        (12, 5),
        (4, 4, 1),
        [{"reverse": "baseline"}, {"reverse": "deterministic"}, {"reverse": "mixed", "sigma_tilde": 0.3}],
    ),
}


@pytest.mark.parametrize("name", sorted(MARGINAL_CASES))
def test_reverse_designs_keep_the_marginals(name):
    """If x_t ~ p(x_t | x_0), each design with x̂_0 = x_0 gives x_s ~ p(x_s | x_0) = N(D_s x_0, s_s^2 I), article (十).

    One fixed x_0, 40000 draws of x_t, one kernel step t -> s (a skip, as in a sub-sequence); mean and variance of
    every coordinate within 5 standard errors. The same check flags a kernel that adds the fresh noise without
    shrinking the inferred one (variance s_s^2 (1 + sigma~^2)).
    """
    corruption, (t, s), data_shape, designs = MARGINAL_CASES[name]
    shape = (40_000, *data_shape)
    samplers = [udm.UDM(**knobs) for knobs in designs]

    @jax.jit
    def one_step(key):
        key_x0, key_eps, key_step = jax.random.split(key, 3)
        x0 = jnp.broadcast_to(jax.random.uniform(key_x0, (1, *data_shape), minval=-1, maxval=1), shape)
        x_t = corruption.forward(x0, t, corruption.sample_noise(key_eps, shape))
        outs = [sampler.kernel(key_step, 0, corruption, x_t, x0, t, s) for sampler in samplers]
        return outs, corruption.degrade(x0[:1], s)[0]

    outs, mean = one_step(jax.random.key(1))
    std = float(corruption.noise_std(s))
    for knobs, x_s in zip(designs, outs, strict=True):
        assert _moments_ok(x_s, mean, std), knobs
    mixed = designs[2]["sigma_tilde"] * std * jax.random.normal(jax.random.key(4), shape)
    assert not _moments_ok(outs[2] + mixed, mean, std)  # the fresh noise added without shrinking the inferred one
    if name == "gaussian":
        # sigma~ = 0 is the deterministic kernel and sigma~ = 1 the baseline, with the same noise draw (measured:
        # equal up to 5e-7, the rounding of the zero-weighted term).
        np.testing.assert_allclose(outs[4], outs[1], atol=1e-6)
        np.testing.assert_allclose(outs[5], outs[0], atol=1e-6)


def test_sampled_x0_adds_its_variance():
    """`sample_x0="sample"`: x̂_0 = mean + sigmabar_t z'; one step to t = 0 returns x̂_0 itself (variance sigmabar^2)."""
    gaussian = udm.udm_gaussian(num_steps=10)
    center = jnp.array([0.3, -0.7])
    restorer = dj.Predictor(lambda x, t: jnp.broadcast_to(center, x.shape), kind="x0")
    sigma_bar = [0.1 * t for t in range(11)]  # a list, as from a config: stored as a tuple
    sampler = udm.UDM(timesteps=(7,), sample_x0="sample", sigma_bar=sigma_bar)
    x = dj.sample(jax.random.key(0), restorer, gaussian, sampler, (20_000, 2))
    assert _moments_ok(x, center, 0.7)
    assert not _moments_ok(x, center, 0.6)  # the variance check resolves sigmabar


# ---- Cold Diffusion ---------------------------------------------------------------------------------------------
def _images(seed, n=4, shape=(8, 7, 3)):
    """Uniform [-1, 1] test images, drawn by NumPy (no device work)."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (n, *shape)).astype(np.float32)


def test_improved_cold_sampler_telescopes():
    """`x_0 = x_T + sum_t [D_{t-1}(x̂_0^(t)) - D_t(x̂_0^(t))]` with a restorer that is not perfect (float32, measured
    max difference 1e-6), and the naive sampler returns the last x̂_0 re-degraded to t = 0 (itself)."""
    blur = udm.ColdBlur(num_steps=30)
    x_T = _images(0)
    restorer = dj.Predictor(lambda x, t: jnp.tanh(2.0 * x) + 0.01 * t[:, None, None, None], kind="x0")
    x0, info = dj.sample(
        jax.random.key(1),
        restorer,
        blur,
        udm.Cold(method="improved", record_x0=True),
        x_T.shape,
        x_init=x_T,
        return_info=True,
    )
    hats = info["x0_hat"]
    assert hats.shape == (30, *x_T.shape) and int(info["nfe"]) == 30
    steps = jnp.arange(30, 0, -1)
    total = x_T + jax.jit(jax.vmap(lambda hat, t: blur.degrade(hat, t - 1) - blur.degrade(hat, t)))(hats, steps).sum(0)
    np.testing.assert_allclose(x0, total, atol=1e-5)
    naive, info = dj.sample(
        jax.random.key(1),
        restorer,
        blur,
        udm.Cold(method="naive", record_x0=True),
        x_T.shape,
        x_init=x_T,
        return_info=True,
    )
    np.testing.assert_array_equal(naive, info["x0_hat"][-1])
    assert np.abs(np.asarray(naive) - np.asarray(x0)).max() > 1e-2


@pytest.mark.parametrize(
    "corruption",
    [udm.ColdBlur(num_steps=30, cold_noise_sigma=0.0), udm.MaskPixels(num_steps=56, cold_noise_sigma=0.0)],
    ids=["blur", "mask"],
)
def test_cold_samplers_with_perfect_and_biased_restorers(corruption):
    """Perfect restorer (x̂_0 = x_0, sigma = 0, x_T = D_T x_0): both samplers return x_0 (measured: naive exact,
    improved 5e-7). Constant bias e (x̂_0 = x_0 + e): the naive error is ||e||, the improved one
    `||e - D_T e|| <= ||D_T(e) - D_0(e)||`; for the blur it drops the part of e that survives the blur (its mean)."""
    x0 = _images(0)
    e = (0.2 + 0.05 * np.random.default_rng(1).standard_normal(x0.shape)).astype(np.float32)
    x_T = corruption.degrade(x0, corruption.num_steps)
    errors = {}
    for biased, x0_hat in ((False, x0), (True, x0 + e)):
        restorer = dj.Predictor(lambda x0_hat, x, t: x0_hat, kind="x0", params=x0_hat)  # one program for both
        for method in ("naive", "improved"):
            out = dj.sample(jax.random.key(2), restorer, corruption, udm.Cold(method=method), x0.shape, x_init=x_T)
            errors[method, biased] = np.asarray(out) - x0
    np.testing.assert_array_equal(errors["naive", False], 0.0)
    np.testing.assert_allclose(errors["improved", False], 0.0, atol=1e-5)
    norm = np.linalg.norm
    np.testing.assert_allclose(norm(errors["naive", True]), norm(e), rtol=1e-5)
    bound = norm(np.asarray(corruption.degrade(e, corruption.num_steps)) - e)  # D_0 = I
    np.testing.assert_allclose(norm(errors["improved", True]), bound, rtol=1e-4)  # the bound holds with equality
    if isinstance(corruption, udm.ColdBlur):
        assert norm(errors["improved", True]) < 0.5 * norm(e)


# ---- the blur and mask operators --------------------------------------------------------------------------------
def test_blur_keeps_channel_means_is_linear_and_starts_at_identity(x64):
    """B_t keeps every channel's mean and is linear (x64: measured 1e-15), B_0 = I exactly, batched t = scalar t;
    at T the image is flat at its channel means."""
    blur = udm.ColdBlur(num_steps=300)
    degrade = jax.jit(blur.degrade)
    x, y = _images(0, 3, (9, 6, 2)).astype(np.float64), _images(1, 3, (9, 6, 2)).astype(np.float64)
    for t in (1, 17, 300):
        bx = degrade(x, t)
        np.testing.assert_allclose(bx.mean((1, 2)), x.mean((1, 2)), atol=1e-12)
        np.testing.assert_allclose(degrade(2.0 * x - 3.0 * y, t), 2.0 * bx - 3.0 * degrade(y, t), atol=1e-12)
    np.testing.assert_array_equal(degrade(x, 0), x)
    batched = degrade(x, jnp.array([0, 17, 300]))
    for i, t in enumerate((0, 17, 300)):
        np.testing.assert_allclose(batched[i], degrade(x, t)[i], atol=1e-12)
    flat = degrade(x, 300)
    assert float(flat.std((1, 2)).max()) < 1e-3 < float(degrade(x, 17).std((1, 2)).min())
    matrix = udm.blur_matrix(9, udm.gaussian_kernel(11, 3.0))  # kernel wider than the signal: reflected twice
    np.testing.assert_allclose(matrix.sum(0), 1.0, atol=1e-14)
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-14)


def test_blur_prior_is_fitted_to_the_channel_means():
    """The fitted prior draws flat images whose channel means have the data's mean and covariance."""
    data = np.random.default_rng(0).standard_normal((1000, 4, 4, 3)) * [0.2, 0.5, 1.0] + [1.0, 0.0, -1.0]
    blur = udm.fit_blur_prior(udm.ColdBlur(num_steps=20), data)
    x_T = jax.jit(blur.prior_sample, static_argnums=1)(jax.random.key(1), (20_000, 4, 4, 3))
    x_T = np.asarray(x_T)
    means, data_means = x_T.mean((1, 2)), data.mean((1, 2))
    assert _moments_ok(means, data_means.mean(0), data_means.std(0))
    within = (x_T - means[:, None, None]).std()  # the noise less its spatial mean over 16 pixels
    assert within == pytest.approx(blur.cold_noise_sigma * np.sqrt(15 / 16), rel=0.02)
    with pytest.raises(ValueError, match="fit_blur_prior"):
        udm.ColdBlur().prior_sample(jax.random.key(0), (2, 4, 4, 3))


def test_mask_hides_pixels_in_a_fixed_order_and_its_prior_is_exact():
    """Step t hides ceil(t P / T) pixels (all channels), the hidden set grows, and x_T = sigma eps exactly."""
    mask = udm.MaskPixels(num_steps=20)
    x = _images(0, 2, (5, 8, 3)) + 2.0  # no zeros in the data
    hidden = np.asarray(jax.jit(jax.vmap(lambda t: (mask.degrade(x, t) == 0).all(-1)))(jnp.arange(21)))
    for t in range(21):
        assert hidden[t, 0].sum() == -(-t * 40 // 20)
        np.testing.assert_array_equal(hidden[t, 0], hidden[t, 1])  # the same order for every example
        assert t == 0 or np.all(hidden[t] >= hidden[t - 1])
    eps = mask.sample_noise(jax.random.key(1), x.shape)
    np.testing.assert_array_equal(mask.forward(x, 20, eps), mask.cold_noise_sigma * eps)


# ---- losses -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "corruption",
    [udm.udm_gaussian(num_steps=100), udm.ColdBlur(num_steps=20), udm.MaskPixels(num_steps=20)],
    ids=["gaussian", "blur", "mask"],
)
def test_restoration_losses(corruption):
    """Data at one point c: the perfect restorer (returns c) has loss 0; a constant offset d has L2 loss mean(d^2)
    and L1 loss mean(|d|) exactly."""
    c = _images(0, 1, (4, 4, 1))
    x0 = np.broadcast_to(c, (64, 4, 4, 1))
    d = 0.1 * _images(1, 1, (4, 4, 1))
    perfect = lambda params, x, t: jnp.broadcast_to(c, x.shape)  # noqa: E731
    offset = lambda params, x, t: jnp.broadcast_to(c + d, x.shape)  # noqa: E731
    l2, l1 = udm.udm_l2(corruption), udm.udm_l1(corruption)
    key = jax.random.key(2)
    assert float(_loss(l2, perfect, key, None, x0)) == 0.0 and float(_loss(l1, perfect, key, None, x0)) == 0.0
    np.testing.assert_allclose(_loss(l2, offset, key, None, x0), np.mean(d**2), rtol=1e-6)
    np.testing.assert_allclose(_loss(l1, offset, key, None, x0), np.mean(np.abs(d)), rtol=1e-6)
    summed = _loss(udm.udm_l2(corruption, reduction="sum"), offset, key, None, x0)
    np.testing.assert_allclose(summed, np.sum(d**2), rtol=1e-5)


def test_gaussian_l2_loss_with_identity_and_eps_predictions():
    """On udm_gaussian with data at c: the identity restorer (x̂_0 = x_t) has expected loss
    `mean_t [(1 - abar_t)^2 mean(c^2) + bbar_t^2]` (within 5 Monte-Carlo standard errors, 20000 examples), and the
    exact eps of the point, converted to x̂_0, has loss 0 (measured 1e-11)."""
    gaussian = udm.udm_gaussian(num_steps=100)
    c = np.array([0.8, -0.4, 0.1], np.float32)
    x0 = np.broadcast_to(c, (20_000, 3))
    identity = lambda params, x, t: x  # noqa: E731
    value = float(_loss(udm.udm_l2(gaussian), identity, jax.random.key(0), None, x0))
    abar = gaussian.process.alpha_bars()[1:]  # t = 1..T
    a2, b2 = (1 - abar)[:, None] ** 2 * c**2, (1 - abar**2)[:, None]  # per t and coordinate
    per_t = np.mean(a2 + b2, axis=1)
    # Per-example variance: over t, plus over eps given t, Var(mean_i (a_i + b eps_i)^2) = sum(4 a^2 b^2 + 2 b^4)/9.
    variance = per_t.var() + np.mean(np.sum(4 * a2 * b2 + 2 * b2**2, axis=1) / 9)
    assert abs(value - per_t.mean()) < 5 * np.sqrt(variance / x0.shape[0])
    exact_eps = dirac(c).predictor(gaussian.process, "eps")
    loss = _loss(udm.udm_l2(gaussian, prediction="eps"), lambda p, x, t: exact_eps(x, t), jax.random.key(0), None, x0)
    assert float(loss) < 1e-8


class TinyAutoencoder(nn.Module):
    """A reference encoder-decoder pair for the loss test: F_phi(x_0) and G(z_t, t)."""

    num_steps: int = 50

    def setup(self):
        self.encoder = nn.Dense(3)
        self.decoder = nn.Dense(2)

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z, t):
        return self.decoder(jnp.concatenate([z, t[:, None] / self.num_steps], axis=-1))

    def __call__(self, x, t):
        return self.decode(self.encode(x), t)


def test_encoder_loss_trains_both_parts():
    """Gradients of the udm_encoder loss reach encoder and decoder; with latent_norm, scaling the encoder changes
    nothing (so it cannot beat the noise by growing its output), without it the loss changes."""
    model = TinyAutoencoder()
    x0 = jax.random.normal(jax.random.key(0), (32, 2))
    params = model.init(jax.random.key(1), x0, jnp.ones((32,), jnp.int32))

    def apply_fn(params, x, t, cond=None, method=None):
        if method == "encode":
            return model.apply(params, x, method=TinyAutoencoder.encode)
        return model.apply(params, x, t, method=TinyAutoencoder.decode)

    gaussian = udm.udm_gaussian(num_steps=50)
    loss, raw = udm.udm_encoder(gaussian), udm.udm_encoder(gaussian, latent_norm=False)

    @jax.jit
    def evaluate(key, params):
        value, grads = jax.value_and_grad(loss, argnums=2)(key, apply_fn, params, x0)
        scaled = {
            "params": {**params["params"], "encoder": jax.tree.map(lambda v: 10.0 * v, params["params"]["encoder"])}
        }
        norms = {part: optax.tree.norm(grads["params"][part]) for part in ("encoder", "decoder")}
        return (
            value,
            norms,
            loss(key, apply_fn, scaled, x0),
            raw(key, apply_fn, scaled, x0) - raw(key, apply_fn, params, x0),
        )

    value, norms, scaled_value, raw_change = evaluate(jax.random.key(2), params)
    assert np.isfinite(float(value))
    assert min(float(v) for v in norms.values()) > 1e-4, norms
    np.testing.assert_allclose(scaled_value, value, rtol=1e-5)
    assert abs(float(raw_change)) > 1e-3


def test_encoder_sampler_with_identity_encoder_is_the_udm_sampler(mixture):
    """With F_phi = identity (no latent_norm) and the exact decoder, the encoder sampler is the Gaussian UDM
    sampler step for step (measured max difference 0), and it counts decoder plus encoder calls (2 steps - 1)."""
    gaussian = udm.udm_gaussian()
    exact = mixture.predictor(gaussian.process, "x0")

    def fn(x, t, method=None):
        return x if method == "encode" else exact(x, t)

    key, shape = jax.random.key(5), (LAW_N, 2)  # the law test's program: compiled once
    ours, info = dj.sample(
        key,
        dj.Predictor(fn, kind="x0"),
        gaussian,
        udm.UDMEncoder(latent_norm=False, **LAW_SAMPLER),
        shape,
        return_info=True,
    )
    plain = dj.sample(key, exact, gaussian, udm.UDM(**LAW_SAMPLER), shape)
    np.testing.assert_allclose(ours, plain, atol=1e-6)
    assert int(info["nfe"]) == 2 * LAW_SAMPLER["steps"] - 1


# ---- validation -------------------------------------------------------------------------------------------------
X0 = dj.Predictor(lambda x, t: x, kind="x0")


@pytest.mark.parametrize(
    "process, predictor, sampler, message",
    [
        (dj.process("ddpm", num_steps=10), X0, udm.UDM(), "needs a UDM corruption"),
        (dj.process("ddpm", num_steps=10), X0, udm.Cold(), "needs a UDM corruption"),
        (udm.ColdBlur(num_steps=10), X0, udm.UDM(reverse="forward"), "valid choices: 'baseline'"),
        (udm.ColdBlur(num_steps=10, cold_noise_sigma=0.0), X0, udm.UDM(), "invertible"),
        (udm.ColdBlur(num_steps=10), X0, udm.UDM(reverse="mixed"), "sigma_tilde='ddpm'"),
        (udm.ColdBlur(num_steps=10), X0, udm.UDM(reverse="mixed", sigma_tilde=1.5), "float in \\[0, 1\\]"),
        (udm.ColdBlur(num_steps=10), X0, udm.UDM(sample_x0="sample"), "needs sigma_bar"),
        (udm.ColdBlur(num_steps=10), dj.Predictor(lambda x, t: x), udm.Cold(), "kind 'x0'"),
        (udm.ColdBlur(num_steps=10), X0, udm.Cold(method="fast"), "valid choices: 'naive'"),
        (udm.ColdBlur(num_steps=10), X0, udm.Cold(steps=20), "between 1 and T=10"),
        (udm.ColdBlur(num_steps=10), X0, udm.UDMEncoder(), "needs dj.udm.udm_gaussian"),
        (udm.udm_gaussian(num_steps=10), X0, udm.UDM(spacing="edmm"), "valid choices"),
    ],
)
def test_invalid_choices_raise_one_line_before_compiling(process, predictor, sampler, message):
    before = _sample._cache_size()
    with pytest.raises(ValueError, match=message) as error:
        dj.sample(jax.random.key(0), predictor, process, sampler, (2, 4, 4, 1))
    assert "\n" not in str(error.value)
    assert _sample._cache_size() == before


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: udm.corruption("blur"), "valid corruptions: cold_blur"),
        (lambda: udm.corruption("cold_blur", kernel=3), "valid knobs"),
        (lambda: udm.corruption("cold_blur", kernel_size=4), "odd"),
        (lambda: udm.corruption("udm_gaussian", schedule="quadratic"), "valid choices"),
        (lambda: udm.udm_l2(udm.ColdBlur(), prediction="eps"), "valid choices: 'x0'"),
        (lambda: udm.udm_l1(dj.process("ddpm")), "needs a UDM corruption"),
        (lambda: udm.udm_encoder(udm.MaskPixels()), "needs dj.udm.udm_gaussian"),
    ],
)
def test_bad_builders_raise(call, message):
    with pytest.raises(ValueError, match=message) as error:
        call()
    assert "\n" not in str(error.value)


def test_second_call_does_not_recompile(mixture):
    """A new key, and a corruption and sampler rebuilt from the same knobs, reuse the compiled program."""
    gaussian = udm.udm_gaussian()
    dj.sample(
        jax.random.key(0), mixture.predictor(gaussian.process, "x0"), gaussian, udm.UDM(**LAW_SAMPLER), (LAW_N, 2)
    )
    size = _sample._cache_size()
    again = udm.udm_gaussian()
    dj.sample(jax.random.key(1), mixture.predictor(again.process, "x0"), again, udm.UDM(**LAW_SAMPLER), (LAW_N, 2))
    assert _sample._cache_size() == size
