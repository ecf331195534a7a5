"""Sample metrics for the digits set from a small CNN trained in-project on the digits train split.

The classifier trains deterministically in seconds on a CPU and is cached to a file keyed by
`DIGITS_CLASSIFIER_VERSION`, so it trains once per machine. Its penultimate-layer features play the role
Inception's pool features play in FID.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from ._frechet import frechet_distance, gaussian_statistics

# Bump when the network, its training or the data split changes, so stale caches are not reused.
DIGITS_CLASSIFIER_VERSION = "digits-cnn-2"
NUM_CLASSES = 10
COVERAGE_FRACTION = 0.02


def _patches(h, stride=1):
    """The 3x3 'SAME' neighbourhoods of NHWC `h` stacked on channels, `(n, H/stride, W/stride, 9C)`.

    A convolution is then a `Dense` layer on patches: plain matmuls, which XLA runs far faster on CPU than
    convolution gradients inside a scan.
    """
    height, width = h.shape[1:3]
    padded = jnp.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return jnp.concatenate([padded[:, i:i + height:stride, j:j + width:stride] for i in range(3) for j in range(3)],
                           axis=-1)


class DigitsNet(nn.Module):
    """A small CNN on 8x8x1 images in [-1, 1]: 3x3 convolutions of 16 and 32 channels (the second with stride 2),
    dropout, a `features`-wide penultimate layer and 10 logits. Returns `(logits, features)`."""

    features: int = 64
    dropout: float = 0.3

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.gelu(nn.Dense(16)(_patches(x)))
        h = nn.gelu(nn.Dense(32)(_patches(h, stride=2)))
        h = nn.Dropout(self.dropout, deterministic=not train)(h.reshape((h.shape[0], -1)))
        feats = nn.gelu(nn.Dense(self.features)(h))
        return nn.Dense(NUM_CLASSES)(feats), feats


def _random_shift(key, x):
    """Shifts each 8x8 image by -1, 0 or +1 pixel per axis, filling with background (-1)."""
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-1.0)
    offsets = jax.random.randint(key, (x.shape[0], 2), 0, 3)
    return jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (8, 8, 1)))(padded, offsets)


_NET = DigitsNet()


@jax.jit
def _logits_and_features(params, x):
    return _NET.apply({"params": params}, x)


def _as_digit_images(images) -> jax.Array:
    """`(n, H, W[, 1])` or `(n, 64)` images in [-1, 1] as `(n, 8, 8, 1)`, clipped to [-1, 1] and resized."""
    x = jnp.asarray(images, dtype=jnp.float32)
    if x.ndim == 2 and x.shape[1] == 64:
        x = x.reshape(-1, 8, 8, 1)
    elif x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] != 1:
        raise ValueError(f"digit images must be (n, H, W), (n, H, W, 1) or (n, 64), got shape {x.shape}")
    x = jnp.clip(x, -1.0, 1.0)  # as when saved as an image
    height, width = x.shape[1:3]
    if height % 8 == 0 and width % 8 == 0:  # an integer factor: average f x f blocks (undoes 8 -> 8f upsampling best)
        x = x.reshape(x.shape[0], 8, height // 8, 8, width // 8, 1).mean(axis=(2, 4))
    else:
        x = jax.image.resize(x, (x.shape[0], 8, 8, 1), method="bilinear", antialias=True)
    return x


def _digits_split(split):
    from ..data import load_dataset

    arrays = load_dataset("digits", split=split).arrays()
    return arrays["x"], arrays["label"]


def train_digits_classifier(*, seed: int = 0, steps: int = 600, batch_size: int = 128, learning_rate: float = 3e-3):
    """Trains `DigitsNet` on the digits train split, deterministically: AdamW with a cosine schedule, random
    one-pixel shifts and dropout, all steps in one `lax.scan` (seconds on a CPU).

    Returns `(params, test_accuracy)` with params as nested NumPy arrays.
    """
    x, y = _digits_split("train")
    idx = np.stack([np.random.default_rng((seed, s)).choice(len(x), batch_size, replace=False) for s in range(steps)])
    key_init, key_train = jax.random.split(jax.random.key(seed))
    params = _NET.init(key_init, jnp.zeros((1, 8, 8, 1)))["params"]
    tx = optax.adamw(optax.cosine_decay_schedule(learning_rate, steps), weight_decay=1e-4)
    x_all, y_all = jnp.asarray(x), jnp.asarray(y)

    def loss_fn(p, batch_idx, key):
        key_shift, key_drop = jax.random.split(key)
        xb = _random_shift(key_shift, x_all[batch_idx])
        logits, _ = _NET.apply({"params": p}, xb, train=True, rngs={"dropout": key_drop})
        return optax.softmax_cross_entropy_with_integer_labels(logits, y_all[batch_idx]).mean()

    def step(carry, inputs):
        p, opt_state = carry
        batch_idx, s = inputs
        grads = jax.grad(loss_fn)(p, batch_idx, jax.random.fold_in(key_train, s))
        updates, opt_state = tx.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), None

    run = jax.jit(lambda carry, inputs: jax.lax.scan(step, carry, inputs)[0][0])
    params = run((params, tx.init(params)), (jnp.asarray(idx), jnp.arange(steps)))
    params = jax.tree.map(np.asarray, jax.device_get(params))
    x_test, y_test = _digits_split("test")
    logits, _ = _logits_and_features(params, jnp.asarray(x_test))
    accuracy = float(np.mean(np.asarray(jnp.argmax(logits, -1)) == y_test))
    return params, accuracy


@dataclasses.dataclass(frozen=True, eq=False)
class DigitsClassifier:
    """A trained `DigitsNet` with the Gaussian statistics of its features on the digits test split.

    Attributes:
        params: the network weights.
        test_accuracy: accuracy on the 297 test digits.
        reference_stats: `(mu, cov)` of the penultimate features of the test split.
        from_cache: whether the weights were read from `path` rather than trained in this call.
        path: the cache file.
    """

    params: dict
    test_accuracy: float
    reference_stats: tuple
    from_cache: bool
    path: str

    def logits_and_features(self, images) -> tuple[np.ndarray, np.ndarray]:
        """`(n, 10)` logits and `(n, 64)` penultimate features of images in [-1, 1] (any size, resized to 8x8)."""
        logits, feats = _logits_and_features(self.params, _as_digit_images(images))
        return np.asarray(logits), np.asarray(feats)

    def predict(self, images) -> np.ndarray:
        """The predicted class `(n,)` of each image."""
        return self.logits_and_features(images)[0].argmax(-1)


def default_cache_dir() -> str:
    """`$XDG_CACHE_HOME/diffjax`, else `~/.cache/diffjax`."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "diffjax")


def _read_cache(path):
    try:
        with open(path, "rb") as f:
            state = serialization.msgpack_restore(f.read())
        if state.get("version") != DIGITS_CLASSIFIER_VERSION:
            return None
        return state["params"], float(state["test_accuracy"])
    except Exception as err:  # a corrupt or foreign file: retrain and overwrite it
        warnings.warn(f"ignoring unreadable digits-classifier cache {path!r} ({err}); retraining", stacklevel=3)
        return None


def _write_cache(path, params, accuracy):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    state = {"version": DIGITS_CLASSIFIER_VERSION, "params": params, "test_accuracy": accuracy}
    blob = serialization.msgpack_serialize(state)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".digits-")
    with os.fdopen(fd, "wb") as f:
        f.write(blob)
    os.replace(tmp, path)  # atomic: concurrent processes never read a half-written file


def load_digits_classifier(path=None, *, retrain: bool = False) -> DigitsClassifier:
    """The digits classifier: read from the cache file `path`, or trained (seconds) and written there.

    Args:
        path: the cache file; default `default_cache_dir()/<DIGITS_CLASSIFIER_VERSION>.msgpack`. A file written
            under another version is replaced.
        retrain: train even when the cache is valid.
    """
    if path is None:
        path = os.path.join(default_cache_dir(), f"{DIGITS_CLASSIFIER_VERSION}.msgpack")
    path = os.fspath(path)
    cached = None if retrain or not os.path.isfile(path) else _read_cache(path)
    if cached is None:
        params, accuracy = train_digits_classifier()
        _write_cache(path, params, accuracy)
    else:
        params, accuracy = cached
    params = jax.tree.map(np.asarray, params)
    x_test, _ = _digits_split("test")
    _, feats = _logits_and_features(params, jnp.asarray(x_test))
    return DigitsClassifier(params, accuracy, gaussian_statistics(np.asarray(feats)), cached is not None, path)


def digits_metrics(samples, classifier: DigitsClassifier) -> dict:
    """Classifier-based metrics of digit `samples` `(n, H, W[, 1])` in [-1, 1] (clipped, resized to 8x8).

    Returns a dict of Python numbers:

    * `confidence`: the mean max softmax probability (sharp, recognisable digits score near 1);
    * `class_coverage`: the number of classes predicted for at least 2% of the samples (10 when no mode is lost);
    * `class_entropy`: entropy of the predicted-class histogram in nats (`log 10 = 2.303` when uniform);
    * `frechet_distance`: the Fréchet distance between Gaussian fits of the classifier's penultimate features
      on the samples and on the 297 test digits (a digits analogue of FID; it has a positive floor for
      finite `n`, so compare at equal `n`).
    """
    logits, feats = classifier.logits_and_features(samples)
    if logits.shape[0] < 2:
        raise ValueError("digits_metrics needs at least 2 samples")
    logits = logits.astype(np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    hist = np.bincount(probs.argmax(-1), minlength=NUM_CLASSES) / len(probs)
    nonzero = hist[hist > 0]
    return {
        "confidence": float(probs.max(-1).mean()),
        "class_coverage": int((hist >= COVERAGE_FRACTION).sum()),
        "class_entropy": float(-(nonzero * np.log(nonzero)).sum()) + 0.0,  # no -0.0
        "frechet_distance": frechet_distance(*gaussian_statistics(feats), *classifier.reference_stats),
    }
