"""The samplers' noise generators (diffjax/samplers/_noise.py): statistical quality of `pcg`, reproducibility,
sharding, and `threefry` staying `jax.random.normal`.

Statistics are taken on fixed keys, each bound a stated number of standard errors (SE) under the hypothesis
that the draws are i.i.d. N(0, 1) (or the bits i.i.d. uniform): 5 SE for a single moment or frequency (a
false alarm has probability 6e-7), and p > 1e-3 for the KS and chi-square tests.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from scipy import special, stats

import diffjax as dj
from diffjax.samplers._noise import MAX_ELEMENTS, NOISE_RNGS, _pcg4d, normal, pcg4d_bits, step_noise
from diffjax.testing import sliced_wasserstein

N = 1 << 22  # 4,194,304 draws per statistic
ALPHA = 1e-3  # significance of the KS and chi-square tests


def _pcg(key, shape, dtype=jnp.float32):
    return normal(key, shape, dtype, "pcg")


@pytest.fixture(scope="module")
def draws():
    """4M pcg draws of one key, in float64 for the moments."""
    return np.asarray(_pcg(jax.random.key(0), (1024, N // 1024)), np.float64)


# ---- threefry is jax.random.normal ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 4, 5)])
def test_threefry_is_bit_identical_to_jax_random_normal(shape):
    key = jax.random.key(7)
    for step in (0, 1, 999):
        for dtype in (jnp.float32, jnp.bfloat16):
            expected = jax.random.normal(jax.random.fold_in(key, step), shape, dtype)
            np.testing.assert_array_equal(step_noise(key, step, shape, dtype, "threefry"), expected)
    raw = jax.random.PRNGKey(3)  # an old-style uint32 key works the same way
    np.testing.assert_array_equal(normal(raw, shape, jnp.float32, "threefry"), jax.random.normal(raw, shape))


def test_threefry_is_bit_identical_in_float64(x64):
    key = jax.random.key(1)
    expected = jax.random.normal(jax.random.fold_in(key, 4), (6, 7), jnp.float64)
    np.testing.assert_array_equal(step_noise(key, 4, (6, 7), jnp.float64, "threefry"), expected)


def test_threefry_prior_is_the_process_prior_sample():
    """`GridSampler.prior` with threefry is `GaussianProcess.prior_sample` bit for bit (VE: prior_std = 50)."""
    key = jax.random.key(2)
    for name in ("ddpm", "ve"):
        process = dj.process(name)
        prior = dj.sampler("ancestral", noise_rng="threefry").prior(key, process, (64, 3))
        np.testing.assert_array_equal(prior, process.prior_sample(key, (64, 3)))


# ---- pcg: moments, KS, tails ----------------------------------------------------------------------------------
def test_pcg_moments_match_the_standard_normal(draws):
    """Mean, variance, skewness and excess kurtosis of 4M draws, each within 5 SE of 0, 1, 0, 0: SEs
    1/sqrt(N) = 4.9e-4, sqrt(2/N) = 6.9e-4, sqrt(6/N) = 1.2e-3, sqrt(24/N) = 2.4e-3. Measured 8.3e-4, -8.2e-4,
    1.0e-3, -2.9e-3 (1.7, 1.2, 0.8, 1.2 SE)."""
    z = draws.ravel()
    n = z.size
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1.0) < 5 * math.sqrt(2 / n)
    assert abs(stats.skew(z)) < 5 * math.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < 5 * math.sqrt(24 / n)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_pcg_passes_kolmogorov_smirnov(seed):
    """KS of 1M draws against N(0, 1) at significance 1e-3 (critical distance 1.95/sqrt(N) = 1.9e-3), for 4 keys
    and a shape whose index runs past 2^16 and 2^20. Measured p 0.58, 0.36, 0.37, 0.95."""
    z = np.asarray(_pcg(jax.random.key(seed), (1 << 20,)), np.float64)
    assert stats.kstest(z, "norm").pvalue > ALPHA


def test_kolmogorov_smirnov_has_power():
    """The same KS test flags pcg bits cut to an 8-bit uniform (the transform otherwise unchanged): p = 6e-7."""
    from diffjax.samplers._noise import _giles_normal

    bits = pcg4d_bits(jax.random.key(0), (1 << 20,))[0]
    u = ((bits >> 24).astype(jnp.float32) + 0.5) / 256.0
    assert stats.kstest(np.asarray(_giles_normal(u), np.float64), "norm").pvalue < ALPHA


def test_pcg_tail_frequencies():
    """P(|z| > 3) = 2.70e-3 and P(|z| > 4) = 6.33e-5 over 16.8M draws, within 5 binomial SEs (213 and 33 counts
    around 45,293 and 1,063; measured 45,069 and 1,095, -1.1 and +1.0 SE); the tails stop at |z| = 5.29
    (u = 2^-24)."""
    z = np.abs(np.asarray(_pcg(jax.random.key(11), (4096, 4096))))
    n = z.size
    for threshold in (3.0, 4.0):
        p = special.erfc(threshold / math.sqrt(2))
        count = np.count_nonzero(z > threshold)
        assert abs(count - n * p) < 5 * math.sqrt(n * p * (1 - p)), (threshold, count, n * p)
    assert 4.5 < z.max() <= 5.295


def test_pcg_uniform_is_strictly_inside_the_unit_interval():
    """The extreme bit patterns map to finite, opposite normals (u = 2^-24 and 1 - 2^-24)."""
    from diffjax.samplers._noise import _giles_normal, _open_unit32

    u = _open_unit32(jnp.asarray([0, 0xFFFFFFFF, 0x80000000], jnp.uint32))
    np.testing.assert_array_equal(u, np.asarray([2.0**-24, 1 - 2.0**-24, 0.5 + 2.0**-24], np.float32))
    z = np.asarray(_giles_normal(u))
    assert np.all(np.isfinite(z)) and z[0] == -z[1] and abs(z[0] + 5.2947) < 1e-3


# ---- pcg: independence ----------------------------------------------------------------------------------------
def _corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_pcg_has_no_lag_correlation_in_a_draw(draws):
    """Pearson correlation of z (and of z^2) at lags 1, 2, 3 and 2^k up to 2^20 along the flattened draw, and
    across the batch axis (lag 4096 = one row), each within 5 SE = 5/sqrt(N - lag) of 0 (about 2.5e-3). Measured
    at most 1.4 SE (z) and 1.6 SE (z^2) over the lags."""
    z = draws.ravel()
    for lag in (1, 2, 3, *[1 << k for k in range(2, 21)]):
        bound = 5 / math.sqrt(z.size - lag)
        assert abs(_corr(z[:-lag], z[lag:])) < bound, lag
        assert abs(_corr(z[:-lag] ** 2, z[lag:] ** 2)) < bound, lag
    assert abs(_corr(draws[:-1], draws[1:])) < 5 / math.sqrt(draws[1:].size)


def test_pcg_steps_and_keys_are_uncorrelated():
    """The draws of steps i and i + 1 (and i + 7) of one key, and of two keys, are uncorrelated (5 SE = 2.4e-3
    over 4M; measured 1.6, 0.9 and 0.4 SE)."""
    shape = (64, 256, 256)
    key = jax.random.key(5)
    z0, z1, z7 = (np.asarray(step_noise(key, i, shape, jnp.float32, "pcg"), np.float64) for i in (0, 1, 7))
    other = np.asarray(step_noise(jax.random.key(6), 0, shape, jnp.float32, "pcg"), np.float64)
    bound = 5 / math.sqrt(z0.size)
    for a, b in ((z0, z1), (z0, z7), (z0, other)):
        assert abs(_corr(a, b)) < bound


def test_pcg_small_draws_across_many_steps():
    """A sampler's regime: 4096 steps of 1024 numbers, the same indices under ever new keys. Each index's mean
    over the steps (and each step's mean over the indices) is N(0, 1/n): the sums of their squares scaled by n
    are chi-square with 1024 (4096) dof, p > 1e-3 (measured 0.054 and 0.32); consecutive steps are uncorrelated
    (5 SE over 4M pairs; measured 1.6 SE)."""
    key = jax.random.key(9)
    z = np.asarray(jax.vmap(lambda i: step_noise(key, i, (1024,), jnp.float32, "pcg"))(jnp.arange(4096)), np.float64)
    steps, width = z.shape
    index_means, step_means = z.mean(0), z.mean(1)
    assert stats.chi2.sf(steps * np.sum(index_means**2), width) > ALPHA
    assert stats.chi2.sf(width * np.sum(step_means**2), steps) > ALPHA
    assert stats.chi2.sf(steps * np.sum(index_means**2), width) < 1 - ALPHA  # not suspiciously even either
    assert abs(_corr(z[:-1], z[1:])) < 5 / math.sqrt(z[1:].size)


# ---- pcg: bits ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_pcg_hash_bytes_and_bits_are_uniform(seed):
    """The bits the normals are made of, the top 23 of each raw hash word: each of the top 3 bytes of 4M words
    takes its 256 values evenly (chi-square, 255 dof, p > 1e-3; measured p 0.12 to 0.90), and each of bits 9..31
    is set in half the words within 5 SE (0.5/sqrt(N) = 2.4e-4; measured at most 3.2 SE over 6 keys).

    The low byte is left out: in a multiply-add hash output bit k depends only on input bits 0..k+16, so bit 0
    repeats with period 2^17 in the index and 4M words hold only 2^17 independent values of it (measured 4.8 SE
    in these units). The lowest bit used, bit 9, repeats with period 2^26, as the module docstring says."""
    words = np.asarray(pcg4d_bits(jax.random.key(seed), (N,))[0])
    for byte in (1, 2, 3):
        counts = np.bincount((words >> (8 * byte)) & 0xFF, minlength=256)
        assert stats.chisquare(counts).pvalue > ALPHA, byte
    ones = ((words[:, None] >> np.arange(9, 32, dtype=np.uint32)) & 1).mean(0)
    np.testing.assert_array_less(np.abs(ones - 0.5), 5 * 0.5 / math.sqrt(N))


def test_pcg_lowest_bit_used_has_period_two_to_the_26():
    """The documented limit, checked: bit 9 of the hash at index i and i + 2^26 agree, bit 10 does not."""
    index = jnp.arange(1 << 16, dtype=jnp.uint32)
    seeds = [jnp.uint32(0x12345678), jnp.uint32(0x9ABCDEF0), jnp.uint32(0x0FEDCBA9)]
    a = np.asarray(_pcg4d(index, *seeds)[0])
    b = np.asarray(_pcg4d(index + jnp.uint32(1 << 26), *seeds)[0])
    np.testing.assert_array_equal(a & 0x3FF, b & 0x3FF)
    assert 0.45 < np.mean((a >> 10) & 1 == (b >> 10) & 1) < 0.55


# ---- reproducibility, shapes, dtypes, errors ------------------------------------------------------------------
def test_pcg_is_reproducible_and_keyed():
    key = jax.random.key(0)
    a = step_noise(key, 3, (16, 8), jnp.float32, "pcg")
    np.testing.assert_array_equal(a, step_noise(key, 3, (16, 8), jnp.float32, "pcg"))
    np.testing.assert_array_equal(a, jax.jit(lambda k: step_noise(k, 3, (16, 8), jnp.float32, "pcg"))(key))
    for other in (
        step_noise(key, 4, (16, 8), jnp.float32, "pcg"),
        step_noise(jax.random.key(1), 3, (16, 8), jnp.float32, "pcg"),
    ):
        assert np.mean(np.asarray(a) == np.asarray(other)) < 0.01
    # A counter-based draw: element i depends on the key and i only, whatever the shape around it.
    np.testing.assert_array_equal(_pcg(key, (16, 8)).ravel(), _pcg(key, (128,)))
    np.testing.assert_array_equal(_pcg(key, (100,)), _pcg(key, (300,))[:100])
    raw = jax.random.PRNGKey(0)  # old-style keys work too
    assert _pcg(raw, (4,)).shape == (4,)


def test_pcg_shapes_and_dtypes():
    key = jax.random.key(4)
    assert _pcg(key, ()).shape == () and _pcg(key, (0, 3)).shape == (0, 3)
    z32 = _pcg(key, (1000, 7))
    assert z32.dtype == jnp.float32 and z32.shape == (1000, 7)
    for dtype in (jnp.float16, jnp.bfloat16):
        z = _pcg(key, (1000, 7), dtype)
        assert z.dtype == dtype
        np.testing.assert_array_equal(z, z32.astype(dtype))
    np.testing.assert_array_equal(_pcg(key, (1000, 7), jnp.float64), z32)  # float64 without x64 is float32
    with pytest.raises(ValueError, match="floating dtype"):
        _pcg(key, (3,), jnp.int32)


def test_pcg_float64_has_float64_resolution(x64):
    """Under x64 the draw takes two hash words: 52-bit uniforms, so most values are not float32 numbers. Its u
    keeps the float32 draw's top 23 bits: measured median gap to the float32 draw 1.1e-7 (asserted 1e-6), and
    moments of 1M draws within 5 SE."""
    key = jax.random.key(3)
    z = np.asarray(_pcg(key, (1 << 20,), jnp.float64))
    assert z.dtype == np.float64
    assert np.mean(z.astype(np.float32).astype(np.float64) != z) > 0.99
    assert np.median(np.abs(z - np.asarray(_pcg(key, (1 << 20,))))) < 1e-6
    assert abs(z.mean()) < 5 / math.sqrt(z.size) and abs(z.var() - 1) < 5 * math.sqrt(2 / z.size)
    assert stats.kstest(z, "norm").pvalue > ALPHA


def test_too_many_elements_and_unknown_generator_raise():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"at most 2\*\*32 numbers.*noise_rng='threefry'"):
        jax.eval_shape(lambda k: _pcg(k, (1 << 16, (1 << 16) + 1)), key)
    assert jax.eval_shape(lambda k: _pcg(k, (1 << 16, 1 << 16)), key).shape == (1 << 16, 1 << 16)
    assert MAX_ELEMENTS == 1 << 32
    with pytest.raises(ValueError, match="unknown noise_rng 'philox'; valid choices: 'pcg', 'threefry'"):
        normal(key, (3,), jnp.float32, "philox")


def test_bad_noise_rng_fails_validate_with_one_line(mixture):
    process = dj.process("ddpm")
    sampler = dj.sampler("ancestral", noise_rng="x")
    with pytest.raises(ValueError) as error:
        sampler.validate(process, mixture.predictor(process))
    assert str(error.value) == "unknown noise_rng 'x'; valid choices: 'pcg', 'threefry'"
    with pytest.raises(ValueError, match="noise_rng"):  # before compiling, through dj.sample
        dj.sample(jax.random.key(0), mixture.predictor(process), process, dj.sampler("ddim", noise_rng=""), (4, 2))
    assert NOISE_RNGS == dj.samplers.NOISE_RNGS == ("pcg", "threefry")
    assert dj.sampler("heun").noise_rng == "pcg"  # the default, on every Gaussian sampler


# ---- sharding -------------------------------------------------------------------------------------------------
@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices: tests/conftest.py sets them")
@pytest.mark.parametrize("spec", [P("data"), P(None, "data"), P(None, None, None, "data")])
def test_sharded_pcg_draw_equals_one_device(spec):
    """An 8-device draw placed by `out_shardings` (as diffjax/generate.py draws the prior) equals the 1-device
    draw bit for bit, and each device builds only its own shard (no full-size array in the compiled program),
    whichever axis is sharded."""
    shape = (16, 8, 8, 24)
    mesh = jax.make_mesh((8,), ("data",))
    sharding = NamedSharding(mesh, spec)
    key = jax.random.key(12)
    draw = jax.jit(lambda k: _pcg(k, shape), out_shardings=sharding)
    sharded = draw(key)
    np.testing.assert_array_equal(np.asarray(sharded), np.asarray(jax.jit(lambda k: _pcg(k, shape))(key)))
    assert len({s.device for s in sharded.addressable_shards}) == 8
    assert f"[{','.join(map(str, shape))}]" not in draw.lower(key).compile().as_text()
    prior = jax.jit(lambda k: dj.sampler("ancestral").prior(k, dj.process("ddpm"), shape), out_shardings=sharding)
    np.testing.assert_array_equal(np.asarray(prior(key)), np.asarray(_pcg(key, shape)))


# ---- the samplers under pcg -----------------------------------------------------------------------------------
SAMPLES = 4000
PROJECTIONS = 64  # as tests/test_samplers_continuous.py: the 256-direction values to ~2% at a quarter of the cost


def _sliced_w1(x, y):
    return float(sliced_wasserstein(jax.random.key(7), x, y, num_projections=PROJECTIONS))


@pytest.fixture(scope="module")
def noise_floor(mixture, reference):
    """The law tests' floor (tests/test_samplers.py): mean + 4 std of the sliced-W1 between the reference and
    fresh data draws, here over 32 draws (8 give too uncertain a std: see tests/test_samplers_continuous.py).
    Measured: mean 0.035, std 0.009, floor 0.072."""
    null = [_sliced_w1(mixture.sample(jax.random.key(200 + i), SAMPLES), reference) for i in range(32)]
    return float(np.mean(null) + 4 * np.std(null))


def test_ancestral_matches_the_data_as_well_under_pcg_as_under_threefry(mixture, reference, noise_floor):
    """DDPM-1000 ancestral with the mixture's exact eps lands under the data's own noise floor with either
    generator, with the mass per component within 5 SE; the two runs' samples differ (different noise).

    Measured sliced-W1 for this key: pcg 0.044, threefry 0.038; over 12 keys (256 directions) pcg 0.036 +- 0.007,
    threefry 0.034 +- 0.007, against the data's own 0.036 +- 0.010. With 64,000 samples (ancestral-1000 on vp,
    64 directions; null 0.0072 +- 0.0016) three keys gave pcg 0.0058, 0.0049, 0.0087 and threefry 0.0048,
    0.0090, 0.0085.
    """
    process = dj.process("ddpm")
    out = {}
    for rng in NOISE_RNGS:
        sampler = dj.sampler("ancestral", noise_rng=rng)
        x = dj.sample(jax.random.key(3), mixture.predictor(process), process, sampler, (SAMPLES, 2))
        assert bool(jnp.all(jnp.isfinite(x)))
        distance = _sliced_w1(x, reference)
        assert distance < noise_floor, f"{rng}: sliced-W1 {distance:.4f} above the floor {noise_floor:.4f}"
        resp = mixture.responsibilities(x)
        bound = 5 * resp.std(0) / np.sqrt(SAMPLES) + 1e-3
        np.testing.assert_array_less(jnp.abs(resp.mean(0) - mixture.weights), bound)
        out[rng] = x
    assert float(jnp.median(jnp.linalg.norm(out["pcg"] - out["threefry"], axis=-1))) > 0.1
