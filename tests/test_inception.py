"""The FID InceptionV3: architecture by parameter counts, torch-compatible resizing, the `.npz` format, the pytorch-fid
converter and `fid` end to end on random weights (the real weights are never available to the tests)."""

import jax
import numpy as np
import pytest
from flax import traverse_util

from diffjax.evaluation import (
    InceptionV3,
    _inception,
    convert_pytorch_fid_state_dict,
    fid,
    inception_feature_fn,
    load_inception_npz,
    save_inception_npz,
)


def _random_variables(seed=0):
    """He-normal kernels and perturbed BatchNorm statistics, so activations neither vanish nor explode."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if "kernel" in name:
            return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / np.prod(leaf.shape[:3]))).astype(np.float32)
        if "var" in name:
            return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
        if "scale" in name:
            return rng.uniform(0.8, 1.2, leaf.shape).astype(np.float32)
        return (0.1 * rng.standard_normal(leaf.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, _inception.variable_shapes())


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    variables = _random_variables()
    path = tmp_path_factory.mktemp("inception") / "inception_fid.npz"
    save_inception_npz(variables, path)
    return variables, path


def _images(n, size, seed):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (n, size, size, 3)).astype(np.float32)


def _to_state_dict(variables):
    """The inverse of `convert_pytorch_fid_state_dict`: pytorch-fid names, OIHW kernels, plus entries it drops."""
    out = {"fc.weight": np.zeros((1008, 2048), np.float32), "fc.bias": np.zeros(1008, np.float32)}
    torch_bn = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
    for (_, *block, leaf), value in traverse_util.flatten_dict(variables).items():
        if leaf == "kernel":
            out[".".join(block[:-1]) + ".conv.weight"] = np.asarray(value).transpose(3, 2, 0, 1)
        else:
            out[".".join(block) + "." + torch_bn[leaf]] = np.asarray(value)
            out[".".join(block) + ".num_batches_tracked"] = np.zeros((), np.int64)
    return out


# ---- architecture ----------------------------------------------------------------------------------------------
def test_parameter_counts_match_torchvision_and_keras_inception_v3():
    shapes = _inception.variable_shapes()
    size = lambda tree: sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))  # noqa: E731
    kernels = sum(int(np.prod(leaf.shape)) for path, leaf in jax.tree_util.tree_leaves_with_path(shapes["params"])
                  if "kernel" in jax.tree_util.keystr(path))
    bn_channels = size(shapes["batch_stats"]) // 2
    assert len(jax.tree.leaves(shapes["params"])) == 3 * 94  # 94 conv+BN layers, as torchvision without AuxLogits
    # torchvision inception_v3: 27,161,264 parameters, less fc (2048*1000 + 1000) and AuxLogits (3,326,696).
    assert _inception.parameter_count() == size(shapes["params"]) == 27_161_264 - 2_049_000 - 3_326_696 == 21_785_568
    # Keras/TF-slim InceptionV3 without top, 21,802,784: BatchNorm without scale but counting beta, mean and var.
    assert kernels + 3 * bn_channels == 21_802_784


def test_random_init_maps_299_and_small_images_to_2048_features(weights):
    variables, _ = weights
    init = jax.eval_shape(InceptionV3().init, jax.random.key(0), jax.ShapeDtypeStruct((1, 75, 75, 3), np.float32))
    assert jax.tree.map(lambda s: s.shape, init) == jax.tree.map(lambda a: a.shape, variables)
    out = jax.eval_shape(InceptionV3().apply, variables, jax.ShapeDtypeStruct((2, 299, 299, 3), np.float32))
    assert out.shape == (2, 2048)
    feats = np.asarray(_inception.make_feature_fn(variables)(_images(2, 32, seed=0)))  # resized to 299 first
    assert feats.shape == (2, 2048) and np.isfinite(feats).all() and feats.std() > 0.1


def test_fid_pools_exclude_padding():
    ones = np.ones((1, 5, 5, 2), np.float32)
    np.testing.assert_allclose(_inception._avg_pool(ones), ones, rtol=0, atol=1e-7)  # 4/9 at corners if padded


@pytest.mark.parametrize("size", [(7, 5), (320, 311)])
def test_resize_is_torch_bilinear_without_antialias(size):
    """`F.interpolate(mode="bilinear", align_corners=False)`: half-pixel sources clamped at 0, two-tap weights."""
    def torch_1d(n_in, n_out=299):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = np.floor(src).astype(int)
        w = np.zeros((n_out, n_in))
        np.add.at(w, (np.arange(n_out), i0), 1.0 - (src - i0))
        np.add.at(w, (np.arange(n_out), np.minimum(i0 + 1, n_in - 1)), src - i0)
        return w

    grey = np.random.default_rng(1).uniform(-1.0, 1.0, (1, *size, 1))
    expected = np.einsum("ah,bw,nhwc->nabc", torch_1d(size[0]), torch_1d(size[1]), grey, optimize=True)
    got = np.asarray(_inception.preprocess(grey.astype(np.float32)))
    assert got.shape == (1, 299, 299, 3)
    # float32 source coordinates: ~320 * 2^-24 off per pixel, times neighbour differences up to 2 (measured 6.5e-5).
    np.testing.assert_allclose(got, np.repeat(expected, 3, axis=-1), rtol=0, atol=2e-4)


# ---- weight files and conversion -------------------------------------------------------------------------------
def test_npz_round_trip_gives_identical_variables_and_features(weights):
    variables, path = weights
    loaded = load_inception_npz(path)
    assert jax.tree.structure(loaded) == jax.tree.structure(variables)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(variables), strict=True))
    x = _images(2, 32, seed=0)
    np.testing.assert_array_equal(inception_feature_fn(path)(x), _inception.make_feature_fn(variables)(x))


def test_pytorch_fid_state_dict_converts_exactly(weights):
    variables, _ = weights
    state_dict = _to_state_dict(variables)
    # pytorch-fid shapes (O, I, kh, kw): a non-square kernel pins the H/W order, a 1x1 the I/O order.
    assert state_dict["Mixed_6b.branch7x7_2.conv.weight"].shape == (128, 128, 1, 7)
    assert state_dict["Mixed_5b.branch5x5_1.conv.weight"].shape == (48, 192, 1, 1)
    assert state_dict["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    converted = convert_pytorch_fid_state_dict(state_dict)
    flat, ref = (traverse_util.flatten_dict(v, sep="/") for v in (converted, variables))
    assert set(flat) == set(ref) and "params/Mixed_5b/branch1x1/conv/kernel" in flat
    assert all(np.array_equal(flat[k], ref[k]) for k in ref)
    with pytest.raises(ValueError, match="Mixed_5b.branch1x1.conv.bias"):
        convert_pytorch_fid_state_dict({**state_dict, "Mixed_5b.branch1x1.conv.bias": np.zeros(64)})
    bad = {**state_dict, "Mixed_6b.branch7x7_2.conv.weight": np.zeros((128, 128, 7, 1), np.float32)}
    with pytest.raises(ValueError, match="wrong shape"):
        convert_pytorch_fid_state_dict(bad)


def test_missing_or_unreadable_weights_say_what_to_provide(tmp_path):
    images = np.zeros((2, 8, 8, 3), np.float32)
    with pytest.raises(FileNotFoundError, match="no file at.*convert_pytorch_fid_state_dict") as err:
        fid(images, images, inception_path=tmp_path / "missing.npz")
    assert "\n" not in str(err.value) and "pt_inception-2015-12-05" in str(err.value)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="cannot read.*convert_pytorch_fid_state_dict") as err:
        inception_feature_fn(tmp_path / "junk.npz")
    assert "\n" not in str(err.value)
    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(ValueError, match="not an .npz archive"):
        load_inception_npz(tmp_path / "array.npy")
    np.savez(tmp_path / "other.npz", **{"params/Dense_0/kernel": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="does not hold the FID InceptionV3"):
        load_inception_npz(tmp_path / "other.npz")


# ---- fid end to end --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_fid_with_random_inception_weights(weights):
    _, path = weights
    noise = _images(2, 32, seed=0)
    ramps = np.broadcast_to(np.linspace(-1.0, 1.0, 32, dtype=np.float32)[None, :, None, None], (2, 32, 32, 1)).copy()
    ramps[1] *= -1.0  # grey, and 2 images so the covariance exists
    assert fid(noise, noise, inception_path=path, batch_size=2) == pytest.approx(0.0, abs=1e-3)
    assert fid(noise, ramps, inception_path=path, batch_size=2) > 1.0
