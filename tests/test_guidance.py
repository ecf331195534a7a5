"""Guidance, article (九), against the Gaussian-mixture oracle: classes are the mixture's components.

Noise floors (measured, float32):

* Identities (guided eps = class-conditional eps; the CFG formula): float64, rtol 1e-9.
* Laws: sliced-W1 (128 projections) of 4000 guided samples against 4000 draws of class 0, threshold = mean + 4
  std of the null spread over 8 fresh class draws (measured 0.017 +- 0.003, threshold 0.029). Guided samples
  measured 0.020 (DDIM, 100 steps), 0.021 (ancestral eps form, 200), 0.013 (ancestral mean form, 200), 0.015
  (adaptive ODE); against class 1 they are at 2.3, so the power check asks for > 10x the threshold.
* Mean shift vs eps shift: one step from the same x_t and noise; their gap relative to the guidance shift halves
  with the step (measured on VP at t = 0.5, steps 0.04 ... 0.005: 0.21, 0.10, 0.051, 0.026 for sigma = beta and
  0.26, 0.12, 0.061, 0.030 for the posterior sigma, ratios 2.03-2.12), bound 1.8-2.3 per halving.
* Label dropout: binomial, 5 standard errors.
* Classifier loss stationarity: per-example gradient z-scores as in test_objectives, |z| < 4 at the exact
  class posterior (measured max over 6 keys x 2 processes: 3.2), > 8 for the classifier of a wrong mixture
  (measured >= 35).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffjax as dj
from diffjax.guidance import ClassifierGuided, cfg, classifier_guidance, classifier_loss, drop_labels
from diffjax.samplers import _sample
from diffjax.testing import gaussian_mixture, sliced_wasserstein, sliced_wasserstein_null

MEANS = np.array([[-2.0, -1.0], [0.0, 2.0], [2.0, -0.5]])
STDS = np.array([[0.3, 0.6], [0.5, 0.25], [0.4, 0.4]])
MIXTURE = gaussian_mixture([0.2, 0.3, 0.5], MEANS, STDS)
WRONG = gaussian_mixture([0.4, 0.3, 0.3], MEANS + 0.3, STDS)  # a plausible but wrong class posterior
NULL = 3  # the "no class" label: K
N_LAW = 4000
PROJECTIONS = 128


def _guided(process, scale=1.0, kind="eps"):
    return classifier_guidance(MIXTURE.predictor(process, kind), process, MIXTURE.classifier(process), scale=scale)


def _points(n=48, dtype=jnp.float64):
    x = 2.0 * jax.random.normal(jax.random.key(0), (n, 2), dtype)
    labels = jnp.arange(n) % 3
    return x, labels


# ---- classifier guidance: identities --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "process_name, times, kind",
    [("ddpm", [1, 30, 300, 999], "eps"), ("vp", [0.01, 0.2, 0.6, 1.0], "x0"), ("ve", [0.05, 0.3, 0.7, 1.0], "score")],
)
def test_exact_classifier_guidance_is_the_class_conditional_eps(process_name, times, kind, x64):
    """eps* - sigma grad log p(y|x_t) = -sigma grad log p_t(x_t|y), pointwise, for any base kind."""
    process = dj.process(process_name)
    x, labels = _points()
    t = jnp.tile(jnp.asarray(times), x.shape[0] // len(times))

    @jax.jit
    def predictions(x, t, labels):
        per_class = [MIXTURE.component(k).predictor(process)(x, t) for k in range(3)]
        return (
            _guided(process, kind=kind)(x, t, y=labels),
            MIXTURE.conditional_predictor(process)(x, t, y=labels),
            jnp.stack(per_class),
            MIXTURE.predictor(process)(x, t),
        )

    guided, conditional, per_class, unconditional = predictions(x, t, labels)
    np.testing.assert_allclose(guided, conditional, rtol=1e-9, atol=1e-12)
    # The oracle's per-row classes are the restricted mixtures.
    np.testing.assert_allclose(conditional, per_class[labels, jnp.arange(x.shape[0])], rtol=1e-9, atol=1e-12)
    assert float(jnp.abs(guided - unconditional).max()) > 0.1


def test_scale_multiplies_the_classifier_term(x64):
    process = dj.process("ddpm")
    x, labels = _points()
    t = jnp.full((x.shape[0],), 200)
    base, one, three = jax.jit(
        lambda x: (
            MIXTURE.predictor(process)(x, t),
            _guided(process, 1.0)(x, t, y=labels),
            _guided(process, 3.0)(x, t, y=labels),
        )
    )(x)
    np.testing.assert_allclose(three - base, 3.0 * (one - base), rtol=1e-9, atol=1e-12)


def test_model_takes_label_and_clean_classifier_input(x64):
    """With `model_takes_label` the model gets the labels (scale 0 gives it back); `x0_hat` feeds the classifier
    the model's x̂_0, so the gradient flows through the model and differs from the noisy classifier's."""
    process = dj.process("ddpm")
    x, labels = _points()
    t = jnp.full((x.shape[0],), 300)
    conditional = MIXTURE.conditional_predictor(process)
    zero = classifier_guidance(conditional, process, MIXTURE.classifier(process), scale=0.0, model_takes_label=True)
    np.testing.assert_array_equal(zero(x, t, y=labels), conditional(x, t, y=labels))

    def clean_logits(params, x0, t):
        return MIXTURE.class_logits(x0, 1.0, 0.05)

    clean = classifier_guidance(MIXTURE.predictor(process), process, clean_logits, classifier_input="x0_hat")
    out = clean(x, t, y=labels)
    assert bool(jnp.all(jnp.isfinite(out)))
    assert float(jnp.abs(out - _guided(process)(x, t, y=labels)).max()) > 1e-3


# ---- classifier guidance: laws ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def class_law():
    """Class 0 (weight 0.2): a reference draw, the null threshold, and another class's draw for power."""
    component = MIXTURE.component(0)
    reference = component.sample(jax.random.key(100), N_LAW)
    draw = jax.jit(lambda k: component.sample(k, N_LAW))
    threshold = sliced_wasserstein_null(jax.random.key(7), draw, reference, num_projections=PROJECTIONS)[0]
    return reference, threshold, MIXTURE.component(1).sample(jax.random.key(101), N_LAW)


@pytest.mark.parametrize(
    "sampler_name, knobs",
    [
        ("ddim", {"steps": 100}),
        ("ancestral", {"steps": 200, "variance": "posterior"}),
        ("ancestral", {"steps": 200, "guidance": "mean"}),
    ],
)
def test_guided_sampling_reproduces_the_class(sampler_name, knobs, class_law):
    """Exact guidance turns the unconditional model into the class-0 sampler (eps form: any sampler; mean form:
    ancestral, first-order accurate, so with small steps)."""
    reference, threshold, other = class_law
    process = dj.process("ddpm")
    labels = jnp.zeros((N_LAW,), jnp.int32)
    x = dj.sample(
        jax.random.key(3), _guided(process), process, dj.sampler(sampler_name, **knobs), (N_LAW, 2), cond={"y": labels}
    )
    distance = float(sliced_wasserstein(jax.random.key(7), x, reference, PROJECTIONS))
    assert distance < threshold, (distance, threshold)
    assert float(sliced_wasserstein(jax.random.key(7), x, other, PROJECTIONS)) > 10 * threshold


def test_guided_probability_flow_ode_reproduces_the_class(class_law):
    """The eps form needs nothing from the sampler: the adaptive probability-flow ODE (diffrax) on VP."""
    if "ode" not in dj.SAMPLERS:
        pytest.skip("no 'ode' sampler in this build")
    reference, threshold, other = class_law
    process = dj.process("vp")
    labels = jnp.zeros((N_LAW,), jnp.int32)
    x = dj.sample(jax.random.key(3), _guided(process), process, dj.sampler("ode"), (N_LAW, 2), cond={"y": labels})
    assert float(sliced_wasserstein(jax.random.key(7), x, reference, PROJECTIONS)) < threshold


def test_new_scale_does_not_recompile():
    process = dj.process("ddpm", num_steps=20)
    sampler = dj.sampler("ddim", steps=5)
    labels = jnp.zeros((8,), jnp.int32)
    dj.sample(jax.random.key(0), _guided(process, 1.0), process, sampler, (8, 2), cond={"y": labels})
    size = _sample._cache_size()
    dj.sample(jax.random.key(0), _guided(process, 2.5), process, sampler, (8, 2), cond={"y": labels})
    assert _sample._cache_size() == size


# ---- mean shift vs eps shift ----------------------------------------------------------------------------------
@pytest.mark.parametrize("variance", ["beta", "posterior"])
def test_mean_shift_equals_eps_shift_to_first_order(variance, x64):
    """(九): `mu + sigma_ts^2 grad log p(y|x_t)` and the mean from eps~ differ by O(step) relative to the shift."""
    process = dj.process("vp")
    guided = _guided(process, 2.0)
    sampler = dj.sampler("ancestral", variance=variance)
    x, labels = _points(n=256)
    t = 0.5

    @jax.jit
    def relative_gap(step):
        t_batch = jnp.full((x.shape[0],), t)
        x0_plain, eps_plain = guided.unguided_x0_eps(process, x, t_batch, y=labels)
        x0_guided, eps_guided = guided.x0_eps(process, x, t_batch, y=labels)
        grad = guided.scaled_log_prob_grad(x, t_batch, y=labels)
        coefs = (process.alpha(t), process.sigma(t), process.alpha(t - step), process.sigma(t - step))
        key = jax.random.key(1)  # the same noise in all three steps
        plain = sampler.update(key, 0, x, x0_plain, eps_plain, *coefs)
        mean_form = sampler.update(key, 0, x, x0_plain, eps_plain, *coefs, log_prob_grad=grad)
        eps_form = sampler.update(key, 0, x, x0_guided, eps_guided, *coefs)
        return jnp.linalg.norm(mean_form - eps_form) / jnp.linalg.norm(mean_form - plain)

    gaps = [float(relative_gap(step)) for step in (0.04, 0.02, 0.01, 0.005)]
    ratios = np.array(gaps[:-1]) / np.array(gaps[1:])
    assert np.all((ratios > 1.8) & (ratios < 2.3)), (gaps, ratios)
    assert gaps[-1] < 0.05, gaps


# ---- classifier-free guidance ---------------------------------------------------------------------------------
def test_cfg_with_zero_weight_is_the_conditional_model():
    process = dj.process("ddpm")
    x, labels = _points(dtype=jnp.float32)
    t = jnp.full((x.shape[0],), 250)
    conditional = MIXTURE.conditional_predictor(process, null_label=NULL)
    both = jax.jit(lambda x, t, y: (cfg(conditional, 0.0, NULL)(x, t, y=y), conditional(x, t, y=y)))
    guided, plain = both(x, t, labels)
    np.testing.assert_allclose(guided, plain, rtol=0, atol=1e-7)
    # ... also through a sampler (DDIM, 10 steps): the same samples.
    shape, cond = (64, 2), {"y": jnp.arange(64) % 3}
    sampler = dj.sampler("ddim", steps=10, eta=0.5)
    guided = dj.sample(jax.random.key(2), cfg(conditional, 0.0, NULL), process, sampler, shape, cond=cond)
    plain = dj.sample(jax.random.key(2), conditional, process, sampler, shape, cond=cond)
    np.testing.assert_allclose(guided, plain, rtol=0, atol=1e-5)


@pytest.mark.parametrize("w", [0.5, 2.0])
@pytest.mark.parametrize("kind", ["eps", "x0"])
def test_cfg_is_the_score_of_the_tilted_law(w, kind, x64):
    """With exact models, `eps~ = -sigma grad log[p_t(x)^(-w) p_t(x|y)^(1+w)]` (and the same affine mix for x0)."""
    process = dj.process("vp")
    x, labels = _points()
    t = jnp.tile(jnp.asarray([0.05, 0.3, 0.8]), x.shape[0] // 3)
    a, s = process.alpha(t), process.sigma(t)

    def tilted_log_density(x):
        log_marginal = MIXTURE.log_prob(x, a, s)
        log_joint = jnp.take_along_axis(MIXTURE.class_logits(x, a, s), labels[:, None], axis=-1)[:, 0]
        log_class = log_joint - jnp.log(MIXTURE.weights)[labels]  # log p_t(x|y)
        return (-w * log_marginal + (1 + w) * log_class).sum()

    guided = cfg(MIXTURE.conditional_predictor(process, kind, null_label=NULL), w, NULL)
    eps, got = jax.jit(
        lambda x: (-s[:, None] * jax.grad(tilted_log_density)(x), guided.predict(process, x, t, "eps", y=labels))
    )(x)
    np.testing.assert_allclose(got, eps, rtol=1e-9, atol=1e-11)


def test_drop_labels():
    labels = jnp.arange(200_000) % 10
    p = 0.1
    dropped = drop_labels(jax.random.key(0), labels, p, 10)
    rate = float((dropped == 10).mean())
    assert abs(rate - p) < 5 * np.sqrt(p * (1 - p) / labels.size), rate
    kept = dropped != 10
    np.testing.assert_array_equal(dropped[kept], labels[kept])
    np.testing.assert_array_equal(drop_labels(jax.random.key(0), labels, p, 10), dropped)  # pure in the key
    assert not np.array_equal(drop_labels(jax.random.key(1), labels, p, 10), dropped)
    np.testing.assert_array_equal(drop_labels(jax.random.key(0), labels, 0.0, 10), labels)
    np.testing.assert_array_equal(drop_labels(jax.random.key(0), labels, 1.0, 10), 10)


# ---- the classifier's objective -------------------------------------------------------------------------------
@pytest.mark.parametrize("process_name", ["ddpm", "vp"])
def test_exact_class_posterior_is_stationary_for_the_classifier_loss(process_name):
    process = dj.process(process_name)
    loss = classifier_loss(process)
    batch = 8192
    x0, labels = MIXTURE.sample(jax.random.key(1), batch, return_components=True)

    def apply(params, x, t):  # per-example logit offsets and temperature on top of an oracle classifier
        data, p = params
        logits = data.class_logits(x, process.alpha(t), process.sigma(t))
        return (1 + p[:, :1]) * logits + p[:, 1:]

    grad = jax.jit(jax.grad(lambda p, data: loss(jax.random.key(2), apply, (data, p), x0, labels)))

    def z_scores(data):
        contrib = np.asarray(grad(jnp.zeros((batch, 4)), data), np.float64) * batch
        return contrib.mean(0) / (contrib.std(0, ddof=1) / np.sqrt(batch))

    assert np.max(np.abs(z_scores(MIXTURE))) < 4.0
    assert np.max(np.abs(z_scores(WRONG))) > 8.0


# ---- errors ---------------------------------------------------------------------------------------------------
def test_invalid_use_raises():
    process = dj.process("ddpm", num_steps=10)
    model = MIXTURE.predictor(process)
    before = _sample._cache_size()
    with pytest.raises(ValueError, match="classifier_guidance"):
        dj.sample(jax.random.key(0), model, process, dj.sampler("ancestral", guidance="mean"), (2, 2))
    with pytest.raises(ValueError, match="guidance='mean' works with"):
        dj.sample(
            jax.random.key(0),
            _guided(process),
            process,
            dj.sampler("ancestral", guidance="mean", variance="analytic"),
            (2, 2),
        )
    assert _sample._cache_size() == before
    with pytest.raises(ValueError, match="cond\\['y'\\]"):
        _guided(process)(jnp.zeros((2, 2)), jnp.ones((2,), jnp.int32))
    with pytest.raises(ValueError, match="cond\\['y'\\]"):
        cfg(MIXTURE.conditional_predictor(process), 1.0, NULL)(jnp.zeros((2, 2)), jnp.ones((2,), jnp.int32))
    with pytest.raises(ValueError, match="valid choices"):
        classifier_guidance(model, process, MIXTURE.classifier(process), classifier_input="x0")
    assert isinstance(_guided(process), ClassifierGuided)
