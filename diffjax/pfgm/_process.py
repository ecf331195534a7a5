"""PFGM's augmented process (article (十三)): data on the plane z = 0 of R^{d+1}, perturbed along the Poisson field.

Knob defaults are the official CIFAR-10 settings (FORMULATIONS (十三)). `scaled_knobs` is the official recipe that
sets `M`, `z_max` and `upper_norm` from the data's mean norm and dimension (PFGM paper, appendix B.1):

    M = floor(0.75 log(data_norm^2 / (2 sqrt(d) sigma^2)) / log(1 + tau)) + 1,
    z_max = E|eps_z| (1 + tau)^M = sqrt(2/pi) sigma (1 + tau)^M,
    upper_norm = E||eps_x|| (1 + tau)^M ~ sqrt(d) sigma (1 + tau)^M,

so that the largest perturbations reach well past the data (CIFAR-10: data_norm ~ 30, d = 3072 gives M = 287,
z_max = 38.6, upper_norm = 2679, rounded in the official config to 291, 40, 3000). `PRESETS` holds the data
scales of diffjax's configs:

* `cifar10`: the official values.
* `digits` (8x8x1, d = 64, scikit-learn digits in [-1, 1] with mean norm 6.77): the recipe gives M = 261,
  z_max = 17.9, upper_norm = 179; z_exp is scaled with z_max (the official 5 at z_max = 40).
* `toy2d` (d = 2, mean norm about 2): the recipe gives z_max = 10.5 and upper_norm = 18.6, but in two dimensions
  the prior radius has a Cauchy-like tail (`P(R > U) = z_max / sqrt(U^2 + z_max^2)`), so that clip would move half
  of the prior draws. The preset keeps the CIFAR `M = 291` and `z_max = 40` (the prior's mismatch with the true
  marginal at z_max is of order (spread / z_max)^2 for centred data, about 0.1%) and lifts `upper_norm` to 2000
  (2% of the prior draws clipped). In high dimension the prior radius is close to `z_max sqrt(d) / |N(0, 1)|`,
  so the recipe's clip `upper_norm / z_max = sqrt(pi d / 2)` moves more than half of the draws to `upper_norm`
  (57%; 54% with the official CIFAR-10 numbers, which the official code does), in CIFAR-10 and digits alike.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from .._checks import check_choice
from ..green import random_directions

TARGETS = ("normalized_empirical", "unbiased")
TIME_INPUTS = ("z", "log_z")
RESTRICT_FRACTION = 0.7  # restrict_M: m ~ U[0, floor(0.7 M)) where |eps_z| < RESTRICT_THRESHOLD * sigma_end
RESTRICT_THRESHOLD = 0.5  # the official 0.005 at sigma_end = 0.01


def scaled_knobs(data_norm: float, dim: int, sigma_end: float = 0.01, tau: float = 0.03) -> dict:
    """`M`, `z_max` and `upper_norm` for data of mean norm `data_norm` in `dim` dimensions (the official recipe)."""
    if not (data_norm > 0 and dim >= 1 and sigma_end > 0 and tau > 0):
        raise ValueError("scaled_knobs needs data_norm > 0, dim >= 1, sigma_end > 0 and tau > 0")
    m = int(0.75 * math.log(data_norm**2 / (2.0 * math.sqrt(dim) * sigma_end**2)) / math.log1p(tau)) + 1
    growth = (1.0 + tau) ** m
    return {
        "M": m,
        "z_max": math.sqrt(2.0 / math.pi) * sigma_end * growth,
        "upper_norm": math.sqrt(dim) * sigma_end * growth,
    }


PRESETS = {
    "cifar10": {"M": 291, "z_max": 40.0, "upper_norm": 3000.0, "z_exp": 5.0},
    "digits": {"M": 261, "z_max": 18.0, "upper_norm": 180.0, "z_exp": 2.25},
    "toy2d": {"M": 291, "z_max": 40.0, "upper_norm": 2000.0, "z_exp": 5.0},
}


@dataclasses.dataclass(frozen=True)
class PoissonProcess:
    """PFGM (article (十三)): the Poisson field of data placed on the plane z = 0 of R^{d+1}, and its field lines.

    Training perturbs data by Algorithm 2 of the PFGM paper (`perturb`); sampling starts on the plane z = z_max
    from `prior_sample` and follows `dx/dz = E_x / E_z` down to `z_min`. The process's own time is `z`; the network
    sees `network_time(z)` (`z` itself, as the official code, or `log z`). All dimension-dependent quantities
    (`sqrt(d)`, `Beta(d/2, 1/2)`) are read from the data's shape, so one process serves any data of its scale.
    A frozen, hashable dataclass (a static argument of the jitted `dj.sample`).

    Attributes:
        M: the perturbation's largest exponent, `m ~ U[0, M]`.
        tau: the growth rate of `(1 + tau)^m`.
        sigma_end: sigma of `(eps_x, eps_z) ~ N(0, sigma^2 I_{d+1})` (config.model.sigma_end).
        gamma: the normalisation constant of the target `sqrt(d) N / (||N|| + gamma)` (`pfgm.poisson_target`).
        z_max: the prior's plane.
        z_min: where the field lines are stopped.
        upper_norm, lower_norm: the prior radius is clipped to `[lower_norm, upper_norm]` (the official code clips
            to [1, upper_norm]; set lower_norm=0 to keep small radii, which matters only when z_max is small).
        z_exp: below this z the sampler replaces the predicted z-component by its exact value given the
            predicted x-part (see `pfgm.normalized_z_component`); 0 turns it off.
        restrict_M: where `|eps_z| < 0.5 sigma_end` (0.005 at the default sigma_end), draw `m ~ U[0, floor(0.7 M))`
            instead, which confines the norm of the rare, nearly flat perturbations.
        target: `normalized_empirical` (the official, biased, normalised field of a large batch) or `unbiased`
            (the field itself, scaled by `z^d`; see `pfgm.poisson_target`).
        large_batch: the number of leading rows of each training batch used as the field's sources; None uses
            the whole batch (the official code: a 4096-row batch whose first 128 rows are perturbed).
        small_batch: the number of leading rows perturbed and regressed; None perturbs every row.
        time_input: what the network sees as time: `z` (official) or `log_z`.
    """

    M: float = 291
    tau: float = 0.03
    sigma_end: float = 0.01
    gamma: float = 5.0
    z_max: float = 40.0
    z_min: float = 1e-3
    upper_norm: float = 3000.0
    lower_norm: float = 1.0
    z_exp: float = 5.0
    restrict_M: bool = True
    target: str = "normalized_empirical"
    large_batch: int | None = None
    small_batch: int | None = None
    time_input: str = "z"

    def __post_init__(self):
        check_choice("pfgm target", self.target, TARGETS)
        check_choice("pfgm time_input", self.time_input, TIME_INPUTS)
        positive = {"M": self.M, "tau": self.tau, "sigma_end": self.sigma_end, "z_min": self.z_min}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"pfgm {name} must be positive, got {value!r}")
        if not self.gamma >= 0:
            raise ValueError(f"pfgm gamma must be >= 0 (official 5), got {self.gamma!r}")
        if not self.z_max > self.z_min:
            raise ValueError(f"pfgm needs z_max > z_min, got z_max={self.z_max}, z_min={self.z_min}")
        if not 0 <= self.lower_norm < self.upper_norm:
            raise ValueError(
                f"pfgm needs 0 <= lower_norm < upper_norm, got lower_norm={self.lower_norm}, "
                f"upper_norm={self.upper_norm}"
            )
        if not self.z_exp >= 0:
            raise ValueError(f"pfgm z_exp must be >= 0 (0 turns the substitution off), got {self.z_exp!r}")
        for name in ("large_batch", "small_batch"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < 1):
                raise ValueError(f"pfgm {name} must be None (the whole batch) or a positive integer, got {value!r}")

    # ---- time -----------------------------------------------------------------------------------------------
    def network_time(self, z):
        """What the network sees as time at height `z`: `z` or `log z` (`time_input`; z = 0 is read as the smallest
        positive float)."""
        if self.time_input == "log_z":
            z = jnp.asarray(z)
            return jnp.log(jnp.maximum(z, jnp.finfo(z.dtype).tiny))
        return z

    def z_from_network_time(self, t):
        """The height `z` that `network_time` maps to `t`."""
        return jnp.exp(t) if self.time_input == "log_z" else t

    # ---- training perturbation ------------------------------------------------------------------------------
    def perturb(self, key, x0, return_parts: bool = False):
        """Algorithm 2 of PFGM: `x = x_0 + ||eps_x|| (1+tau)^m u`, `z = |eps_z| (1+tau)^m`.

        `m ~ U[0, M]` (restrict_M: `U[0, floor(0.7 M))` where `|eps_z| < 0.5 sigma_end`), `(eps_x, eps_z) ~
        N(0, sigma_end^2 I_{d+1})` and `u` uniform on the unit sphere of R^d, independent of `eps_x`. Then
        `x - x_0 = z (||eps_x|| / |eps_z|) u`, where `||eps_x|| / |eps_z|` has density
        `∝ r^{d-1} (1 + r^2)^{-(d+1)/2}` (its square over d is F(d, 1)): exactly the gravity kernel of article
        (十四) at time z.

        Returns `(x, z)` with `z` of shape `(n,)`; with `return_parts`, also a dict of `m`, `noise_norm`
        (`||eps_x||`), `z_noise` (`|eps_z|`) and `direction` (`u`, shape `(n, d)`).
        """
        x0 = jnp.asarray(x0)
        n, d, dtype = x0.shape[0], math.prod(x0.shape[1:]), x0.dtype
        k_m, k_restricted, k_z, k_x, k_u = jax.random.split(key, 5)
        z_noise = jnp.abs(self.sigma_end * jax.random.normal(k_z, (n,), dtype))
        m = jax.random.uniform(k_m, (n,), dtype, 0.0, self.M)
        if self.restrict_M:
            m_restricted = jax.random.uniform(k_restricted, (n,), dtype, 0.0, math.floor(RESTRICT_FRACTION * self.M))
            m = jnp.where(z_noise < RESTRICT_THRESHOLD * self.sigma_end, m_restricted, m)
        noise_norm = jnp.linalg.norm(self.sigma_end * jax.random.normal(k_x, (n, d), dtype), axis=-1)
        direction = random_directions(k_u, n, d, dtype)
        growth = (1.0 + self.tau) ** m
        x = x0 + ((noise_norm * growth)[:, None] * direction).reshape(x0.shape)
        z = z_noise * growth
        if return_parts:
            return x, z, {"m": m, "noise_norm": noise_norm, "z_noise": z_noise, "direction": direction}
        return x, z

    # ---- the prior on the plane z = z_max -------------------------------------------------------------------
    def prior_radius(self, key, n: int, d: int, dtype=None):
        """`R = z_max sqrt(B / (1 - B))`, `B ~ Beta(d/2, 1/2)`, clipped to `[lower_norm, upper_norm]`.

        This is the radial law `∝ r^{d-1} (r^2 + z_max^2)^{-(d+1)/2}` of the field's flux through the plane
        z = z_max for data at the origin (article (十三)). `B/(1 - B)` is drawn as `G_a / G_b` with
        `G_a ~ Gamma(d/2)`, `G_b ~ Gamma(1/2)` (the same law, without forming `1 - B` near 1 in high d).
        """
        dtype = jnp.result_type(float) if dtype is None else dtype
        k_a, k_b = jax.random.split(key)
        g_a = jax.random.gamma(k_a, 0.5 * d, (n,), dtype)
        g_b = jax.random.gamma(k_b, 0.5, (n,), dtype)
        radius = self.z_max * jnp.sqrt(g_a / g_b)
        return jnp.clip(radius, self.lower_norm, self.upper_norm)

    def prior_sample(self, key, shape, dtype=None):
        """`x` on the plane z = z_max: `prior_radius` times a uniform direction, shape `(n, *data_shape)`."""
        shape = tuple(shape)
        n, d = shape[0], math.prod(shape[1:])
        k_r, k_u = jax.random.split(key)
        radius = self.prior_radius(k_r, n, d, dtype)
        return (radius[:, None] * random_directions(k_u, n, d, radius.dtype)).reshape(shape)
