"""The UDM reverse process, article (十): predict x̂_0, then sample `x_{t-1} ~ p(x_{t-1} | x_t, x_0 = x̂_0)`."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from .._checks import check_choice
from ._gaussian import UDMGaussian
from ._sampling import CorruptionSampler

REVERSES = ("baseline", "deterministic", "mixed")
X0_ESTIMATES = ("mean", "sample")


@dataclasses.dataclass(frozen=True)
class UDM(CorruptionSampler):
    """Article (十)'s reverse designs on any corruption `x_t = F_t(x_0, eps)`, over any sub-sequence t -> s:

    * `baseline`: `x_s = F_s(x̂_0, eps')`, fresh `eps' ~ q(eps)` (valid for any corruption; the fresh noise undoes
      part of each estimate, so errors accumulate);
    * `deterministic`: `x_s = F_s(x̂_0, F_t^{-1}(x̂_0, x_t))`, re-using the noise that carries x̂_0 to x_t (needs an
      invertible corruption; for blur or masks with noise this is Cold Diffusion's "improved" sampler);
    * `mixed`: `x_s = F_s(x̂_0, sqrt(1 - sigma~^2) F_t^{-1}(x̂_0, x_t) + sigma~ eps')` for Gaussian `q(eps)`.

    If `x_t ~ p(x_t | x_0)` each design gives `x_s ~ p(x_s | x_0)` when x̂_0 = x_0. On `udm_gaussian` the mixed
    design is `x_s = abar_s x̂_0 + bbar_s (sqrt(1 - sigma~^2) eps_hat + sigma~ z)` (article (十一)): sigma~ = 0 is
    DDIM; `sigma_tilde="ddpm"` takes `sigma~ = sqrt(1 - (abar_t bbar_s / (abar_s bbar_t))^2)`, DDPM with the
    posterior variance (DDIM's eta = 1); sigma~ = 1 is the baseline. With x̂_0 the posterior mean, a constant
    sigma~ refreshes a fixed share of the noise however small the steps, so it drifts towards the baseline's error
    as it grows (measured on a 2-D mixture, 100 steps: no visible bias at 0.2, a clear one at 0.5).

    The estimate x̂_0 is the predictor's `q(x_0 | x_t)` mean (`sample_x0="mean"`, Cold Diffusion's tau -> 0, DDPM
    and DDIM's sigmabar = 0) or a draw `x̂_0 = mean + sigmabar_t z'` from the Gaussian `q` (`sample_x0="sample"`,
    with a table `sigma_bar`, e.g. the Analytic-DPM values of article (七), which reproduces their extra variance).

    The predictor is a restorer of kind `x0`; on `udm_gaussian` any Gaussian kind (`eps`, `v`, `score`) is converted
    through its DDPM process. The step noise is `fold_in(key, step)`, as in `dj.samplers`, so on `udm_gaussian`
    the same key gives DDIM's and DDPM's samples.

    Attributes:
        reverse: `baseline`, `deterministic` (default) or `mixed`.
        sigma_tilde: for `mixed`, a float in [0, 1], or `ddpm` (udm_gaussian only).
        sample_x0: `mean` (default) or `sample`.
        sigma_bar: the standard deviation of `q(x_0 | x_t)` for t = 0..T (T + 1 values), for `sample_x0="sample"`.
    """

    reverse: str = "deterministic"
    sigma_tilde: float | str = "ddpm"
    sample_x0: str = "mean"
    sigma_bar: tuple[float, ...] | None = None

    name = "udm"

    def validate(self, process, predictor):
        super().validate(process, predictor)
        check_choice("UDM reverse design", self.reverse, REVERSES)
        check_choice("UDM sample_x0", self.sample_x0, X0_ESTIMATES)
        kind = type(process).__name__
        if self.reverse != "baseline" and not process.invertible:
            raise ValueError(
                f"reverse={self.reverse!r} needs F_t invertible in its noise, which {kind} is not; give "
                "it cold_noise_sigma > 0 or use reverse='baseline'"
            )
        if self.reverse == "mixed":
            if not process.gaussian_noise:
                raise ValueError(
                    f"reverse='mixed' needs Gaussian noise q(eps), which {kind} lacks; use "
                    "'deterministic' or 'baseline'"
                )
            if self.sigma_tilde == "ddpm":
                if not isinstance(process, UDMGaussian):
                    raise ValueError(
                        f"sigma_tilde='ddpm' (the DDPM posterior) needs udm_gaussian; for {kind} give a float in [0, 1]"
                    )
            elif (
                isinstance(self.sigma_tilde, bool)
                or not isinstance(self.sigma_tilde, int | float)
                or not 0.0 <= self.sigma_tilde <= 1.0
            ):
                raise ValueError(f"sigma_tilde must be a float in [0, 1] or 'ddpm', got {self.sigma_tilde!r}")
        if self.sample_x0 == "sample":
            if self.sigma_bar is None or len(self.sigma_bar) != process.num_steps + 1:
                raise ValueError(
                    f"sample_x0='sample' needs sigma_bar, the std of q(x_0|x_t) for t = 0..T "
                    f"({process.num_steps + 1} values); without one use sample_x0='mean'"
                )
            if any(v < 0 for v in self.sigma_bar):
                raise ValueError("sigma_bar must be non-negative")
        elif self.sigma_bar is not None:
            raise ValueError("sigma_bar is used only with sample_x0='sample'; set one or unset the other")

    def estimate_x0(self, key, step, predictor, process, x, t, cond):
        """The mean of `q(x_0 | x_t)`, plus `sigmabar_t z'` with `sample_x0="sample"`."""
        x0 = super().estimate_x0(key, step, predictor, process, x, t, cond)
        if self.sample_x0 == "sample":
            sigma_bar = jnp.asarray(self.sigma_bar, x0.dtype)[t]
            noise_key = jax.random.fold_in(jax.random.fold_in(key, step), 1)  # apart from the step noise
            x0 = x0 + sigma_bar * jax.random.normal(noise_key, x0.shape, x0.dtype)
        return x0

    def tilde(self, process, t, s):
        """sigma~ of the step t -> s: the knob, or for `ddpm` the posterior's `sqrt(var_{t|s}) / bbar_t`."""
        if self.sigma_tilde != "ddpm":
            return jnp.asarray(self.sigma_tilde, jnp.result_type(float))
        alpha_t, sigma_t, alpha_s, sigma_s = process.alpha(t), process.sigma(t), process.alpha(s), process.sigma(s)
        var_ts = sigma_t**2 - (alpha_t / alpha_s) ** 2 * sigma_s**2
        return jnp.sqrt(jnp.maximum(var_ts, 0.0)) / sigma_t

    def kernel(self, key, step, process, x, x0, t, s):
        """One step t -> s of the chosen design; t and s are scalar steps, `x0` is x̂_0."""
        if self.reverse == "baseline":
            eps = process.sample_noise(jax.random.fold_in(key, step), x.shape, x.dtype)
        else:
            eps = process.invert_noise(x0, t, x)
            if self.reverse == "mixed":
                tilde = self.tilde(process, t, s).astype(x.dtype)
                fresh = process.sample_noise(jax.random.fold_in(key, step), x.shape, x.dtype)
                eps = jnp.sqrt(1.0 - tilde**2) * eps + tilde * fresh
        return process.forward(x0, s, eps)
