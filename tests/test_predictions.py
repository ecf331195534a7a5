"""Prediction kinds: exact conversions on every process (FORMULATIONS §1.3), checked against the mixture oracle."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax.predictions import KINDS, Predictor, convert, from_x0_eps, to_x0_eps
from diffjax.processes import PROCESSES, process
from diffjax.testing import gaussian_mixture

# Interior times per process: scalar checks use each, per-example checks use them all at once.
TIMES = {
    "ddpm": [10, 250, 600, 900],
    "vp": [0.02, 0.3, 0.6, 0.9],
    "subvp": [0.02, 0.3, 0.6, 0.9],
    "ve": [0.05, 0.3, 0.6, 0.95],
    "edm": [0.01, 0.5, 3.0, 40.0],
    "flow": [0.05, 0.3, 0.6, 0.9],
}
BATCH = 4  # = len(TIMES[name]), so the per-example times have shape (BATCH,)


def _kinds(name):
    return [k for k in KINDS if not (PROCESSES[name].is_discrete and k == "velocity")]


def _time_cases(name):
    """Scalar times, then one per-example `(B,)` vector."""
    dtype = jnp.int32 if PROCESSES[name].is_discrete else jnp.float64
    ts = [jnp.asarray(t, dtype) for t in TIMES[name]]
    return ts + [jnp.asarray(TIMES[name], dtype)]


def _mixture():
    return gaussian_mixture([0.2, 0.5, 0.3], [[-1.0, 0.5, 0.0], [0.7, -0.3, 1.2], [0.0, 1.5, -1.0]],
                            [[0.3, 0.3, 0.3], [0.6, 0.6, 0.6], [0.2, 0.4, 0.8]])


# ---- round trips -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(PROCESSES))
def test_round_trip_between_every_pair_of_kinds(name, key, x64):
    """convert(A -> B -> A) is the identity; in float64 the measured worst relative error is 9e-12."""
    p = process(name)
    k_x, k_v = jax.random.split(key)
    x = jax.random.normal(k_x, (BATCH, 3), jnp.float64)
    value = jax.random.normal(k_v, (BATCH, 3), jnp.float64)
    for t in _time_cases(name):
        for a, b in itertools.permutations(_kinds(name), 2):
            there = convert(p, x, t, value, a, b)
            back = convert(p, x, t, there, b, a)
            np.testing.assert_allclose(back, value, rtol=1e-9, atol=1e-9, err_msg=f"{a}->{b}->{a} at t={t}")
        for a in _kinds(name):
            assert convert(p, x, t, value, a, a) is value


def test_velocity_is_refused_on_ddpm():
    p = process("ddpm")
    x = jnp.ones((2, 3))
    for a in ("eps", "x0", "v", "score"):
        with pytest.raises(ValueError, match="continuous"):
            convert(p, x, 10, x, a, "velocity")
        with pytest.raises(ValueError, match="continuous"):
            convert(p, x, 10, x, "velocity", a)


@pytest.mark.parametrize("name", list(PROCESSES))
def test_conversions_are_consistent_with_the_pair(name, key, x64):
    """With `x_t = alpha x_0 + sigma eps` built from a known pair, every kind maps back to that pair."""
    p = process(name)
    k0, k1 = jax.random.split(key)
    x0 = jax.random.normal(k0, (BATCH, 3), jnp.float64)
    eps = jax.random.normal(k1, (BATCH, 3), jnp.float64)
    for t in _time_cases(name):
        x = p.perturb(x0, t, eps)
        for kind in _kinds(name):
            value = from_x0_eps(p, x, t, x0, eps, kind)
            x0_back, eps_back = to_x0_eps(p, x, t, value, kind)
            np.testing.assert_allclose(x0_back, x0, rtol=1e-9, atol=1e-9, err_msg=kind)
            np.testing.assert_allclose(eps_back, eps, rtol=1e-9, atol=1e-9, err_msg=kind)


# ---- closed forms of individual kinds ---------------------------------------------------------------------
def test_flow_velocity_is_eps_minus_x0(key):
    p = process("flow")
    k0, k1 = jax.random.split(key)
    x0, eps = jax.random.normal(k0, (5, 2)), jax.random.normal(k1, (5, 2))
    t = jnp.asarray([0.0, 0.1, 0.5, 0.9, 1.0])
    x = p.perturb(x0, t, eps)
    np.testing.assert_array_equal(from_x0_eps(p, x, t, x0, eps, "velocity"), eps - x0)
    # And through a conversion from x0 at interior times (float32: a few ulps of the O(1) inputs).
    ti = jnp.asarray(0.4)
    xi = p.perturb(x0, ti, eps)
    np.testing.assert_allclose(convert(p, xi, ti, x0, "x0", "velocity"), eps - x0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(convert(p, xi, ti, eps - x0, "velocity", "x0"), x0, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in PROCESSES if not PROCESSES[n].is_discrete])
def test_velocity_is_the_time_derivative_of_the_path(name, key, x64):
    """`velocity = d/dt (alpha(t) x_0 + sigma(t) eps)` at fixed `(x_0, eps)`, by forward-mode autodiff."""
    p = process(name)
    k0, k1 = jax.random.split(key)
    x0 = jax.random.normal(k0, (BATCH, 3), jnp.float64)
    eps = jax.random.normal(k1, (BATCH, 3), jnp.float64)
    t = jnp.asarray(TIMES[name], jnp.float64)
    _, dx_dt = jax.jvp(lambda s: p.perturb(x0, s, eps), (t,), (jnp.ones_like(t),))
    x = p.perturb(x0, t, eps)
    np.testing.assert_allclose(convert(p, x, t, eps, "eps", "velocity"), dx_dt, rtol=1e-9, atol=1e-9)


def test_vp_v_prediction(key, x64):
    p = process("vp")
    k0, k1 = jax.random.split(key)
    x0 = jax.random.normal(k0, (BATCH, 3), jnp.float64)
    eps = jax.random.normal(k1, (BATCH, 3), jnp.float64)
    t = jnp.asarray(TIMES["vp"], jnp.float64)
    a, s = p.alpha(t)[:, None], p.sigma(t)[:, None]
    x = p.perturb(x0, t, eps)
    expected = a * eps - s * x0
    np.testing.assert_allclose(convert(p, x, t, eps, "eps", "v"), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(convert(p, x, t, x0, "x0", "v"), expected, rtol=1e-12, atol=1e-12)
    # On VP (alpha^2 + sigma^2 = 1): x_0 = alpha x_t - sigma v and eps = sigma x_t + alpha v.
    np.testing.assert_allclose(convert(p, x, t, expected, "v", "x0"), a * x - s * expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(convert(p, x, t, expected, "v", "eps"), s * x + a * expected, rtol=1e-12, atol=1e-12)


def test_score_is_minus_eps_over_sigma(key, x64):
    p = process("ve")
    eps = jax.random.normal(key, (BATCH, 3), jnp.float64)
    x = 2.0 * eps
    t = jnp.asarray(TIMES["ve"], jnp.float64)
    np.testing.assert_allclose(convert(p, x, t, eps, "eps", "score"), -eps / p.sigma(t)[:, None], rtol=1e-14)


# ---- against the exact mixture oracle ---------------------------------------------------------------------
@pytest.mark.parametrize("name", list(PROCESSES))
def test_oracle_predictors_agree_under_conversion(name, key, x64):
    """mixture.predictor(p, A) converted to B == mixture.predictor(p, B): exact algebra (measured rel. error 2e-12)."""
    p, data = process(name), _mixture()
    x = 1.5 * jax.random.normal(key, (BATCH, 3), jnp.float64)
    preds = {kind: data.predictor(p, kind) for kind in _kinds(name)}
    for t in _time_cases(name):
        outputs = {kind: pred(x, t) for kind, pred in preds.items()}
        for a, b in itertools.permutations(outputs, 2):
            np.testing.assert_allclose(convert(p, x, t, outputs[a], a, b), outputs[b], rtol=1e-9, atol=1e-9,
                                       err_msg=f"{a}->{b} at t={t}")
            np.testing.assert_allclose(preds[a].predict(p, x, t, b), outputs[b], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", list(PROCESSES))
def test_oracle_score_is_the_gradient_of_the_log_density(name, key, x64):
    p, data = process(name), _mixture()
    x = 1.5 * jax.random.normal(key, (BATCH, 3), jnp.float64)
    score = data.predictor(p, "score")
    for t in _time_cases(name):
        a, s = p.alpha(t), p.sigma(t)
        grad = jax.grad(lambda y, a=a, s=s: data.log_prob(y, a, s).sum())(x)  # rows are independent
        np.testing.assert_allclose(score(x, t), grad, rtol=1e-9, atol=1e-9, err_msg=f"t={t}")


def test_oracle_velocity_on_ddpm_is_refused(x64):
    data = _mixture()
    with pytest.raises(ValueError, match="continuous"):
        data.predictor(process("ddpm"), "velocity")(jnp.ones((2, 3)), 10)


# ---- Predictor ---------------------------------------------------------------------------------------------
def test_predictor_with_and_without_params():
    x, t = jnp.arange(6.0).reshape(2, 3), jnp.asarray([0.2, 0.7])
    with_params = Predictor(lambda prm, x, t: prm["w"] * x + prm["b"] * t[:, None], kind="eps",
                            params={"w": jnp.asarray(2.0), "b": jnp.asarray(-1.0)})
    closure = Predictor(lambda x, t: 2.0 * x - t[:, None], kind="eps")
    np.testing.assert_array_equal(with_params(x, t), closure(x, t))
    p = process("vp")
    np.testing.assert_array_equal(with_params.predict(p, x, t, "x0"), closure.predict(p, x, t, "x0"))
    for a, b in zip(with_params.x0_eps(p, x, t), closure.x0_eps(p, x, t), strict=True):
        np.testing.assert_array_equal(a, b)
    # Conditioning keywords are passed through.
    cond = Predictor(lambda x, t, label: x + label)
    np.testing.assert_array_equal(cond(x, t, label=1.0), x + 1.0)


def test_predictor_is_a_pytree_whose_only_leaves_are_params():
    params = {"w": jnp.ones(3), "b": jnp.zeros(())}
    fn = lambda prm, x, t: prm["w"] * x + prm["b"]  # noqa: E731
    pred = Predictor(fn, kind="x0", params=params)
    leaves = jax.tree_util.tree_leaves(pred)
    assert len(leaves) == 2
    assert all(any(leaf is v for v in params.values()) for leaf in leaves)
    assert jax.tree_util.tree_leaves(Predictor(lambda x, t: x)) == []
    doubled = jax.tree_util.tree_map(lambda v: 2 * v, pred)
    assert doubled.fn is fn and doubled.kind == "x0"
    np.testing.assert_array_equal(doubled.params["w"], 2 * params["w"])

    traces = []

    @jax.jit
    def apply(predictor, x):
        traces.append(None)
        return predictor(x, 0.5)

    x = jnp.ones((2, 3))
    np.testing.assert_array_equal(apply(pred, x), x)
    np.testing.assert_array_equal(apply(doubled, x), 2 * x)  # new weights, same program
    assert len(traces) == 1


def test_invalid_kinds_raise():
    p, x = process("vp"), jnp.ones((2, 3))
    with pytest.raises(ValueError, match="valid choices"):
        Predictor(lambda x, t: x, kind="noise")
    with pytest.raises(ValueError, match="callable"):
        Predictor("not a function")
    for args in (("noise", "eps"), ("eps", "noise"), ("noise", "noise")):
        with pytest.raises(ValueError, match="valid choices: 'eps', 'x0', 'v', 'score', 'velocity'"):
            convert(p, x, 0.5, x, *args)
    with pytest.raises(ValueError, match="prediction kind"):
        to_x0_eps(p, x, 0.5, x, "noise")
    with pytest.raises(ValueError, match="prediction kind"):
        from_x0_eps(p, x, 0.5, x, x, "noise")
    with pytest.raises(ValueError, match="prediction kind"):
        _mixture().predictor(p, "noise")
