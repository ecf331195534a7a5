"""Cold Diffusion's cumulative Gaussian blur plus a small noise, article (十一) item 2."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_knobs
from ._corruption import AdditiveCorruption, integer_time
from ._layout import broadcast_channels, channel_means, spatial_axes


def gaussian_kernel(size: int, std: float) -> np.ndarray:
    """The normalised 1-D Gaussian kernel of odd length `size` and standard deviation `std` (float64)."""
    offsets = np.arange(size, dtype=np.float64) - size // 2
    weights = np.exp(-0.5 * (offsets / std) ** 2)
    return weights / weights.sum()


def blur_matrix(length: int, kernel: np.ndarray) -> np.ndarray:
    """The `(length, length)` matrix of a 1-D convolution with `kernel` and symmetric (half-sample) padding.

    Symmetric padding (`d c b a | a b c d | d c b a`) mirrors the signal about the half-sample boundary, so the
    extended signal is even and periodic: a symmetric kernel then maps it to another such signal with the same
    sum over a period. The matrix is symmetric and doubly stochastic, and blurring keeps the mean exactly.
    """
    radius = kernel.shape[0] // 2
    rows = np.arange(length)
    matrix = np.zeros((length, length), dtype=np.float64)
    for k, weight in enumerate(kernel):
        index = np.mod(rows + k - radius, 2 * length)
        index = np.where(index >= length, 2 * length - 1 - index, index)
        np.add.at(matrix, (rows, index), weight)
    return matrix


@functools.lru_cache(maxsize=16)
def cumulative_blur_matrices(
    length: int, num_steps: int, kernel_size: int, std_start: float, std_step: float
) -> np.ndarray:
    """`M_t = K_t ... K_1` for t = 0..T (`M_0 = I`), `K_t` the blur of std `std_start + std_step (t - 1)`.

    Returns a float64 array of shape `(T + 1, length, length)`.
    """
    out = np.empty((num_steps + 1, length, length), dtype=np.float64)
    out[0] = np.eye(length)
    for t in range(1, num_steps + 1):
        out[t] = blur_matrix(length, gaussian_kernel(kernel_size, std_start + std_step * (t - 1))) @ out[t - 1]
    return out


@dataclasses.dataclass(frozen=True)
class ColdBlur(AdditiveCorruption):
    """`x_t = B_t x_0 + sigma eps` (t >= 1), `B_t` the cumulative Gaussian blur of Cold Diffusion (article (十一)).

    `B_t = G_t ... G_1` blurs each channel with a `kernel_size` Gaussian whose standard deviation grows with the
    step, `blur_std_start + blur_std_step (t - 1)` pixels (Cold Diffusion's CIFAR-10 routine: kernel 11,
    0.35 + 0.01 i for its 0-based step i). Each `G` pads symmetrically (half-sample mirror), which keeps every
    channel's mean exactly (Cold Diffusion pads by whole-sample reflection, which does not). `B_t` is applied as
    one precomputed matrix per spatial axis, so any t costs the same. Images `(B, H, W, C)` are blurred along H and
    W; `(B, L, C)` and `(B, D)` batches along their one spatial axis, so a 2-D point `(B, 2)` shrinks towards the
    mean of its two coordinates.

    `sigma = cold_noise_sigma` (default 0.01: about one 8-bit level of data in [-1, 1], invisible in x_t, yet it
    makes `F_t` invertible in its noise, so article (十)'s deterministic reverse, which is Cold Diffusion's
    "improved" sampler, is the exact inverse; Su recommends sigma > 0 and Cold Diffusion's own generation adds
    noise to its prior). sigma = 0 is the noise-free Cold Diffusion.

    The prior: after enough blur, `x_T` is close to a flat image of the data's per-channel means, plus noise.
    `fit_blur_prior(blur, data)` fits a Gaussian to the per-channel means of the data (which the blur keeps
    exactly), as Cold Diffusion samples its flat starting images from a mixture fitted to them;
    `prior_sample` draws a flat image from it and adds `sigma eps`. Without a fitted prior, pass `x_init`.

    Attributes:
        num_steps: T (300).
        kernel_size: odd kernel length (11).
        blur_std_start, blur_std_step: the per-step standard deviation schedule in pixels (0.35, 0.01).
        cold_noise_sigma: the noise scale sigma for t >= 1 (0.01).
        prior_mean, prior_chol: the fitted Gaussian of the per-channel means (from `fit_blur_prior`).
    """

    num_steps: int = 300
    kernel_size: int = 11
    blur_std_start: float = 0.35
    blur_std_step: float = 0.01
    cold_noise_sigma: float = 0.01
    prior_mean: tuple[float, ...] | None = None
    prior_chol: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self):
        if int(self.num_steps) != self.num_steps or self.num_steps < 1:
            raise ValueError(f"cold_blur num_steps must be a positive integer, got {self.num_steps!r}")
        if int(self.kernel_size) != self.kernel_size or self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"cold_blur kernel_size must be a positive odd integer, got {self.kernel_size!r}")
        if self.blur_std_start <= 0 or self.blur_std_step < 0:
            raise ValueError(
                "cold_blur needs blur_std_start > 0 and blur_std_step >= 0, got "
                f"{self.blur_std_start} and {self.blur_std_step}"
            )
        if self.cold_noise_sigma < 0:
            raise ValueError(f"cold_noise_sigma must be >= 0, got {self.cold_noise_sigma}")
        if (self.prior_mean is None) != (self.prior_chol is None):
            raise ValueError("set prior_mean and prior_chol together; use fit_blur_prior(blur, data)")

    @property
    def invertible(self) -> bool:
        return self.cold_noise_sigma > 0

    def matrices(self, length: int, dtype) -> jax.Array:
        """`B_t` along one spatial axis of `length`, for t = 0..T: `(T + 1, length, length)`."""
        table = cumulative_blur_matrices(
            int(length),
            int(self.num_steps),
            int(self.kernel_size),
            float(self.blur_std_start),
            float(self.blur_std_step),
        )
        return jnp.asarray(table, dtype=dtype)

    def degrade(self, x0, t):
        """`B_t x_0`, blurring each spatial axis with its matrix."""
        t = integer_time(t)
        x = x0
        for axis in spatial_axes(x0.ndim):
            m = self.matrices(x0.shape[axis], x0.dtype)[t]
            x = jnp.moveaxis(x, axis, -1)
            if t.ndim == 0:
                x = jnp.einsum("...j,ij->...i", x, m, precision=jax.lax.Precision.HIGHEST)
            else:
                x = jnp.einsum("b...j,bij->b...i", x, m, precision=jax.lax.Precision.HIGHEST)
            x = jnp.moveaxis(x, -1, axis)
        return x

    def noise_std(self, t):
        t = integer_time(t)
        return jnp.where(t > 0, self.cold_noise_sigma, 0.0).astype(jnp.result_type(float))

    def prior_sample(self, key, shape, dtype=None):
        """A flat image of per-channel means from the fitted Gaussian, plus `sigma eps`."""
        if self.prior_mean is None:
            raise ValueError(
                "cold_blur has no fitted prior: use blur = dj.udm.fit_blur_prior(blur, data), or pass "
                "x_init to dj.sample"
            )
        dtype = jnp.result_type(float) if dtype is None else dtype
        mean = jnp.asarray(self.prior_mean, dtype)
        chol = jnp.asarray(self.prior_chol, dtype)
        expected = 1 if len(shape) == 2 else shape[-1]
        if mean.shape[0] != expected:
            raise ValueError(
                f"the fitted prior has {mean.shape[0]} channel(s) but the sample shape {tuple(shape)} "
                f"has {expected}; refit with fit_blur_prior on data of this shape"
            )
        key_mean, key_eps = jax.random.split(key)
        means = mean + jax.random.normal(key_mean, (shape[0], mean.shape[0]), dtype) @ chol.T
        return broadcast_channels(means, shape) + self.cold_noise_sigma * jax.random.normal(key_eps, shape, dtype)


def fit_blur_prior(blur: ColdBlur, data, jitter: float = 1e-6) -> ColdBlur:
    """`blur` with its prior fitted to `data` `(N, ...)`: a Gaussian over the per-channel means.

    Blurring keeps each channel's mean, so the per-channel means of `x_T` are those of the data; their mean and
    covariance (plus `jitter` on the diagonal) define the prior. Runs on the host, once, before sampling.
    """
    means = np.asarray(channel_means(jnp.asarray(data)), dtype=np.float64)
    if means.shape[0] < 2:
        raise ValueError("fit_blur_prior needs at least 2 data examples")
    cov = np.atleast_2d(np.cov(means, rowvar=False)) + jitter * np.eye(means.shape[1])
    chol = np.linalg.cholesky(cov)
    return dataclasses.replace(
        blur,
        prior_mean=tuple(float(v) for v in means.mean(0)),
        prior_chol=tuple(tuple(float(v) for v in row) for row in chol),
    )


def cold_blur(**knobs) -> ColdBlur:
    """The cumulative-blur corruption (knobs: num_steps=300, kernel_size=11, blur_std_start=0.35,
    blur_std_step=0.01, cold_noise_sigma=0.01); fit its prior with `fit_blur_prior`.

    Raises:
        ValueError: for an unknown knob, naming the valid ones.
    """
    check_knobs("corruption 'cold_blur'", knobs, [f.name for f in dataclasses.fields(ColdBlur)])
    return ColdBlur(**knobs)
