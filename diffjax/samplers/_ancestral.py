"""DDPM's ancestral sampler, articles (一)–(三), on any Gaussian process and any sub-sequence of times; with the
optimal variances of articles (七)–(八) and the mean-shift classifier guidance of article (九)."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from .._checks import check_choice
from ..guidance import ClassifierGuided
from ..variance import X0_VARIANCE_RULES, check_x0_variance_source
from ._base import GridSampler
from ._noise import step_noise

VARIANCES = ("beta", "posterior", *X0_VARIANCE_RULES)
GUIDANCE_FORMS = ("eps", "mean")


@dataclasses.dataclass(frozen=True)
class Ancestral(GridSampler):
    """Samples `x_s ~ N(mu(x_t), sigma_ts^2 I)` with the posterior mean of article (三):

    `p(x_{t-1}|x_t, x_0) = N((alpha_t bbar_{t-1}^2/bbar_t^2) x_t + (abar_{t-1} beta_t^2/bbar_t^2) x_0,
    (bbar_{t-1}^2 beta_t^2/bbar_t^2) I)`, with `x_0` replaced by the prediction `x̂_0(x_t)`.

    Written for any step t -> s of a Gaussian process (alpha_{t|s} = alpha_t/alpha_s,
    sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2), it is DDPM's sampler on consecutive steps. Step i's
    normal draw is `step_noise(key, i, ..., noise_rng)` (`diffjax.samplers._noise`).

    Attributes:
        variance: `beta` (sigma_ts^2 = beta_t^2: exact for N(0, I) data; Su's default), `posterior`
            (sigma_ts^2 = bbar_{t-1}^2 beta_t^2 / bbar_t^2: exact for a single data point), article (二); or
            the posterior plus `gamma_t^2 var0_t`, `gamma_t = abar_{t-1} beta_t^2/bbar_t^2` the coefficient of
            x_0 in the mean (article (七)), with `var0_t` the variance of x_0 given x_t from a table
            (`analytic`: Analytic-DDPM, isotropic or diagonal) or from a head (`npr`, `sn`: article (八)).
            These three need the model wrapped by `dj.variance.with_x0_variance`.
        guidance: `eps` (use the predictor as it is, including an eps-shift guided one) or `mean` (article
            (九)'s `x_s = mu(x_t) + gamma sigma_ts^2 grad log p(y|x_t) + sigma_ts z`; needs a predictor from
            `dj.guidance.classifier_guidance`, whose unguided part then gives mu).
    """

    variance: str = "beta"
    guidance: str = "eps"

    def validate(self, process, predictor):
        super().validate(process, predictor)
        check_choice("ancestral variance", self.variance, VARIANCES)
        check_choice("ancestral guidance form", self.guidance, GUIDANCE_FORMS)
        if self.variance in X0_VARIANCE_RULES:
            if self.guidance == "mean":
                raise ValueError(
                    "guidance='mean' works with variance 'beta' or 'posterior'; for an optimal "
                    "variance use the eps-form guidance (guidance='eps') instead"
                )
            check_x0_variance_source(self.variance, predictor)
        if self.guidance == "mean" and not isinstance(predictor, ClassifierGuided):
            raise ValueError("guidance='mean' needs a predictor from dj.guidance.classifier_guidance(...)")

    def predict(self, predictor, process, x, t, cond):
        """Adds the scaled classifier gradient (`log_prob_grad`, with `guidance="mean"`, taken next to the
        unguided mean) and the x_0 variance (`x0_var`, for the optimal variances) to `(x̂_0, eps)`."""
        if self.guidance != "mean":
            return with_x0_variance_extra(
                self, predictor, process, x, t, cond, *super().predict(predictor, process, x, t, cond)
            )
        x0, eps = predictor.unguided_x0_eps(process, x, t, **cond)
        extras = {"log_prob_grad": predictor.scaled_log_prob_grad(x, t, **cond)}
        return with_x0_variance_extra(self, predictor, process, x, t, cond, x0, eps, extras)

    def update(self, key, step, x, x0, eps, alpha_t, sigma_t, alpha_s, sigma_s, *, x0_var=None, log_prob_grad=None):
        """One step t -> s; `x0_var` is `var0_t` (optimal variances) and `log_prob_grad` the scaled
        classifier gradient (mean-shift guidance), both supplied by `run`."""
        if self.clip_x0:
            x0 = self.clip(x0)
        alpha_ts = alpha_t / alpha_s
        var_ts = sigma_t**2 - alpha_ts**2 * sigma_s**2
        mean = (alpha_ts * sigma_s**2 * x + alpha_s * var_ts * x0) / sigma_t**2
        var = var_ts if self.variance == "beta" else var_ts * sigma_s**2 / sigma_t**2
        if self.variance in X0_VARIANCE_RULES:
            gamma = alpha_s * var_ts / sigma_t**2
            var = var + gamma**2 * x0_var
        if log_prob_grad is not None:
            mean = mean + var * log_prob_grad
        return mean + jnp.sqrt(var).astype(x.dtype) * step_noise(key, step, x.shape, x.dtype, self.noise_rng)


def with_x0_variance_extra(sampler, predictor, process, x, t, cond, x0, eps, extras):
    """`(x0, eps, extras)` with `x0_var`, the variance of x_0 given x_t from a `VariancePredictor`, added when
    `sampler.variance` is one of the optimal variances of articles (七)–(八). `nfe` counts mean-model calls."""
    if sampler.variance in X0_VARIANCE_RULES:
        extras = {**extras, "x0_var": predictor.x0_variance(sampler.variance, process, x, t, eps, **cond)}
    return x0, eps, extras
