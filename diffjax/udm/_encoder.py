"""The UDM encoder model, article (十一) item 5: a Gaussian diffusion of a trained encoding F(x_0).

`x_t = abar_t F(x_0) + bbar_t eps`.

The network has two methods. The encoder `F_phi(x_0)` is called as `apply_fn(params, x0, t0, cond, method="encode")`
with `t0 = 0` (data time; an encoder ignores it), the decoder `q(x_0 | x_t)` as `apply_fn(params, z_t, t, cond)` and
returns x̂_0 (Gaussian q, so the L2 loss). Both are trained by `-log q(x_0 | x_t)`.

With `latent_norm` (default) the encoding is scaled to unit root-mean-square per example. Without it, the loss
rewards an encoder that grows its output until `abar_T F(x_0)` outweighs the noise, and `x_T` would no longer be
the N(0, I) that sampling starts from (Su: the end point of a parametrised forward process must still be pure noise).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from .._checks import check_choice, check_knobs
from ._gaussian import UDMGaussian
from ._losses import REDUCTIONS, draw_steps, reduce_error
from ._reverse import UDM


def unit_rms(z):
    """`z` scaled to unit root-mean-square over its non-batch axes, per example."""
    axes = tuple(range(1, z.ndim))
    return z * jax.lax.rsqrt(jnp.mean(z**2, axis=axes, keepdims=True) + 1e-12)


def data_time(x):
    """The step t = 0 (data) for each example of `x`: the time the encoder is called at."""
    return jnp.zeros((x.shape[0],), jnp.int32)


def _check_gaussian(what: str, corruption) -> None:
    if not isinstance(corruption, UDMGaussian):
        raise ValueError(
            f"{what} diffuses the encoding with Gaussian noise: it needs dj.udm.udm_gaussian(...), got "
            f"{type(corruption).__name__}"
        )


@dataclasses.dataclass(frozen=True)
class EncoderLoss:
    """`E_{t, x_0, eps} ||x_0 - G_t(abar_t F_phi(x_0) + bbar_t eps)||^2`, trained through encoder and decoder.

    Call it as `loss(key, apply_fn, params, x0, cond=None)` with `apply_fn(params, x, t, cond=None, method=None)`
    (see the module docstring); t ~ U{1..T} and eps from `key`; the batch mean.

    Attributes:
        corruption: the Gaussian schedule of the latent (`udm_gaussian`).
        latent_norm: scale the encoding to unit RMS per example (default True; see the module docstring).
        reduction: `mean` or `sum` of the squared error over the non-batch axes.
    """

    corruption: UDMGaussian
    latent_norm: bool = True
    reduction: str = "mean"

    def __post_init__(self):
        _check_gaussian("objective 'udm_encoder'", self.corruption)
        check_choice("reduction", self.reduction, REDUCTIONS)

    def __call__(self, key, apply_fn, params, x0, cond=None):
        x0 = jnp.asarray(x0)
        z0 = apply_fn(params, x0, data_time(x0), cond, method="encode")
        z0 = unit_rms(z0) if self.latent_norm else z0
        key_t, key_eps = jax.random.split(key)
        t = draw_steps(key_t, self.corruption, x0.shape[0])
        z_t = self.corruption.forward(z0, t, self.corruption.sample_noise(key_eps, z0.shape, z0.dtype))
        x0_hat = apply_fn(params, z_t, t, cond)
        return jnp.mean(reduce_error(x0_hat - x0, "l2", self.reduction))


def udm_encoder(corruption: UDMGaussian, **knobs) -> EncoderLoss:
    """The encoder-model loss (knobs: latent_norm=True, reduction='mean')."""
    check_knobs("objective 'udm_encoder'", knobs, ("latent_norm", "reduction"))
    return EncoderLoss(corruption, **knobs)


@dataclasses.dataclass(frozen=True)
class UDMEncoder(UDM):
    """Samples the encoder model: the UDM reverse process in the latent, decoding and re-encoding x̂_0 each step.

    From `z_T ~ N(0, I)` (the sample `shape` is the latent's), step t -> s decodes `x̂_0 = G_t(z_t)`, encodes it,
    `ẑ_0 = F_phi(x̂_0)`, and moves with the Gaussian UDM kernel on ẑ_0 (`reverse`, `sigma_tilde`, as `UDM`). The
    last grid step returns the decoder's x̂_0 at that step (article (十一): at t = 1 return x̂_0 ~ q(x_0 | x_1)).
    The predictor has kind `x0`; `predictor(z, t, **cond)` decodes and `predictor(x, t0, method="encode", **cond)`
    encodes (so its `fn` takes a `method` keyword). `info["nfe"]` counts both: `2 steps - 1`.

    Attributes:
        latent_norm: as in the loss `udm_encoder`; must match training.
    """

    latent_norm: bool = True

    name = "udm_encoder"

    def validate(self, process, predictor):
        _check_gaussian("sampler 'udm_encoder'", process)
        if predictor.kind != "x0":
            raise ValueError(f"sampler 'udm_encoder' needs a decoder predictor of kind 'x0', got {predictor.kind!r}")
        super().validate(process, predictor)

    def encode(self, predictor, x0, cond):
        """ẑ_0 = F_phi(x̂_0), normalised as in training."""
        z0 = predictor(x0, data_time(x0), method="encode", **cond)
        return unit_rms(z0) if self.latent_norm else z0

    def run(self, key, predictor, process, x_init, cond):
        ts = self.grid(process)
        ss = jnp.concatenate([ts[1:], jnp.zeros((1,), ts.dtype)])
        n = ts.shape[0]

        def body(z, inputs):
            i, t, s = inputs
            x0 = self.estimate_x0(key, i, predictor, process, z, t, cond)
            z_next = self.kernel(key, i, process, z, self.encode(predictor, x0, cond), t, s)
            return z_next, (x0 if self.record_x0 else None)

        z, x0s = jax.lax.scan(body, x_init, (jnp.arange(n - 1), ts[:-1], ss[:-1]))
        x0 = self.estimate_x0(key, n - 1, predictor, process, z, ts[-1], cond)
        info = {"nfe": jnp.asarray(2 * n - 1, jnp.int32)}
        if self.record_x0:
            info["x0_hat"] = jnp.concatenate([x0s, x0[None]])
        return (self.clip(x0) if self.clip_final else x0), info
