"""The Fréchet distance between Gaussian fits of features, and FID scaffolding for a pluggable feature extractor.

`FD^2 = |mu_1 - mu_2|^2 + tr(C_1) + tr(C_2) - 2 tr((C_1^{1/2} C_2 C_1^{1/2})^{1/2})`, the squared 2-Wasserstein
distance between `N(mu_1, C_1)` and `N(mu_2, C_2)` (Dowson & Landau 1982); with InceptionV3 pool features it
is FID (Heusel et al. 2017). Everything runs on the host in float64.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from ._inception import CONVERT_HINT, load_inception_npz, make_feature_fn

INCEPTION_FILE = "pt_inception-2015-12-05 weights converted to .npz (the 2048-d pool3 InceptionV3 of TTUR/clean-fid)"


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric PSD matrix (negative round-off eigenvalues clipped to 0)."""
    w, v = np.linalg.eigh(cov)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """The Fréchet distance `FD^2` (a squared distance, as in FID) between `N(mu1, cov1)` and `N(mu2, cov2)`.

    The cross term is `tr((C_1^{1/2} C_2 C_1^{1/2})^{1/2})`, computed from two symmetric eigendecompositions,
    which stays real and stable for singular covariances (unlike `sqrtm(C_1 C_2)`). The result is clipped
    at zero against round-off.

    Args:
        mu1, mu2: `(k,)` means (scalars allowed for k = 1).
        cov1, cov2: `(k, k)` covariances (scalars allowed for k = 1).

    Returns:
        A Python float. In 1-D it is `(mu1 - mu2)^2 + (s1 - s2)^2`.

    Raises:
        ValueError: for mismatched shapes.
    """
    mu1, mu2 = (np.atleast_1d(np.asarray(m, dtype=np.float64)) for m in (mu1, mu2))
    cov1, cov2 = (np.atleast_2d(np.asarray(c, dtype=np.float64)) for c in (cov1, cov2))
    k = mu1.shape[0]
    if mu1.shape != (k,) or mu2.shape != (k,) or cov1.shape != (k, k) or cov2.shape != (k, k):
        raise ValueError(f"expected means (k,) and covariances (k, k) with one k, got {mu1.shape}, {cov1.shape}, "
                         f"{mu2.shape}, {cov2.shape}")
    s1 = _psd_sqrt(0.5 * (cov1 + cov1.T))
    middle = s1 @ (0.5 * (cov2 + cov2.T)) @ s1
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (middle + middle.T)), 0.0, None)).sum()
    fd = np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * cross
    return float(max(fd, 0.0))


def gaussian_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """The mean `(k,)` and unbiased covariance `(k, k)` of `features` `(n, k)`, in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (n, k) with n >= 2, got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _statistics(images_or_stats, feature_fn, batch_size):
    if isinstance(images_or_stats, tuple):
        return images_or_stats
    x = np.asarray(images_or_stats)
    feats = [np.asarray(feature_fn(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
    return gaussian_statistics(np.concatenate(feats))


def inception_feature_fn(inception_path) -> Callable:
    """The InceptionV3 pool3 feature extractor `images (n, H, W, 1 or 3) in [-1, 1] -> (n, 2048)` from local weights.

    The FID network of `_inception.InceptionV3`, jitted and batched; grey images are repeated to 3 channels and
    every image is resized bilinearly to 299x299. `inception_path` is an `.npz` in the format documented in
    `diffjax/evaluation/_inception.py` (convert pytorch-fid's `.pth` with `convert_pytorch_fid_state_dict`).

    Raises:
        FileNotFoundError: when `inception_path` is None or names no file.
        ValueError: when the file is not a readable `.npz` of the FID InceptionV3 variables.
    """
    if inception_path is None or not os.path.isfile(os.fspath(inception_path)):
        where = "inception_path=None" if inception_path is None else f"no file at {os.fspath(inception_path)!r}"
        raise FileNotFoundError(f"FID needs local InceptionV3 weights ({where}): provide inception_path=<file>, the "
                                f"{INCEPTION_FILE}; {CONVERT_HINT}; or pass feature_fn=<images -> (n, k) features>")
    return make_feature_fn(load_inception_npz(inception_path))


def fid(samples, reference, inception_path=None, *, feature_fn: Callable | None = None, batch_size: int = 250) -> float:
    """The Fréchet distance between feature statistics of `samples` and `reference`.

    Args:
        samples: `(n, H, W, C)` images in [-1, 1].
        reference: images like `samples`, or precomputed `(mu, cov)` statistics (e.g. cached for a dataset).
        inception_path: local InceptionV3 weights, used when `feature_fn` is None (see `inception_feature_fn`).
        feature_fn: `images (b, H, W, C) -> (b, k)` features; any extractor plugs in here.
        batch_size: images per `feature_fn` call.

    Raises:
        FileNotFoundError: in one line naming the weights file, when neither weights nor `feature_fn` are given.
    """
    if feature_fn is None:
        feature_fn = inception_feature_fn(inception_path)
    mu1, cov1 = _statistics(samples, feature_fn, batch_size)
    mu2, cov2 = _statistics(reference, feature_fn, batch_size)
    return frechet_distance(mu1, cov1, mu2, cov2)
