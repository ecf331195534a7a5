"""The FID InceptionV3 (pool3, 2048-d) as a Flax Linen module, its `.npz` weight format and a pytorch-fid converter.

The network is the TensorFlow graph `pt_inception-2015-12-05` of TTUR (Heusel et al. 2017) as pytorch-fid ports
it (`FIDInceptionV3`: torchvision's `Inception3` with the blocks `FIDInceptionA/C/E_1/E_2`). Its FID-specific
departures from torchvision's InceptionV3 are kept: the average pools of the A, C and first E blocks exclude the
padding from the mean (`count_include_pad=False`), and the last E block (`Mixed_7c`) max-pools in its pool branch.
Convolutions have no bias and BatchNorm uses `eps = 1e-3`. Images are resized bilinearly (half-pixel centres, no
antialiasing, as `F.interpolate(..., mode="bilinear", align_corners=False)`) to 299x299; the network takes them in
[-1, 1] (pytorch-fid maps its [0, 1] input there by `2x - 1`; diffjax images already live in [-1, 1]). The feature
is the global average of `Mixed_7c`, before the (unused) 1008-way classifier.

Weight file format: an uncompressed or compressed `.npz` whose keys are the flattened Flax variable paths joined
by "/", one array per key, float32:

    params/<Block>/conv/kernel            (kh, kw, c_in, c_out)  HWIO
    params/<Block>/bn/scale, bn/bias       (c_out,)
    batch_stats/<Block>/bn/mean, bn/var    (c_out,)

with `<Block>` a pytorch-fid module path with "." replaced by "/", e.g. `Conv2d_1a_3x3` or `Mixed_5b/branch1x1`
(`params/Mixed_5b/branch1x1/conv/kernel`). Write one with `save_inception_npz`; read it with
`load_inception_npz`. Convert the pytorch-fid weights offline (torch is needed only for this step):

    import numpy as np, torch
    from diffjax.evaluation import convert_pytorch_fid_state_dict, save_inception_npz
    sd = torch.load("pt_inception-2015-12-05-6726825d.pth", map_location="cpu")
    save_inception_npz(convert_pytorch_fid_state_dict({k: v.numpy() for k, v in sd.items()}), "inception_fid.npz")

References:
    Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision".
    Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium".
    Seitzer, pytorch-fid (`pytorch_fid/inception.py`).
"""

from __future__ import annotations

import functools
import os
import zipfile
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

INCEPTION_SIZE = 299
FEATURE_DIM = 2048
CONVERT_HINT = ("convert pt_inception-2015-12-05-6726825d.pth (pytorch-fid) offline with "
                "diffjax.evaluation.convert_pytorch_fid_state_dict and save_inception_npz")


class BasicConv2d(nn.Module):
    """Convolution without bias, BatchNorm (eps 1e-3, running statistics), ReLU."""

    features: int
    kernel_size: tuple[int, int]
    strides: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x):
        ph, pw = self.padding
        x = nn.Conv(self.features, self.kernel_size, strides=self.strides, padding=((ph, ph), (pw, pw)),
                    use_bias=False, precision=jax.lax.Precision.HIGHEST, name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


def _avg_pool(x):
    """3x3 stride-1 average pool whose mean excludes the padding (the FID graph's `count_include_pad=False`)."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool(x, stride=2, pad=0):
    return nn.max_pool(x, (3, 3), strides=(stride, stride), padding=((pad, pad), (pad, pad)))


class InceptionA(nn.Module):
    """`FIDInceptionA`: 1x1, 5x5, double 3x3 and average-pool branches at 35x35."""

    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv2d(64, (1, 1), name="branch1x1")(x)
        b5 = BasicConv2d(48, (1, 1), name="branch5x5_1")(x)
        b5 = BasicConv2d(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
        b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = BasicConv2d(self.pool_features, (1, 1), name="branch_pool")(_avg_pool(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """`InceptionB` (`Mixed_6a`): the 35x35 -> 17x17 reduction."""

    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(384, (3, 3), strides=2, name="branch3x3")(x)
        bd = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = BasicConv2d(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool(x)], axis=-1)


class InceptionC(nn.Module):
    """`FIDInceptionC`: factorised 7x7 branches with `channels_7x7` inner channels at 17x17."""

    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c7 = self.channels_7x7
        b1 = BasicConv2d(192, (1, 1), name="branch1x1")(x)
        b7 = BasicConv2d(c7, (1, 1), name="branch7x7_1")(x)
        b7 = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = BasicConv2d(c7, (1, 1), name="branch7x7dbl_1")(x)
        bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = BasicConv2d(192, (1, 1), name="branch_pool")(_avg_pool(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """`InceptionD` (`Mixed_7a`): the 17x17 -> 8x8 reduction."""

    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(192, (1, 1), name="branch3x3_1")(x)
        b3 = BasicConv2d(320, (3, 3), strides=2, name="branch3x3_2")(b3)
        b7 = BasicConv2d(192, (1, 1), name="branch7x7x3_1")(x)
        b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv2d(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool(x)], axis=-1)


class InceptionE(nn.Module):
    """`FIDInceptionE_1` (average pool without padding) or, with `max_pool`, `FIDInceptionE_2` at 8x8."""

    max_pool: bool = False

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv2d(320, (1, 1), name="branch1x1")(x)
        b3 = BasicConv2d(384, (1, 1), name="branch3x3_1")(x)
        b3 = jnp.concatenate([BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                              BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
        bd = BasicConv2d(448, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv2d(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                              BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
        pooled = _max_pool(x, stride=1, pad=1) if self.max_pool else _avg_pool(x)
        bp = BasicConv2d(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
    """The FID InceptionV3 up to pool3: `(n, 299, 299, 3)` in [-1, 1] -> `(n, 2048)` (any size >= 75 runs)."""

    @nn.compact
    def __call__(self, x):
        x = BasicConv2d(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv2d(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv2d(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool(x)
        x = BasicConv2d(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = BasicConv2d(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool(x)
        x = InceptionA(32, name="Mixed_5b")(x)
        x = InceptionA(64, name="Mixed_5c")(x)
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        x = InceptionC(128, name="Mixed_6b")(x)
        x = InceptionC(160, name="Mixed_6c")(x)
        x = InceptionC(160, name="Mixed_6d")(x)
        x = InceptionC(192, name="Mixed_6e")(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(name="Mixed_7b")(x)
        x = InceptionE(max_pool=True, name="Mixed_7c")(x)
        return x.mean(axis=(1, 2))


def preprocess(images):
    """NHWC images in [-1, 1] with 1 or 3 channels -> `(n, 299, 299, 3)` float32 (grey repeated, bilinear resize)."""
    images = jnp.asarray(images, jnp.float32)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"expected NHWC images with 1 or 3 channels, got shape {images.shape}")
    if images.shape[-1] == 1:
        images = jnp.repeat(images, 3, axis=-1)
    return jax.image.resize(images, (images.shape[0], INCEPTION_SIZE, INCEPTION_SIZE, 3), "bilinear",
                            antialias=False)


def variable_shapes() -> dict:
    """The `{"params": ..., "batch_stats": ...}` tree of `jax.ShapeDtypeStruct`s, without allocating weights."""
    x = jax.ShapeDtypeStruct((1, INCEPTION_SIZE, INCEPTION_SIZE, 3), jnp.float32)
    return jax.eval_shape(InceptionV3().init, jax.random.key(0), x)


@jax.jit
def _pool3(variables, x):
    return InceptionV3().apply(variables, x)


_preprocess = jax.jit(preprocess)


def make_feature_fn(variables) -> Callable:
    """The jitted batched extractor `images (n, H, W, 1 or 3) in [-1, 1] -> (n, 2048)` for `variables`.

    Resizing and the network are jitted apart, with the weights as an argument rather than a baked-in
    constant, so the network compiles once per batch size whatever the image size and weights.
    """
    variables = jax.tree.map(jnp.asarray, variables)
    return lambda images: _pool3(variables, _preprocess(images))


def save_inception_npz(variables, path) -> None:
    """Writes `variables` as an `.npz` keyed by "/"-joined Flax paths (the format in the module docstring)."""
    flat = traverse_util.flatten_dict(jax.device_get(dict(variables)), sep="/")
    with open(os.fspath(path), "wb") as f:
        np.savez(f, **{k: np.asarray(v, np.float32) for k, v in flat.items()})


def _check_variables(variables, source: str) -> dict:
    """`variables` as nested dicts after checking its keys and shapes against the network's."""
    expected = traverse_util.flatten_dict(variable_shapes(), sep="/")
    got = traverse_util.flatten_dict(variables, sep="/")
    missing, unexpected = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{source} does not hold the FID InceptionV3 variables ({len(missing)} missing, e.g. "
                         f"{missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]}); {CONVERT_HINT}")
    bad = [(k, got[k].shape, expected[k].shape) for k in expected if tuple(got[k].shape) != expected[k].shape]
    if bad:
        raise ValueError(f"{source} has {len(bad)} arrays of the wrong shape, e.g. {bad[:3]}; {CONVERT_HINT}")
    return traverse_util.unflatten_dict(got, sep="/")


def load_inception_npz(path) -> dict:
    """The variables `{"params": ..., "batch_stats": ...}` (float32 numpy) from an `.npz` written as documented.

    Raises:
        FileNotFoundError: when `path` names no file.
        ValueError: when the file is not a readable `.npz` of the FID InceptionV3 variables.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no InceptionV3 weights file at {path!r}: {CONVERT_HINT}")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with data:
            flat = {k: np.asarray(data[k], np.float32) for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"cannot read InceptionV3 weights from {path!r} as .npz ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}); {CONVERT_HINT}") from None
    return _check_variables(traverse_util.unflatten_dict(flat, sep="/"), repr(path))


_TORCH_BN = {"weight": ("params", "scale"), "bias": ("params", "bias"),
             "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}


def convert_pytorch_fid_state_dict(state_dict: dict[str, np.ndarray]) -> dict:
    """pytorch-fid's `FIDInceptionV3` state dict (numpy arrays) -> Flax variables `{"params", "batch_stats"}`.

    Names map one to one, "." becoming a level: `<block>.conv.weight` `(O, I, kh, kw)` becomes
    `params/<block>/conv/kernel` `(kh, kw, I, O)`; `<block>.bn.weight/bias/running_mean/running_var` become
    `params/<block>/bn/scale`, `params/<block>/bn/bias`, `batch_stats/<block>/bn/mean`, `batch_stats/<block>/bn/var`,
    e.g. `Mixed_5b.branch1x1.conv.weight` -> `params/Mixed_5b/branch1x1/conv/kernel`. The classifier (`fc.*`) and
    `num_batches_tracked` counters are dropped. Keys of the `pytorch_fid.InceptionV3` wrapper (`blocks.0.0...`) are
    not accepted: convert the `.pth` file, which holds the bare `FIDInceptionV3` state dict.

    Raises:
        ValueError: for names or shapes that do not belong to the network.
    """
    flat = {}
    for name, value in state_dict.items():
        parts = name.split(".")
        if parts[0] == "fc" or parts[-1] == "num_batches_tracked":
            continue
        value = np.asarray(value, np.float32)
        if parts[-2:] == ["conv", "weight"] and value.ndim == 4:
            flat[("params", *parts[:-1], "kernel")] = np.ascontiguousarray(value.transpose(2, 3, 1, 0))
        elif len(parts) >= 2 and parts[-2] == "bn" and parts[-1] in _TORCH_BN:
            collection, leaf = _TORCH_BN[parts[-1]]
            flat[(collection, *parts[:-1], leaf)] = value
        else:
            raise ValueError(f"unexpected pytorch-fid state-dict entry {name!r} with shape {value.shape}")
    return _check_variables(traverse_util.unflatten_dict(flat), "the pytorch-fid state dict")


@functools.cache
def parameter_count() -> int:
    """The number of trainable parameters (kernels and BatchNorm scale/bias, not running statistics)."""
    return sum(int(np.prod(s.shape)) for s in jax.tree.leaves(variable_shapes()["params"]))
