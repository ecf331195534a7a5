"""Flow matching and rectified flow (articles (十五), (十七)) against exact oracles."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import diffjax as dj
from diffjax import flows
from diffjax.flows._ode import _solve
from diffjax.processes import GaussianProcess
from diffjax.testing import dirac, gaussian_mixture, sliced_wasserstein

N = 4000  # samples per law comparison


def _mixture(weights=(0.2, 0.3, 0.5)):
    """The three-component 2-D mixture of the sampler tests."""
    return gaussian_mixture(
        list(weights), [[-2.0, -1.0], [0.0, 2.0], [2.0, -0.5]], [[0.3, 0.6], [0.5, 0.25], [0.4, 0.4]]
    )


MIXTURE = _mixture()
WRONG = _mixture((0.3, 0.3, 0.4))  # the sampler tests' power check
FAR = _mixture((0.4, 0.3, 0.3))  # for the loss: its velocity gradient stands 12-15 standard errors off zero
FLOW = dj.process("flow")
PRIOR = flows.GaussianPrior((2,))


@dataclasses.dataclass(frozen=True)
class _PathProcess(GaussianProcess):
    """`x_t = (alpha_scale cos(pi t/2) or 1 - t) x_0 + sigma(t) eps`: the Gaussian process of a path with a Gaussian
    prior, so that the mixture oracle gives the path's exact marginal velocity."""

    kind: str = "trigonometric"
    gamma: float = 0.0  # extra-noise scale of the `noisy` path, sigma_t = gamma sqrt(t (1 - t))

    @property
    def t_min(self):
        return 0.0

    @property
    def t_max(self):
        return 1.0

    def alpha(self, t):
        t = jnp.asarray(t, jnp.result_type(float))
        return jnp.cos(0.5 * jnp.pi * t) if self.kind == "trigonometric" else 1.0 - t

    def sigma(self, t):
        t = jnp.asarray(t, jnp.result_type(float))
        if self.kind == "trigonometric":
            return jnp.sin(0.5 * jnp.pi * t)
        return jnp.sqrt(t**2 + self.gamma**2 * t * (1.0 - t))  # t x_1 + gamma sqrt(t(1-t)) eps, independent


def _noisy_mu(t, x0, x1):
    return (1.0 - t) * x0 + t * x1


def _noisy_sigma(t):
    return 0.5 * jnp.sqrt(t * (1.0 - t))


PATH_CASES = {
    "straight": (flows.Straight(), FLOW),
    "trigonometric": (flows.Trigonometric(), _PathProcess("trigonometric")),
    "interpolant-with-noise": (flows.Interpolant(_noisy_mu, _noisy_sigma), _PathProcess("noisy", 0.5)),
}


# ---- the loss -------------------------------------------------------------------------------------------------
def _directions(x, t):
    """A fixed, non-trivial perturbation field h(x, t)."""
    return jnp.sin(x + t[:, None]) + 0.3 * jnp.cos(2.0 * x[:, ::-1])


def _perturbed(velocity, toward=None):
    """`apply(params, x, t) = v + p_b1 h + p_b2 (toward - v)`: one parameter per example and direction, so `B dL/dp_b`
    is example b's i.i.d. gradient contribution (the z-score approach of the objective tests)."""

    def apply(params, x, t):
        v = velocity(x, t)
        out = v + params[:, :1] * _directions(x, t)
        return out if toward is None else out + params[:, 1:] * (toward(x, t) - v)

    return apply


def _contributions(loss, velocity, x0, x1=None, toward=None, batch=4096):
    """Per-example gradient contributions `(batch, directions)` at p = 0."""
    grad = jax.jit(jax.grad(lambda p: loss(jax.random.key(2), _perturbed(velocity, toward), p, x0, x1)))
    return np.asarray(grad(jnp.zeros((batch, 1 if toward is None else 2))), np.float64) * batch


def _z_scores(contrib):
    return contrib.mean(0) / (contrib.std(0, ddof=1) / np.sqrt(contrib.shape[0]))


@pytest.mark.parametrize("case", sorted(PATH_CASES))
def test_exact_marginal_velocity_minimises_flow_matching(case):
    """The oracle `E[d x_t/dt | x_t]` minimises the loss: its gradient along a fixed field and along the direction
    to a wrong mixture's velocity is zero (|z| < 4); at the wrong velocity the gradient toward the oracle is not
    (|z| > 8); and on common draws the wrong velocity's excess loss is `E||v - v*||^2 / d` (the cross term, whose
    per-example values are the gradient contributions, within 4 standard errors)."""
    path, process = PATH_CASES[case]
    loss = flows.flow_matching(path, PRIOR, t_min=1e-3)  # eps of the oracle is undefined at t = 0
    x0 = MIXTURE.sample(jax.random.key(1), 4096)
    exact, wrong = (m.predictor(process, "velocity") for m in (MIXTURE, FAR))
    at_exact = _contributions(loss, exact, x0, toward=wrong)
    assert np.all(np.abs(_z_scores(at_exact)) < 4.0), _z_scores(at_exact)
    at_wrong = _contributions(loss, wrong, x0, toward=exact)
    assert abs(_z_scores(at_wrong)[1]) > 8.0, _z_scores(at_wrong)

    key = jax.random.key(2)
    excess = float(loss(key, lambda p, x, t: wrong(x, t), None, x0) - loss(key, lambda p, x, t: exact(x, t), None, x0))
    # Along p2 from the oracle, L(1) - L(0) = mean ||v - v*||^2 / d + mean(contributions) exactly: recover the
    # squared distance from the same draws as the excess minus the cross term.
    cross, se = at_exact[:, 1].mean(), at_exact[:, 1].std(ddof=1) / np.sqrt(4096)
    distance = excess - cross
    assert distance > 0 and abs(excess - distance) < 4 * se + 1e-9
    assert excess > 4 * se, (excess, se)


def test_straight_gaussian_loss_is_the_flow_objective():
    """On the straight path with the standard Gaussian prior, the loss equals
    `dj.objective("flow_matching", dj.process("flow"), prediction="velocity")` draw for draw."""
    x0 = MIXTURE.sample(jax.random.key(1), 512)
    objective = dj.objective("flow_matching", FLOW, prediction="velocity")
    velocity = MIXTURE.predictor(dj.process("flow", t_eps=1e-3), "velocity")

    def apply(params, x, t):
        return params * velocity(x, t) + (1 - params) * jnp.tanh(x)

    for loss in (flows.flow_matching(), flows.flow_matching("straight", PRIOR)):
        for key in (jax.random.key(3), jax.random.key(4)):
            for params in (0.0, 0.5):
                np.testing.assert_allclose(loss(key, apply, params, x0), objective(key, apply, params, x0), rtol=1e-6)


def test_coupled_pairs_replace_the_prior_draw():
    """With explicit pairs the target is `x_1 - x_0` of the given pairs: a model returning exactly that velocity
    along each straight segment has zero loss; an independent prior draw would not."""
    x0 = MIXTURE.sample(jax.random.key(1), 256)
    x1 = x0[::-1] + 1.0
    segment_velocity = x1 - x0

    def apply(params, x, t):
        return segment_velocity  # the rows stay aligned with their pairs

    loss = flows.flow_matching()
    assert float(loss(jax.random.key(0), apply, None, x0, x1)) == 0.0
    assert float(loss(jax.random.key(0), apply, None, x0)) > 1.0


# ---- the ODE sampler ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference():
    return MIXTURE.sample(jax.random.key(100), N)


@pytest.fixture(scope="module")
def noise_floor(reference):
    """Sliced-W1 between the reference and 8 fresh data draws of the same size: mean + 4 std (as in the sampler
    tests; measured null mean ~0.032, std ~0.007)."""
    null = [
        float(sliced_wasserstein(jax.random.key(7), MIXTURE.sample(jax.random.key(200 + i), N), reference))
        for i in range(8)
    ]
    return float(np.mean(null) + 4 * np.std(null))


def test_euler_with_the_exact_velocity_reproduces_the_mixture(reference, noise_floor):
    """100 Euler steps from N(0, I) with the oracle velocity land within the data noise floor (measured sliced-W1
    0.034 against a floor of 0.058); each component gets its mass (5 standard errors); the wrong-weights model lands
    at 0.236, far above."""
    x, info = flows.sample(
        jax.random.key(3), MIXTURE.predictor(FLOW, "velocity"), PRIOR, N, steps=100, return_info=True
    )
    assert int(info["nfe"]) == 100 and bool(jnp.all(jnp.isfinite(x)))
    distance = float(sliced_wasserstein(jax.random.key(7), x, reference))
    assert distance < noise_floor, (distance, noise_floor)
    resp = MIXTURE.responsibilities(x)
    np.testing.assert_array_less(jnp.abs(resp.mean(0) - MIXTURE.weights), 5 * resp.std(0) / np.sqrt(N) + 1e-3)
    wrong = flows.sample(jax.random.key(3), WRONG.predictor(FLOW, "velocity"), PRIOR, N, steps=100)
    assert float(sliced_wasserstein(jax.random.key(7), wrong, reference)) > 2 * noise_floor


def test_euler_sampler_is_ddim_on_the_flow_process():
    """On the straight Gaussian path, Euler steps are DDIM's eta = 0 steps on `dj.process("flow")`: same paths
    (measured difference 4e-6, float32)."""
    z = PRIOR.sample(jax.random.key(5), 256)
    predictor = MIXTURE.predictor(FLOW, "velocity")
    ours = flows.sample(jax.random.key(0), predictor, PRIOR, 256, steps=50, x_init=z)
    ddim = dj.sample(jax.random.key(0), predictor, FLOW, dj.sampler("ddim", steps=50), (256, 2), x_init=z)
    np.testing.assert_allclose(ours, ddim, rtol=0, atol=1e-5)


def _article_15_field(x, t):
    """The exact marginal field of article (十五)'s 1-D demo: prior U[0, 2], data {0.5, 0.5, 1.2, 1.7}.

    `p_t(x|x_0) = prior((x - (1 - t) x_0) / t) / t`; `f = sum_i f_i p_i / sum_i p_i` with `f_i = (x - x_i)/t`.
    """
    points = jnp.array([0.5, 1.2, 1.7])
    weights = jnp.array([0.5, 0.25, 0.25])
    tt = t[:, None]
    x1 = (x - (1 - tt) * points) / tt  # (B, 3): the prior draw each data point would need
    inside = (x1 >= 0) & (x1 <= 2)
    w = weights * inside
    # Off every support (an Euler step can overshoot an edge by O(dt)): head for the nearest admissible point.
    nearest = jnp.argmin(jnp.abs(x1 - 1.0), axis=-1)
    w = jnp.where(w.sum(-1, keepdims=True) > 0, w, jax.nn.one_hot(nearest, 3))
    return ((w * (x - points) / tt).sum(-1) / w.sum(-1))[:, None]


def test_uniform_prior_demo_of_article_15():
    """Article (十五): uniformly spaced starts on [0, 2] end at 0.5, 1.2, 1.7 in proportions 1/2, 1/4, 1/4 (measured:
    exactly, every end within 1e-7 of its point, order kept), and the exact field is a stationary point of the
    flow-matching loss with the uniform prior (|z| < 4; shifting it by 0.1 gives |z| = 12)."""
    starts = jnp.linspace(0.0, 2.0, 1002)[1:-1, None]
    prior = flows.UniformPrior((1,), 0.0, 2.0)
    ends = flows.sample(jax.random.key(0), _article_15_field, prior, 1000, steps=1000, x_init=starts)
    points = np.array([0.5, 1.2, 1.7])
    nearest = np.abs(np.asarray(ends) - points).argmin(-1)
    np.testing.assert_allclose(np.abs(np.asarray(ends)[:, 0] - points[nearest]).max(), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.bincount(nearest, minlength=3) / 1000, [0.5, 0.25, 0.25], atol=3e-3)
    assert np.all(np.diff(np.asarray(ends)[:, 0]) >= -1e-6)  # paths do not cross: the map is monotone

    data = jnp.asarray(np.random.default_rng(0).choice([0.5, 0.5, 1.2, 1.7], size=(4096, 1)))
    loss = flows.flow_matching("straight", prior, t_min=1e-3)
    z_exact = _z_scores(_contributions(loss, _article_15_field, data))
    z_wrong = _z_scores(_contributions(loss, lambda x, t: _article_15_field(x, t) + 0.1, data))
    assert abs(z_exact[0]) < 4.0 and abs(z_wrong[0]) > 8.0, (z_exact, z_wrong)


# ---- reflow and straightness ----------------------------------------------------------------------------------
def test_reflow_pairs_are_deterministic_invertible_couplings():
    """Reflow pairs from the adaptive solver: re-solving from x_1 returns the same x_0, and solving x_0 forwards to
    t = 1 returns x_1 (measured error 1.1e-4 at rtol = atol = 1e-5)."""
    velocity = MIXTURE.predictor(FLOW, "velocity")
    x1, x0 = flows.reflow_pairs(jax.random.key(1), velocity, PRIOR, 256, solver="tsit5", t_min=1e-3)
    again, info = flows.sample(
        jax.random.key(9), velocity, PRIOR, 256, solver="tsit5", t_min=1e-3, x_init=x1, return_info=True
    )
    np.testing.assert_array_equal(again, x0)
    back = flows.solve(velocity, x0, t_start=1e-3, t_end=1.0, solver="tsit5")
    np.testing.assert_allclose(back, x1, rtol=0, atol=1e-3)
    assert int(info["nfe"]) == 1 + 6 * int(info["num_steps"])


def _gaussian_1rf(mu, s, t):
    """Mean and std of `x_t` for data N(mu, s^2 I), prior N(0, I) and the exact 1-rectified flow."""
    return (1 - t) * mu, np.sqrt((1 - t) ** 2 * s**2 + t**2)


def test_gaussian_reflow_couples_by_the_monotone_map_and_straightens(x64):
    """Article (十七): for Gaussian data N(mu, s^2 I) the 1-rectified flow maps x_1 to `mu + s x_1` (the monotone
    map), and the 2-rectified flow trained on those pairs has the velocity `(1 - s) x_1 - mu` along straight lines.

    Checks: reflow pairs match the map (adaptive solve, 1e-5); that velocity is the flow-matching minimiser on the
    coupled pairs; the straightness of the 1-RF paths is `E||x_1||^2 int (1 - s - sd'_t)^2 dt` with
    `sd_t = sqrt((1 - t)^2 s^2 + t^2)` (within 2%: measured 0.342 against 0.345, the O(1/steps) error of 400
    Euler steps), and that of the 2-RF paths is 0 (below 1e-12 of it). Measured reflow-map error 7e-6.
    """
    mu, s = jnp.array([1.0, -0.5]), 0.4
    data = gaussian_mixture([1.0], mu[None], s)
    v1 = data.predictor(FLOW, "velocity")
    x1, x0 = flows.reflow_pairs(jax.random.key(2), v1, PRIOR, 512, solver="tsit5", t_min=1e-4)
    mean, std = _gaussian_1rf(mu, s, 1e-4)
    np.testing.assert_allclose(x0, mean + std * x1, rtol=0, atol=1e-4)

    def v2(x, t):
        x1_hat = (x - (1 - t[:, None]) * mu) / ((1 - t[:, None]) * s + t[:, None])
        return (1 - s) * x1_hat - mu

    pairs_x0 = mu + s * x1
    loss = flows.flow_matching(t_min=1e-3)
    grads = jax.grad(lambda p: loss(jax.random.key(3), _perturbed(v2), p, pairs_x0, x1))(jnp.zeros((512, 1)))
    np.testing.assert_allclose(grads, 0.0, atol=1e-12)  # with exact pairs the residual is zero row by row

    z = PRIOR.sample(jax.random.key(4), 2048).astype(jnp.float64)
    s1 = float(flows.straightness(jax.random.key(0), v1, PRIOR, 2048, steps=400, t_min=1e-4, x_init=z))
    deriv = lambda t: (t - (1 - t) * s**2) / _gaussian_1rf(0.0, s, t)[1]  # noqa: E731
    integral, _ = integrate.quad(lambda t: (1 - s - deriv(t)) ** 2, 1e-4, 1.0)
    expected = float(jnp.mean(jnp.sum(z**2, -1))) * integral
    np.testing.assert_allclose(s1, expected, rtol=0.02)
    s2 = float(flows.straightness(jax.random.key(0), v2, PRIOR, 2048, steps=400, t_min=1e-4, x_init=z))
    assert s2 < 1e-12 * s1, (s1, s2)
    normalized = float(
        flows.straightness(jax.random.key(0), v1, PRIOR, 2048, steps=400, t_min=1e-4, x_init=z, normalized=True)
    )
    assert 0.0 < normalized < 1.0


def test_dirac_data_gives_straight_paths():
    """For data at one point every 1-RF path is the straight segment to it: straightness 0 (measured 1e-12, float32
    round-off, against 1.37 for the mixture)."""
    velocity = dirac([0.7, -1.3]).predictor(dj.process("flow"), "velocity")
    value = float(flows.straightness(jax.random.key(0), velocity, PRIOR, 512, steps=50))
    curved = float(flows.straightness(jax.random.key(0), MIXTURE.predictor(FLOW, "velocity"), PRIOR, 512, steps=50))
    assert value < 1e-8 * curved, (value, curved)


def test_adaptive_nfe_counts_the_model_calls_and_no_recompile():
    calls = []
    oracle = MIXTURE.predictor(FLOW, "velocity")

    def model(x, t):
        jax.debug.callback(lambda: calls.append(1))
        return oracle(x, t)

    sizes = []
    for seed in (1, 2):
        calls.clear()
        x, info = flows.sample(
            jax.random.key(seed), model, PRIOR, 64, solver="dopri5", t_min=1e-3, rtol=1e-3, atol=1e-3, return_info=True
        )
        jax.block_until_ready(x)
        assert int(info["nfe"]) == len(calls) > 0
        sizes.append(_solve._cache_size())
    assert sizes[0] == sizes[1]


# ---- bad input ------------------------------------------------------------------------------------------------
def _bad_mu(t, x0, x1):
    return (1.0 - t) * x0  # never reaches x_1


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: flows.flow_matching("curved"), "valid paths: straight, trigonometric"),
        (lambda: flows.flow_matching(flows.Interpolant(_bad_mu)), "x_t = x_1 at t = 1"),
        (lambda: flows.flow_matching(prior="gaussian"), "prior must be"),
        (lambda: flows.flow_matching(reduction="max"), "valid choices: 'mean', 'sum'"),
        (lambda: flows.flow_matching(time_sampling="uniform_discrete"), "needs a discrete process"),
        (lambda: flows.flow_matching(time_sampling="uniform", logit_std=1.0), "valid knobs"),
        (lambda: flows.flow_matching(t_min=0.5, t_max=0.2), "t_min < t_max"),
        (
            lambda: flows.flow_matching(prior=flows.GaussianPrior((3,)))(
                jax.random.key(0), lambda p, x, t: x, None, jnp.zeros((4, 2))
            ),
            "data shape",
        ),
        (lambda: flows.GaussianPrior((2,), std=0.0), "std must be positive"),
        (lambda: flows.UniformPrior((2,), 1.0, -1.0), "low < high"),
        (lambda: flows.sample(jax.random.key(0), MIXTURE.predictor(FLOW, "eps"), PRIOR, 4), "needs a 'velocity'"),
        (lambda: flows.sample(jax.random.key(0), lambda x, t: x, PRIOR, 4, solver="rk4"), "valid choices: 'euler'"),
        (lambda: flows.sample(jax.random.key(0), lambda x, t: x, PRIOR, 4, steps=0), "steps must be"),
        (lambda: flows.straightness(jax.random.key(0), lambda x, t: x, PRIOR, 4, t_min=1.0), "t_min < t_max"),
    ],
)
def test_bad_input_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call()
