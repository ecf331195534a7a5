"""Networks: shapes, DDPM's parameter count, conditioning, dropout, zero init, GroupNorm, jit/grad/jvp."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax.models import (
    MODELS,
    PRESETS,
    GroupNorm,
    build_model,
    count_params,
    fourier_embedding,
    group_norm,
    sinusoidal_embedding,
)

# Small enough to run eagerly in well under a second; still has attention (at 4x4), a down- and an up-sampling.
TINY_UNET = dict(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), num_groups=4, dropout=0.1)
TINY_MLP = dict(hidden=16, depth=2, time_embed_dim=8)


def _init(model, x, t, cond=None):
    """The model's own initialisation. An `rbg` key: threefry initialisers take XLA:CPU seconds to compile."""
    return model.init({"params": jax.random.key(0, impl="rbg")}, x, t, cond)


def _random_variables(model, x, t, cond=None, seed=0, scale=0.3):
    """Random values for every parameter (no zero-initialised layer hides the dependence on t and cond).

    Shapes come from `jax.eval_shape`, values from NumPy: nothing is compiled.
    """
    shapes = jax.eval_shape(lambda x, t, c: model.init({"params": jax.random.key(0)}, x, t, c), x, t, cond)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), s.dtype), shapes)


def _shapes(model, x_shape, t_dtype=jnp.int32, cond=False):
    """Output shape and parameter count from `jax.eval_shape`: nothing is computed or materialised."""
    x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
    t = jax.ShapeDtypeStruct(x_shape[:1], t_dtype)
    c = jax.ShapeDtypeStruct(x_shape[:1], jnp.int32) if cond else None
    variables = jax.eval_shape(lambda x, t, c: model.init({"params": jax.random.key(0)}, x, t, c), x, t, c)
    out = jax.eval_shape(lambda v, x, t, c: model.apply(v, x, t, c), variables, x, t, c)
    return out.shape, count_params(variables)


def _images(shape, key=1):
    return jax.random.normal(jax.random.key(key), shape)


# ---------------------------------------------------------------------------------------------------------------
# Shapes and parameter counts


@pytest.mark.parametrize("d, kwargs", [
    (2, {}),
    (3, dict(num_classes=4, layer_norm=True, time_embedding="fourier", dropout=0.1)),
    (5, dict(time_embedding="learned", num_time_embeddings=11, depth=1, out_dim=7)),
])
def test_mlp_output_shape(d, kwargs):
    model = build_model("mlp", **{**TINY_MLP, **kwargs})
    x, t = _images((4, d)), jnp.arange(4)
    cond = jnp.arange(4) % 3 if kwargs.get("num_classes") else None
    out = model.apply(_init(model, x, t, cond), x, t, cond)
    assert out.shape == (4, kwargs.get("out_dim", d)) and out.dtype == jnp.float32


@pytest.mark.parametrize("shape, kwargs", [
    ((2, 8, 8, 1), PRESETS["digits"]),
    ((2, 16, 16, 1), PRESETS["digits"]),
    ((2, 32, 32, 3), PRESETS["ddpm_cifar10"]),
    ((2, 8, 8, 3), dict(TINY_UNET, resblock_variant="biggan", skip_rescale=True)),
    ((2, 8, 8, 2), dict(TINY_UNET, resamp_with_conv=False, out_channels=5)),
    ((2, 16, 12, 3), dict(TINY_UNET, ch_mult=(1, 2, 3), attn_resolutions=(8, 4), time_embedding="fourier")),
    ((2, 4, 4, 7), dict(TINY_UNET, ch_mult=(1,), num_res_blocks=0, num_classes=10, time_embedding="learned")),
])
def test_unet_output_shape(shape, kwargs):
    model = build_model("unet", **kwargs)
    out_shape, _ = _shapes(model, shape, cond=bool(kwargs.get("num_classes")))
    assert out_shape == shape[:3] + (kwargs.get("out_channels") or shape[3],)


def test_ddpm_cifar10_parameter_count():
    """DDPM (Ho et al., 2020) reports 35.7M parameters for its CIFAR-10 network; TF's code gives 35,746,307."""
    _, n = _shapes(build_model("unet", **PRESETS["ddpm_cifar10"]), (1, 32, 32, 3))
    assert n == 35_746_307
    assert abs(n - 35.7e6) < 0.1e6


def test_digits_preset_parameter_count():
    model = build_model("unet", **PRESETS["digits"])
    assert _shapes(model, (1, 16, 16, 1))[1] == 1_112_801  # attention at 8x8 = level 1 (64 channels)
    assert _shapes(model, (1, 8, 8, 1))[1] == 1_075_361  # attention at 8x8 = level 0 (32 channels)


def test_count_params_on_arrays_matches_eval_shape():
    model = build_model("unet", **TINY_UNET)
    x, t = _images((2, 8, 8, 1)), jnp.zeros((2,), jnp.int32)
    variables = _random_variables(model, x, t)
    n = _shapes(model, x.shape)[1]
    assert count_params(variables) == count_params(variables["params"]) == n == 44_969  # counted by hand, per layer


# ---------------------------------------------------------------------------------------------------------------
# Validation


def test_build_model_rejects_unknown_name_and_kwarg():
    with pytest.raises(ValueError, match="encoder_decoder, mlp, transformer, unet"):
        build_model("resnet")
    with pytest.raises(ValueError, match=r"num_res_blocks.*resblock_variant"):
        build_model("unet", chanels=64)
    with pytest.raises(ValueError, match="hidden"):
        build_model("mlp", ch=64)
    with pytest.raises(ValueError, match="'sinusoidal', 'fourier', 'learned'"):
        build_model("mlp", time_embedding="cosine")
    with pytest.raises(ValueError, match="'ddpm', 'biggan'"):
        build_model("unet", resblock_variant="ncsn")
    assert set(MODELS) == {"mlp", "encoder_decoder", "unet", "transformer"}
    assert build_model("unet", ch_mult=[1, 2]).ch_mult == (1, 2)  # lists from configs become tuples


@pytest.mark.parametrize("kwargs, bad", [
    (dict(ch=30), "[30, 60]"),  # DDPM's ch_mult (1, 2, 2, 2) with 32 groups
    (dict(ch=24, ch_mult=(1, 3), num_groups=16), "[24]"),
    (dict(ch=8, num_groups=3), "[8, 16]"),
])
def test_unet_rejects_groups_that_do_not_divide_widths(kwargs, bad):
    with pytest.raises(ValueError, match=rf"num_groups={kwargs.get('num_groups', 32)} must divide.*{bad[1:-1]}"):
        build_model("unet", **kwargs)


def test_unet_rejects_bad_inputs():
    model = build_model("unet", **dict(TINY_UNET, ch_mult=(1, 2, 2)))
    with pytest.raises(ValueError, match="divisible by 4"):
        _shapes(model, (2, 12, 10, 1))
    with pytest.raises(ValueError, match="NHWC"):
        _shapes(model, (2, 8, 8))
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \(batch,\)"):
        model.init({"params": jax.random.key(0)}, jnp.zeros((2, 8, 8, 1)), jnp.zeros((3,)))
    with pytest.raises(ValueError, match="even dimension"):
        fourier_embedding(jnp.zeros(2), 5)


# ---------------------------------------------------------------------------------------------------------------
# Conditioning, dropout, zero initialisation


@pytest.mark.parametrize("name, shape, kwargs", [
    ("mlp", (4, 2), TINY_MLP),
    ("unet", (2, 8, 8, 1), TINY_UNET),
])
def test_class_conditioning_and_null_class(name, shape, kwargs):
    num_classes = 3
    model = build_model(name, **kwargs, num_classes=num_classes)
    x, t = _images(shape), jnp.full((shape[0],), 10)
    variables = _random_variables(model, x, t, jnp.zeros((shape[0],), jnp.int32), seed=3)
    out = {c: model.apply(variables, x, t, jnp.full((shape[0],), c, jnp.int32)) for c in range(num_classes + 1)}
    for a in range(num_classes + 1):
        for b in range(a):
            assert float(jnp.max(jnp.abs(out[a] - out[b]))) > 1e-3
    # cond=None is the null label `num_classes`, as classifier-free guidance needs.
    np.testing.assert_array_equal(model.apply(variables, x, t), out[num_classes])
    np.testing.assert_array_equal(model.apply(variables, x, t, None), out[num_classes])
    assert variables["params"]["class_embed"]["embedding"].shape[0] == num_classes + 1

    unconditional = build_model(name, **kwargs)
    with pytest.raises(ValueError, match="num_classes=0"):
        _random_variables(unconditional, x, t, jnp.zeros((shape[0],), jnp.int32))
    with pytest.raises(ValueError, match="integer class labels"):
        model.apply(variables, x, t, jnp.zeros((shape[0],)))
    assert "class_embed" not in _random_variables(unconditional, x, t)["params"]


@pytest.mark.parametrize("name, shape, kwargs", [
    ("mlp", (4, 2), dict(TINY_MLP, dropout=0.3)),
    ("unet", (2, 8, 8, 1), TINY_UNET),
])
def test_dropout_only_in_training(name, shape, kwargs):
    model = build_model(name, **kwargs)
    x, t = _images(shape), jnp.array([5, 9, 1, 2])[: shape[0]]
    variables = _random_variables(model, x, t, seed=4)
    k1, k2 = jax.random.key(10), jax.random.key(11)
    evaluation = model.apply(variables, x, t)
    np.testing.assert_array_equal(model.apply(variables, x, t, train=False, rngs={"dropout": k1}), evaluation)
    np.testing.assert_array_equal(model.apply(variables, x, t, train=False, rngs={"dropout": k2}), evaluation)
    train1 = model.apply(variables, x, t, train=True, rngs={"dropout": k1})
    np.testing.assert_array_equal(model.apply(variables, x, t, train=True, rngs={"dropout": k1}), train1)
    assert float(jnp.max(jnp.abs(train1 - model.apply(variables, x, t, train=True, rngs={"dropout": k2})))) > 1e-3
    assert float(jnp.max(jnp.abs(train1 - evaluation))) > 1e-3


@pytest.mark.parametrize("name, shape, kwargs", [
    ("mlp", (4, 3), TINY_MLP),
    ("unet", (2, 8, 8, 1), TINY_UNET),
    ("unet", (2, 8, 8, 1), dict(TINY_UNET, resblock_variant="biggan", skip_rescale=True)),
])
def test_zero_initialised_output(name, shape, kwargs):
    x, t = _images(shape), jnp.array([1, 2, 3, 4])[: shape[0]]
    model = build_model(name, **kwargs)
    np.testing.assert_array_equal(model.apply(_init(model, x, t), x, t), 0.0)
    model = build_model(name, **kwargs, zero_init_output=False)
    assert float(jnp.max(jnp.abs(model.apply(_init(model, x, t), x, t)))) > 1e-2


# ---------------------------------------------------------------------------------------------------------------
# GroupNorm


@pytest.mark.parametrize("shape, groups", [
    ((16, 16, 16, 64), 32),
    ((3, 8, 8, 30), 5),
    ((6, 64), 4),
])
def test_group_norm_matches_flax(shape, groups):
    k1, k2, k3, k4 = jax.random.split(jax.random.key(5), 4)
    x = 2.0 * jax.random.normal(k1, shape) + 0.5
    params = {"scale": 1.0 + 0.2 * jax.random.normal(k2, shape[-1:]), "bias": 0.2 * jax.random.normal(k3, shape[-1:])}
    ours = GroupNorm(groups)
    theirs = nn.GroupNorm(num_groups=groups, epsilon=1e-6)
    assert jax.tree.map(jnp.shape, ours.init(k1, x)) == jax.tree.map(jnp.shape, theirs.init(k1, x))
    y, y_ref = jax.jit(ours.apply)({"params": params}, x), jax.jit(theirs.apply)({"params": params}, x)
    np.testing.assert_allclose(y, y_ref, atol=1e-5, rtol=0)
    # Gradients as well: sums over up to 2^15 elements per channel, so a relative tolerance.
    cotangent = jax.random.normal(k4, shape)
    grad = lambda m: jax.jit(jax.grad(lambda p, x: jnp.vdot(m.apply({"params": p}, x), cotangent), argnums=(0, 1)))
    for a, b in zip(jax.tree.leaves(grad(ours)(params, x)), jax.tree.leaves(grad(theirs)(params, x)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(b))))


def test_group_norm_rejects_groups_that_do_not_divide():
    with pytest.raises(ValueError, match="num_groups=4 does not divide the 6 channels"):
        group_norm(jnp.ones((2, 6)), jnp.ones(6), jnp.zeros(6), 4)


# ---------------------------------------------------------------------------------------------------------------
# Time embedding


def test_sinusoidal_embedding_is_ddpms():
    emb = sinusoidal_embedding(jnp.array([0, 3]), 6)
    np.testing.assert_allclose(emb[0], [0, 0, 0, 1, 1, 1])
    freqs = 10000.0 ** -(np.arange(3) / 2)
    np.testing.assert_allclose(emb[1], np.concatenate([np.sin(3 * freqs), np.cos(3 * freqs)]), atol=1e-6)
    assert sinusoidal_embedding(jnp.array([1.5]), 7).shape == (1, 7)


@pytest.mark.parametrize("name, shape, kwargs", [
    ("mlp", (2, 2), dict(TINY_MLP, time_embedding="sinusoidal")),
    ("mlp", (2, 2), dict(TINY_MLP, time_embedding="fourier")),
    ("mlp", (2, 2), dict(TINY_MLP, time_embedding="learned", num_time_embeddings=1001)),
    ("unet", (2, 8, 8, 1), TINY_UNET),
])
def test_time_embedding_accepts_int_and_float_t(name, shape, kwargs):
    model = build_model(name, **kwargs)
    x = jnp.broadcast_to(_images(shape[1:])[None], shape)  # one input repeated: rows differ only through t
    t_int = jnp.array([1, 500], jnp.int32)
    variables = _random_variables(model, x, t_int, seed=6)
    out = model.apply(variables, x, t_int)
    assert float(jnp.max(jnp.abs(out[0] - out[1]))) > 1e-3  # different t, different outputs
    np.testing.assert_allclose(model.apply(variables, x, t_int.astype(jnp.float32)), out, rtol=1e-6, atol=1e-6)
    # A scalar t is broadcast over the batch.
    np.testing.assert_allclose(model.apply(variables, x, 500)[0], out[1], rtol=1e-6, atol=1e-6)


def test_time_scale_multiplies_t():
    """`time_scale * t` is embedded: continuous t in [0, 1] with scale 1000 equals integer steps with scale 1."""
    for kind in ("sinusoidal", "learned"):
        steps = build_model("mlp", **TINY_MLP, time_embedding=kind)
        scaled = build_model("mlp", **TINY_MLP, time_embedding=kind, time_scale=1000.0)
        x, t = _images((2, 2)), jnp.array([0.25, 0.999])
        variables = _random_variables(steps, x, t, seed=7)
        np.testing.assert_allclose(scaled.apply(variables, x, t), steps.apply(variables, x, jnp.array([250, 999])),
                                   rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Transformations


@pytest.mark.slow
def test_unet_is_jittable_differentiable_and_forward_differentiable():
    model = build_model("unet", **TINY_UNET)  # the configuration of the tests above: eager ops already compiled
    x, t, cond = _images((2, 8, 8, 1)), jnp.array([3.0, 40.0]), None
    params = _random_variables(model, x, t, cond, seed=7)["params"]

    apply = jax.jit(lambda p, x, t, c: model.apply({"params": p}, x, t, c))
    np.testing.assert_allclose(apply(params, x, t, cond), model.apply({"params": params}, x, t, cond), atol=1e-5)
    apply(params, x + 1.0, t + 1.0, cond)
    assert apply._cache_size() == 1  # new values, same shapes: no recompilation

    # train=False: threefry dropout masks double XLA:CPU's compile time here; the MLP test covers dropout.
    grad = jax.jit(jax.grad(lambda p: jnp.mean(jnp.square(model.apply({"params": p}, x, t, cond) - x))))
    norms = jax.tree.leaves(jax.tree.map(lambda g: float(jnp.linalg.norm(g)), grad(params)))
    assert all(np.isfinite(n) and n > 0 for n in norms)

    # At DDPM's initialisation the output convolution is zero, so it alone receives a gradient at first.
    init_grads = grad(_init(model, x, t, cond)["params"])
    assert float(jnp.linalg.norm(init_grads.pop("conv_out")["kernel"])) > 0
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(init_grads))

    # Forward mode through the network (consistency models, MeanFlow): jvp in t agrees with a finite difference.
    tangent = jax.jit(lambda s: jax.jvp(lambda s: apply(params, x, s, cond), (s,), (jnp.ones_like(s),))[1])(t)
    finite_difference = (apply(params, x, t + 0.05, cond) - apply(params, x, t - 0.05, cond)) / 0.1
    np.testing.assert_allclose(tangent, finite_difference, atol=2e-2 * float(jnp.max(jnp.abs(tangent))))


def test_mlp_is_jittable_and_differentiable():
    model = build_model("mlp", **TINY_MLP, layer_norm=True, dropout=0.1)
    x, t = _images((8, 2)), jnp.linspace(0.0, 1.0, 8)
    params = _random_variables(model, x, t, seed=9)["params"]
    loss = lambda p, key: jnp.mean(jnp.square(model.apply({"params": p}, x, t, train=True, rngs={"dropout": key})))
    value, grads = jax.jit(jax.value_and_grad(loss))(params, jax.random.key(1))
    assert np.isfinite(float(value))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_mlp_flattens_images_and_restores_their_shape():
    model = build_model("mlp", hidden=32, depth=1, zero_init_output=False)
    x = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))
    variables = model.init({"params": jax.random.key(1)}, x, jnp.ones((3,), jnp.int32))
    out = model.apply(variables, x, jnp.ones((3,), jnp.int32))
    flat = model.apply(variables, x.reshape(3, -1), jnp.ones((3,), jnp.int32))
    assert out.shape == x.shape
    np.testing.assert_allclose(out.reshape(3, -1), flat, rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Mixed precision (the `dtype` knob)


@pytest.mark.parametrize("name, shape, kwargs", [
    ("mlp", (16, 2), dict(TINY_MLP, layer_norm=True)),
    ("unet", (4, 8, 8, 3), TINY_UNET),
])
def test_bfloat16_output_is_close_to_float32(name, shape, kwargs):
    """bfloat16 keeps 8 mantissa bits (relative rounding 2^-9 per operation). With random weights, over three
    seeds the bf16 output differed from float32 by at most 1.4% of the largest |output| (U-Net; 1.3% MLP) and
    by at most 1.1% in relative RMS; the bounds below are about 2.5x those."""
    f32, bf16 = build_model(name, **kwargs), build_model(name, **kwargs, dtype="bfloat16")
    x, t = _images(shape), jnp.arange(shape[0]) * 7
    variables = _random_variables(f32, x, t, seed=2)
    # Same parameters, all float32: a checkpoint moves between the two settings unchanged.
    assert jax.tree.map(lambda s: (s.shape, s.dtype), _random_variables(bf16, x, t, seed=2)) == jax.tree.map(
        lambda s: (s.shape, s.dtype), variables)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
    y, y_bf16 = f32.apply(variables, x, t), bf16.apply(variables, x, t)
    assert y_bf16.dtype == jnp.float32 and y_bf16.shape == y.shape
    max_rel = float(jnp.max(jnp.abs(y_bf16 - y)) / jnp.max(jnp.abs(y)))
    rms_rel = float(jnp.sqrt(jnp.mean(jnp.square(y_bf16 - y)) / jnp.mean(jnp.square(y))))
    assert 1e-4 < max_rel < 0.035  # the lower bound: bf16 arithmetic really ran
    assert rms_rel < 0.03


@pytest.mark.parametrize("name, shape, kwargs", [("mlp", (4, 2), TINY_MLP), ("unet", (2, 8, 8, 1), TINY_UNET)])
def test_default_dtype_is_float32_throughout(name, shape, kwargs):
    """The default traces no bfloat16 operation (its numbers are those of the model before the knob); the
    bfloat16 setting runs its products in bfloat16, and rejects other names naming the valid ones."""
    x, t = jax.ShapeDtypeStruct(shape, jnp.float32), jax.ShapeDtypeStruct(shape[:1], jnp.int32)

    def jaxpr(model):
        variables = jax.eval_shape(lambda x, t: model.init({"params": jax.random.key(0)}, x, t), x, t)
        return str(jax.make_jaxpr(model.apply)(variables, x, t))

    assert "bf16" not in jaxpr(build_model(name, **kwargs))
    assert jaxpr(build_model(name, **kwargs)) == jaxpr(build_model(name, **kwargs, dtype="float32"))
    mixed = jaxpr(build_model(name, **kwargs, dtype="bfloat16"))
    assert "bf16" in mixed and ("dot_general" in mixed)
    with pytest.raises(ValueError, match="'float32', 'bfloat16'"):
        build_model(name, **kwargs, dtype="float16")
