"""The reverse kernel with an uncertain x_0, articles (七) and (八): mean unchanged, variance `sigma~^2 + gamma^2 var0`.

Every step t -> s of the DDIM family (article (四)) is `p(x_s | x_t, x_0) = N(kappa x_t + gamma x_0, sigma~^2 I)` with

    kappa = sqrt(sigma_s^2 - sigma~^2) / sigma_t,    gamma = alpha_s - alpha_t kappa,

and `sigma~ = eta * sigma_{t|s} sigma_s / sigma_t` (eta = 1 is DDPM's posterior). Replacing the point estimate
of x_0 by `x_0 | x_t ~ N(x̂_0(x_t), var0_t)` and integrating it out gives (article (七))

    p(x_s | x_t) = N(kappa x_t + gamma x̂_0(x_t), (sigma~^2 + gamma^2 var0_t) I),

so the optimal reverse variance is never smaller than the DDIM one, even for deterministic DDIM (eta = 0).
In Su's DDPM notation (s = t - 1, alpha = abar, sigma = bbar) this is `gamma_t = abar_{t-1} - abar_t
sqrt(bbar_{t-1}^2 - sigma_t^2)/bbar_t`, exactly article (七)'s formula.
"""

from __future__ import annotations

import jax.numpy as jnp


def ddim_coefficients(alpha_t, sigma_t, alpha_s, sigma_s, eta=1.0):
    """`(kappa, gamma, noise_var)` of the DDIM-family kernel `N(kappa x_t + gamma x_0, noise_var I)` for t -> s.

    `noise_var = eta^2 sigma_{t|s}^2 sigma_s^2 / sigma_t^2` with `sigma_{t|s}^2 = sigma_t^2 - (alpha_t/alpha_s)^2
    sigma_s^2` (article (四)); eta = 1 is DDPM's posterior variance, eta = 0 deterministic DDIM.
    """
    alpha_ts = alpha_t / alpha_s
    var_ts = sigma_t**2 - alpha_ts**2 * sigma_s**2
    noise_var = eta**2 * var_ts * sigma_s**2 / sigma_t**2
    kappa = jnp.sqrt(jnp.maximum(sigma_s**2 - noise_var, 0.0)) / sigma_t
    return kappa, alpha_s - alpha_t * kappa, noise_var


def optimal_reverse_variance(alpha_t, sigma_t, alpha_s, sigma_s, x0_var, eta=1.0):
    """Article (七)'s reverse variance `sigma~^2 + gamma^2 var0_t` for the step t -> s of the DDIM family.

    `x0_var` is the variance of x_0 given x_t: a scalar (isotropic), an array of the data shape (diagonal) or
    one per example (NPR/SN heads, article (八)). With eta = 1 on a variance-preserving process it lies between
    DDPM's two choices (posterior <= optimal <= beta) whenever `x0_var <= sigma_t^2`, and equals them for
    Dirac data (`x0_var = 0`) and N(0, I) data (`x0_var = sigma_t^2`).
    """
    _, gamma, noise_var = ddim_coefficients(alpha_t, sigma_t, alpha_s, sigma_s, eta)
    return noise_var + gamma**2 * x0_var


def x0_variance_bound(process, t, data_range=None):
    """The upper bound of `var0_t = E tr Cov(x_0 | x_t) / d` from article (七): `sigma_t^2 / alpha_t^2`.

    It follows from `var0_t = (sigma_t^2/alpha_t^2)(1 - E||eps*||^2/d)`. With data in `[a, b]` (`data_range`) also
    `var0_t <= Var[x_0] <= ((b - a)/2)^2`, and the smaller bound is returned.
    """
    bound = process.sigma(t) ** 2 / process.alpha(t) ** 2
    if data_range is not None:
        lo, hi = data_range
        bound = jnp.minimum(bound, ((hi - lo) / 2.0) ** 2)
    return bound
