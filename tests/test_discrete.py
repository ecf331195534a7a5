"""Discrete diffusion, articles (十) and (十一) items 3-4: token masking, the edit process, their samplers, losses,
the exact discrete oracle, the Transformer denoiser and binarised digits.

Laws are checked two ways: exactly, by propagating the sampler's step law over every state of a small joint
(L = 3 tokens, V = 4; x64), and by sampling the jitted sampler and comparing counts with Pearson's statistic
against its null distribution simulated from multinomial draws of the target law.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import diffjax as dj
from diffjax.data import DATASETS, load_dataset
from diffjax.discrete import (
    OBJECTIVES,
    PROCESSES,
    SAMPLERS,
    Edit,
    EditCE,
    EditReverse,
    MaskedCE,
    TokenMask,
    Unmask,
    token_cross_entropy,
)
from diffjax.models import MODELS, Transformer, build_model
from diffjax.samplers import _sample
from diffjax.testing._discrete import product_joint, random_joint

L, V = 3, 4
N = 40_000  # samples per law comparison
NULL_QUANTILE = 0.999  # the false-rejection rate of one law comparison under a correct sampler


def _key(seed: int):
    """A fixed `rbg` key: threefry's bit generator takes XLA:CPU seconds to compile in every sampler."""
    return jax.random.key(seed, impl="rbg")


@pytest.fixture(scope="module")
def joint():
    """A random full joint table over 4^3 sequences: Dirichlet(1), so the three tokens are strongly dependent."""
    return random_joint(seed=0, seq_len=L, vocab_size=V)


def _law(joint, x) -> np.ndarray:
    return np.bincount(np.asarray(joint.index(x)), minlength=joint.num_states)


def _pearson(counts, p) -> float:
    n = counts.sum()
    expected = n * p
    if np.any(counts[expected == 0] > 0):
        return math.inf
    keep = expected > 0
    return float(((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum())


def _pearson_threshold(p, n=N, reps=2000, seed=0) -> float:
    """The NULL_QUANTILE quantile of Pearson's statistic for `n` exact draws of `p`, by simulation.

    Simulated rather than read off the chi-square law because some of the 64 cells expect only a few counts.
    """
    p = np.asarray(p, dtype=np.float64)
    p = p / p.sum()
    rng = np.random.default_rng(seed)
    null = [_pearson(rng.multinomial(n, p), p) for _ in range(reps)]
    return float(np.quantile(null, NULL_QUANTILE))


# ---- the exact step laws, enumerated -----------------------------------------------------------------------
def _unmask_law(joint, mask):
    """The output law of `unmask` (k = 1, random order) with the oracle's conditionals, by enumeration.

    States are all (V+1)^L partially masked sequences; one step moves a state with m masks to each
    (masked position i, token v) with probability `p(x0_i = v | visible) / m`.
    """
    states = np.array(list(itertools.product(range(V + 1), repeat=L)), dtype=np.int32)
    index = {tuple(s): k for k, s in enumerate(states)}
    cond = np.asarray(joint.mask_conditionals(jnp.asarray(np.where(states == V, mask, states)), mask))
    law = np.zeros(len(states))
    law[index[(V,) * L]] = 1.0
    for _ in range(L):
        new = np.zeros_like(law)
        for k, s in enumerate(states):
            masked = np.flatnonzero(s == V)
            if law[k] == 0 or not masked.size:
                new[k] += law[k]
                continue
            for i in masked:
                for v in range(V):
                    target = s.copy()
                    target[i] = v
                    new[index[tuple(target)]] += law[k] * cond[k, i, v] / masked.size
        law = new
    clean = [index[tuple(s)] for s in np.asarray(joint.states())]
    return law[clean], 1.0 - law[clean].sum()


def _edit_step_matrix(joint, sampler, process, t):
    """The 64 x 64 transition matrix of one deterministic `edit` step at time t, from `sampler.move_probs`."""
    states = joint.states()
    logits = joint.predictor(process).fn(states, jnp.full((states.shape[0],), t))
    probs = np.asarray(sampler.move_probs(logits, states, jnp.full((states.shape[0],), t)))
    states = np.asarray(states)
    place = V ** np.arange(L - 1, -1, -1)
    matrix = np.zeros((len(states), len(states)))
    for k, s in enumerate(states):
        for i in range(L):
            for v in range(V):
                matrix[k, (s * place).sum() + (v - s[i]) * place[i]] += probs[k, i, v]
    return matrix


def _edit_kernel(joint, t):
    """`p(x_t | x_0)` of the edit process as a matrix `[x_0, x_t]`."""
    hamming = (np.asarray(joint.states())[:, None, :] != np.asarray(joint.states())[None]).sum(-1)
    return np.where(hamming == t, 1.0 / (math.comb(L, t) * (V - 1) ** t), 0.0)


def _baseline_step_matrix(joint, process, t):
    """One `baseline` step: `x̂_0` independent per position from the oracle's marginals, then `F_{t-1}(x̂_0)`."""
    states = np.asarray(joint.states())
    marg = np.asarray(joint.edit_posterior(jnp.asarray(states), t))  # (S x_t, L, V)
    x0_law = np.prod(marg[:, np.arange(L)[None], states], axis=-1)  # (S x_t, S x̂_0)
    return x0_law @ _edit_kernel(joint, t - 1)


def test_unmask_with_exact_conditionals_reproduces_the_joint_exactly(x64):
    """Article (十一) item 4: the law of the unmask rule (k = 1, random order) with the oracle's conditionals,
    enumerated, is the joint: any-order autoregressive sampling is exact. The next tests sample the jitted
    sampler itself against the same law."""
    joint = random_joint(seed=0, seq_len=L, vocab_size=V)
    law, leftover = _unmask_law(joint, TokenMask(L, V).mask_token)
    assert leftover < 1e-12  # every path ends fully unmasked after L steps
    np.testing.assert_allclose(law, np.asarray(joint.probs), rtol=0, atol=1e-13)


def test_edit_reverse_with_exact_posterior_keeps_every_marginal(x64):
    """Article (十一) item 3: from x_T ~ p(x_T), every step of Su's reverse maps p(x_t) to p(x_{t-1}) exactly,
    so the sampler returns the data law; the baseline re-corruption and the greedy edit set do not."""
    joint = random_joint(seed=0, seq_len=L, vocab_size=V)
    process = Edit(L, V)
    exact, greedy, baseline = (np.asarray(joint.edit_marginal(L)),) * 3
    for t in range(L, 0, -1):
        exact = exact @ _edit_step_matrix(joint, EditReverse(), process, t)
        greedy = greedy @ _edit_step_matrix(joint, EditReverse(select="greedy"), process, t)
        baseline = baseline @ _baseline_step_matrix(joint, process, t)
        target = np.asarray(joint.edit_marginal(t - 1)) if t > 1 else np.asarray(joint.probs)
        np.testing.assert_allclose(exact, target, rtol=0, atol=1e-13)
    np.testing.assert_allclose(np.asarray(joint.edit_marginal(0)), np.asarray(joint.probs), atol=1e-15)
    for law in (greedy, baseline):
        assert abs(law.sum() - 1.0) < 1e-12 and law.min() >= 0.0
    # Measured: TV 0.191 (baseline) and 0.231 (greedy) from the data law; the exact reverse is off by 1e-17.
    assert 0.5 * np.abs(baseline - np.asarray(joint.probs)).sum() > 0.1
    assert 0.5 * np.abs(greedy - np.asarray(joint.probs)).sum() > 0.1


# ---- the jitted samplers, sampled ------------------------------------------------------------------------
def _sampled(joint, process, sampler, key=3, x_init=None):
    x, info = dj.sample(_key(key), joint.predictor(process), process, sampler, (N, L), x_init=x_init, return_info=True)
    return _law(joint, x), int(info["nfe"])


@pytest.fixture(scope="module")
def edit_start(joint):
    """`N` draws of `x_T ~ p(x_T)`: data corrupted at t = T (Su's uniform prior only approximates it)."""
    return jax.jit(lambda key: Edit(L, V).forward(key, joint.sample(jax.random.fold_in(key, 1), N), L))(_key(4))


def test_unmask_sampler_draws_the_joint(joint):
    counts, nfe = _sampled(joint, TokenMask(L, V), Unmask())
    stat, threshold = _pearson(counts, np.asarray(joint.probs)), _pearson_threshold(joint.probs)
    assert stat < threshold, f"Pearson {stat:.1f} above the null {NULL_QUANTILE} quantile {threshold:.1f}"
    assert nfe == L


def test_edit_sampler_draws_the_joint(joint, edit_start):
    process = Edit(L, V)
    counts, nfe = _sampled(joint, process, EditReverse(), x_init=edit_start)
    stat, threshold = _pearson(counts, np.asarray(joint.probs)), _pearson_threshold(joint.probs)
    assert stat < threshold, f"Pearson {stat:.1f} above the null {NULL_QUANTILE} quantile {threshold:.1f}"
    assert nfe == L


def test_edit_baseline_sampler_draws_its_enumerated_law(joint, edit_start):
    """The sampled baseline matches its own enumerated law, and is far from the data law."""
    process = Edit(L, V)
    with jax.enable_x64(True):
        exact_joint = random_joint(seed=0, seq_len=L, vocab_size=V)
        law = np.asarray(exact_joint.edit_marginal(L))
        for t in range(L, 0, -1):
            law = law @ _baseline_step_matrix(exact_joint, process, t)
    counts, _ = _sampled(joint, process, EditReverse(reverse="baseline"), x_init=edit_start)
    stat, threshold = _pearson(counts, law), _pearson_threshold(law)
    assert stat < threshold, f"Pearson {stat:.1f} above the null {NULL_QUANTILE} quantile {threshold:.1f}"
    assert _pearson(counts, np.asarray(joint.probs)) > 10 * threshold


def test_law_comparison_has_power(joint):
    """Unmasking all L tokens at once draws the product of the marginals: the same test rejects it."""
    counts, nfe = _sampled(joint, TokenMask(L, V), Unmask(unmask_per_step=L))
    assert nfe == 1
    assert _pearson(counts, np.asarray(joint.probs)) > 10 * _pearson_threshold(joint.probs)


def test_parallel_unmasking_is_exact_for_independent_tokens():
    """k = 2 (ceil(3/2) = 2 steps): exact when the tokens are independent."""
    joint = product_joint([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.4, 0.1]])
    counts, nfe = _sampled(joint, TokenMask(L, V), Unmask(unmask_per_step=2, temperature=1.0))
    assert nfe == 2
    assert _pearson(counts, np.asarray(joint.probs)) < _pearson_threshold(joint.probs)


def test_confidence_order_unmasks_the_most_confident_positions():
    process = TokenMask(4, 3)
    x = jnp.array([[3, 3, 3, 3], [0, 3, 3, 3]])
    logits = jnp.log(jnp.array([[0.34, 0.33, 0.33], [0.6, 0.2, 0.2], [0.02, 0.96, 0.02], [0.1, 0.1, 0.8]]))
    logits = jnp.broadcast_to(logits, (2, 4, 3))
    for k, changed in ((1, [2]), (2, [2, 3])):
        sampler = Unmask(unmask_per_step=k, order="confidence", temperature=0.01)
        out = np.asarray(jax.jit(sampler.update, static_argnums=3)(_key(0), logits, x, process))
        for row in range(2):
            now_unmasked = set(np.flatnonzero((np.asarray(x[row]) == 3) & (out[row] != 3)))
            assert now_unmasked == set(changed)
        assert out[0, 2] == 1 and out[1, 0] == 0  # the confident token; visible tokens are kept
    # Random order on the same logits picks positions uniformly (the first row's first step).
    picks = jax.jit(jax.vmap(lambda k: Unmask().update(k, logits[:1], x[:1], process)))(jax.random.split(_key(1), 4000))
    freq = np.asarray(picks[:, 0] != 3).mean(0)
    np.testing.assert_allclose(freq, 0.25, atol=5 * math.sqrt(0.25 * 0.75 / 4000))


def test_infilling_keeps_visible_tokens_and_samples_compile_once(joint):
    process = TokenMask(L, V)
    x_init = jnp.array([[0, V, V], [V, 2, V]] * 8, dtype=jnp.int32)
    out = dj.sample(_key(0), joint.predictor(process), process, Unmask(), x_init.shape, x_init=x_init)
    assert np.all(np.asarray(out[0::2, 0]) == 0) and np.all(np.asarray(out[1::2, 1]) == 2)
    assert np.all((np.asarray(out) >= 0) & (np.asarray(out) < V))
    size = _sample._cache_size()
    dj.sample(_key(1), joint.predictor(process), process, Unmask(), x_init.shape, x_init=x_init)
    assert _sample._cache_size() == size


# ---- forward processes ---------------------------------------------------------------------------------------
def _subset_codes(changed):
    return (np.asarray(changed) * (2 ** np.arange(changed.shape[1]))).sum(-1)


@pytest.mark.parametrize("t", [2, 3])
def test_token_mask_masks_exactly_t_uniform_positions(t):
    process = TokenMask(5, 7)
    x0 = jax.random.randint(_key(0), (20_000, 5), 0, 7)
    x_t = np.asarray(jax.jit(process.forward)(_key(1), x0, t))
    masked = x_t == process.mask_token
    assert np.all(masked.sum(-1) == t)
    np.testing.assert_array_equal(x_t[~masked], np.asarray(x0)[~masked])
    codes = np.unique(_subset_codes(masked), return_counts=True)[1]
    assert len(codes) == math.comb(5, t)
    assert scipy.stats.chisquare(codes).pvalue > 1e-3  # every t-subset equally likely


@pytest.mark.parametrize("t", [1, 3])
def test_edit_changes_exactly_t_positions_to_uniform_other_tokens(t):
    process = Edit(5, 4)
    x0 = jax.random.randint(_key(0), (20_000, 5), 0, 4)
    noise, x_t = jax.jit(lambda key: (process.sample_noise(key, x0.shape), process.forward(key, x0, t)))(_key(1))
    changed = np.asarray(process.edit_set(x0, x_t))
    assert np.all(changed.sum(-1) == t)
    np.testing.assert_array_equal(changed, np.asarray(process.corrupted(t, noise)))  # F_t is invertible
    codes = np.unique(_subset_codes(changed), return_counts=True)[1]
    assert len(codes) == math.comb(5, t) and scipy.stats.chisquare(codes).pvalue > 1e-3
    offsets = (np.asarray(x_t) - np.asarray(x0))[changed] % 4
    assert scipy.stats.chisquare(np.bincount(offsets, minlength=4)[1:]).pvalue > 1e-3
    np.testing.assert_array_equal(process.corrupt(x0, t, noise), x_t)  # forward = corrupt(sample_noise(key))


def test_per_example_times_and_priors():
    process = TokenMask(6, 3)
    counts = jax.jit(lambda key: process.num_masked(process.forward(key, jnp.zeros((6, 6), jnp.int32), jnp.arange(6))))(
        _key(0)
    )
    np.testing.assert_array_equal(counts, np.arange(6))
    np.testing.assert_array_equal(process.prior_sample(_key(0), (2, 6)), 3)
    prior = np.asarray(Edit(6, 3).prior_sample(_key(0), (500, 6)))
    assert prior.dtype == np.int32 and set(np.unique(prior)) == {0, 1, 2}
    assert process.num_steps == process.t_max == 6 and process.is_discrete and process.input_vocab_size == 4


# ---- losses ----------------------------------------------------------------------------------------------------
def _toy_apply(params, x, t, cond=None):
    """Logits that depend on the tokens, the position and the time, for the hand computation."""
    emb = params["emb"][x]  # (B, L, V)
    return emb + params["pos"][None] + 0.1 * t[:, None, None].astype(jnp.float32)


@pytest.mark.parametrize("loss_cls, process", [(MaskedCE, TokenMask(4, 3)), (EditCE, Edit(4, 3))])
def test_loss_equals_the_hand_computed_cross_entropy(loss_cls, process):
    rng = np.random.default_rng(0)
    params = {
        "emb": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
        "pos": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
    }
    x0 = jnp.array([[0, 1, 2, 1], [2, 2, 0, 1]], jnp.int32)
    loss, key = loss_cls(process), _key(7)
    t, x_t, scored = (np.asarray(a) for a in jax.jit(loss.corrupt_batch)(key, x0))
    assert np.all((t >= 1) & (t <= 4)) and np.all(scored.sum(-1) == (t if loss.positions == "corrupted" else 4))
    if isinstance(process, TokenMask):
        np.testing.assert_array_equal(scored, x_t == process.mask_token)
    logits = np.asarray(params["emb"])[x_t] + np.asarray(params["pos"])[None] + 0.1 * t[:, None, None]
    hand = []
    for b in range(2):
        terms = [np.log(np.exp(logits[b, i]).sum()) - logits[b, i, x0[b, i]] for i in range(4) if scored[b, i]]
        hand.append(np.mean(terms))
    value = jax.jit(loss, static_argnums=1)(key, _toy_apply, params, x0)
    np.testing.assert_allclose(float(value), np.mean(hand), rtol=1e-6)


def test_masked_ce_of_the_exact_conditionals_is_the_entropy(joint):
    """L * E[masked_ce] is the any-order autoregressive bound on -log p(x_0): equal to H(p) for the oracle."""
    process = TokenMask(L, V)
    oracle = joint.predictor(process)
    loss = MaskedCE(process)

    @jax.jit
    def draw(key):
        x0 = joint.sample(key, 50_000)
        key = jax.random.fold_in(key, 1)
        t, x_t, scored = loss.corrupt_batch(key, x0)
        return loss(key, lambda params, x, t: oracle(x, t), None, x0), token_cross_entropy(oracle(x_t, t), x0, scored)

    value, per_example = draw(_key(0))
    value, per_example = float(value), np.asarray(per_example)
    stderr = L * per_example.std() / math.sqrt(len(per_example))
    entropy = -float(jnp.sum(joint.probs * jnp.log(joint.probs)))
    assert abs(L * value - entropy) < 5 * stderr, (L * value, entropy, stderr)  # measured stderr ~0.006 nats
    assert abs(value - per_example.mean()) < 1e-5


# ---- the Transformer -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def transformer():
    model = Transformer(vocab_size=3, num_layers=1, num_heads=2, width=16, num_classes=2, dropout=0.1)
    x = jnp.zeros((2, 5), jnp.int32)
    variables = jax.jit(model.init)(_key(0), x, jnp.zeros(2, jnp.int32), jnp.zeros(2, jnp.int32))
    return model, variables


def test_transformer_shapes_masking_and_class_conditioning(transformer):
    model, variables = transformer
    x = jnp.array([[0, 1, 2, 0, 1], [2, 2, 1, 0, 0]], jnp.int32)
    t, labels = jnp.array([0, 0], jnp.int32), jnp.array([0, 1])

    @jax.jit
    def outputs(variables):
        def apply(x, t, cond, **kw):
            return model.apply(variables, x, t, cond, **kw)

        return {
            "out": apply(x, t, labels),
            "masked": apply(x.at[:, 4].set(3), t, labels),  # [MASK] = vocab_size
            "other_class": apply(x, t, labels[::-1]),
            "null": apply(x, t, jnp.array([2, 2])),
            "none": apply(x, t, None),
            "later": apply(x, t + 3, labels),
            "train": apply(x, t, labels, train=True, rngs={"dropout": _key(1)}),
        }

    out = outputs(variables)
    assert out["out"].shape == (2, 5, 3) and bool(jnp.all(jnp.isfinite(out["out"])))
    # Bidirectional: masking the last token changes the logits at every other position.
    assert float(jnp.abs(out["masked"][:, :4] - out["out"][:, :4]).max(-1).min()) > 0
    np.testing.assert_allclose(out["none"], out["null"], rtol=1e-6)  # cond=None is the null label
    for name in ("other_class", "later", "train"):  # labels, time and (training-only) dropout reach the output
        assert float(jnp.abs(out[name] - out["out"]).max()) > 1e-4, name


def test_loss_gradient_flows_through_the_transformer(transformer):
    model, variables = transformer
    x0 = jax.random.randint(_key(2), (8, 5), 0, 3)
    labels = jnp.arange(8, dtype=jnp.int32) % 3  # label 2 is the null class

    def apply_fn(p, x, t, cond=None):
        return model.apply({"params": p}, x, t, cond)

    loss = MaskedCE(TokenMask(5, 3))
    value, grads = jax.jit(jax.value_and_grad(lambda p: loss(_key(1), apply_fn, p, x0, labels)))(variables["params"])
    assert np.isfinite(float(value)) and float(value) > 0
    norms = {
        jax.tree_util.keystr(path): float(jnp.linalg.norm(g)) for path, g in jax.tree_util.tree_leaves_with_path(grads)
    }
    assert all(np.isfinite(v) and v > 0 for v in norms.values()), norms  # every weight gets a gradient


def test_transformer_is_registered_and_checks_its_input():
    assert MODELS["transformer"] is Transformer
    model = build_model("transformer", vocab_size=2, num_layers=1, num_heads=2, width=8)
    with pytest.raises(ValueError, match="integer tokens of shape"):
        model.init(_key(0), jnp.zeros((2, 4)), jnp.zeros(2))
    with pytest.raises(ValueError, match="must divide width"):
        Transformer(num_heads=3, width=16)


# ---- binarised digits ------------------------------------------------------------------------------------------
def test_binary_digits_dataset():
    from sklearn.datasets import load_digits

    assert "binary_digits" in DATASETS
    ds = load_dataset("binary_digits")
    assert ds.data_shape == (64,) and ds.vocab_size == 2 and ds.num_classes == 10 and ds.size == 1500
    assert load_dataset("binary_digits", split="test").size == 297
    batch = ds.batch(3, 32, seed=1)
    assert batch["x"].dtype == np.int32 and batch["x"].shape == (32, 64) and batch["label"].shape == (32,)
    assert set(np.unique(ds.arrays()["x"])) == {0, 1}
    np.testing.assert_array_equal(ds.batch(3, 32, seed=1)["x"], batch["x"])  # pure in (seed, step)
    assert not np.array_equal(ds.batch(4, 32, seed=1)["x"], batch["x"])
    raw = load_digits()
    np.testing.assert_array_equal(ds.arrays()["x"][:5], (raw.images[:5].reshape(5, 64) >= 8).astype(np.int32))
    ref = ds.sample_reference(0, 10)
    assert ref.dtype == np.int32 and ref.shape == (10, 64)
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("binary_digits", image_size=16)


# ---- errors ----------------------------------------------------------------------------------------------------
def test_tables():
    assert PROCESSES == {"token_mask": TokenMask, "edit": Edit}
    assert OBJECTIVES == {"masked_ce": MaskedCE, "edit_ce": EditCE}
    assert SAMPLERS == {"unmask": Unmask, "edit": EditReverse}


def test_bad_knobs_and_inputs_raise_one_clear_line(joint):
    mask, edit = TokenMask(L, V), Edit(L, V)
    oracle = joint.predictor(mask)
    before = _sample._cache_size()
    cases = [
        (lambda: dj.sample(_key(0), oracle, mask, Unmask(unmask_per_step=0), (2, L)), "unmask_per_step >= 1"),
        (lambda: dj.sample(_key(0), oracle, mask, Unmask(order="left"), (2, L)), "valid choices: 'random'"),
        (lambda: dj.sample(_key(0), oracle, mask, Unmask(temperature=0.0), (2, L)), "temperature > 0"),
        (lambda: dj.sample(_key(0), oracle, edit, Unmask(), (2, L)), "needs the 'token_mask' process"),
        (lambda: dj.sample(_key(0), oracle, mask, EditReverse(), (2, L)), "needs the 'edit' process"),
        (lambda: dj.sample(_key(0), dj.Predictor(oracle.fn, kind="eps"), mask, Unmask(), (2, L)), "kind='x0'"),
        (lambda: dj.sample(_key(0), oracle, edit, EditReverse(reverse="fresh"), (2, L)), "valid choices"),
        (lambda: TokenMask(3, 4, mask_token=2), "is a data token"),
        (lambda: Edit(3, 1), "vocab_size must be an integer >= 2"),
        (lambda: TokenMask(0, 4), "seq_len must be an integer >= 1"),
        (lambda: MaskedCE(edit), "needs a TokenMask process"),
        (lambda: MaskedCE(mask, positions="visible"), "valid choices: 'corrupted', 'all'"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    assert _sample._cache_size() == before  # all raised before compiling
    # Shapes and dtypes are static: these raise while tracing, before anything runs.
    loss = MaskedCE(mask)
    with pytest.raises(ValueError, match="integer token ids"):
        loss(_key(0), _toy_apply, None, jnp.zeros((2, L)))
    with pytest.raises(ValueError, match=r"seq_len=3\), got \(2, 5\)"):
        loss(_key(0), _toy_apply, None, jnp.zeros((2, 5), jnp.int32))
    with pytest.raises(ValueError, match=r"seq_len=3\), got \(2, 5\)"):
        dj.sample(_key(0), oracle, mask, Unmask(), (2, 5))
    with pytest.raises(ValueError, match="logits of shape"):
        dj.sample(_key(0), dj.Predictor(lambda x, t: jnp.zeros((*x.shape, V + 1)), kind="x0"), mask, Unmask(), (2, L))
