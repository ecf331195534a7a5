"""The Gaussian ("hot") diffusion as a UDM corruption, article (十一) item 1."""

from __future__ import annotations

import dataclasses

from .._broadcast import expand_to
from .._checks import check_knobs
from ..processes import DDPM
from ._corruption import AdditiveCorruption


@dataclasses.dataclass(frozen=True)
class UDMGaussian(AdditiveCorruption):
    """`F_t(x_0, eps) = abar_t x_0 + bbar_t eps`, `eps ~ N(0, I)`, on the schedule of a DDPM `process`.

    The schedule (Su's scales `abar_t`, `bbar_t`, t = 0..T), its prior `N(0, I)` and its sub-sequence grids are
    the DDPM process's own. With `q(x_0|x_t) = N(mu(x_t), sigmabar_t^2 I)` the UDM reverse designs give
    `x_{t-1} = abar_{t-1} x̂_0 + sqrt(bbar_{t-1}^2 - sigma_t^2) (x_t - abar_t x̂_0)/bbar_t + sigma_t z` (article
    (十一)): DDPM is sigmabar = 0, sigma_t = bbar_{t-1} beta_t / bbar_t; DDIM is sigmabar = 0, sigma_t = 0.

    Attributes:
        process: the DDPM process whose schedule this is.
    """

    process: DDPM = DDPM()

    def __post_init__(self):
        if not isinstance(self.process, DDPM):
            raise ValueError(
                f"udm_gaussian needs a DDPM process (dj.process('ddpm', ...)), got {type(self.process).__name__}"
            )

    @property
    def num_steps(self) -> int:
        return int(self.process.num_steps)

    @property
    def spacings(self) -> tuple[str, ...]:
        return self.process.spacings

    def alpha(self, t):
        """`abar_t`."""
        return self.process.alpha(t)

    def sigma(self, t):
        """`bbar_t`."""
        return self.process.sigma(t)

    def degrade(self, x0, t):
        return expand_to(self.alpha(t), x0).astype(x0.dtype) * x0

    def noise_std(self, t):
        return self.sigma(t)

    def prior_sample(self, key, shape, dtype=None):
        """DDPM's prior `N(0, I)` (`abar_T` is near zero)."""
        return self.process.prior_sample(key, shape, dtype)

    def timesteps(self, num_steps: int, spacing: str | None = None, rho: float = 7.0):
        """The DDPM process's sub-sequence grid, so sub-sequences match DDIM's step for step."""
        return self.process.timesteps(num_steps, spacing, rho)


def udm_gaussian(**knobs) -> UDMGaussian:
    """The Gaussian UDM corruption on `dj.process("ddpm", **knobs)` (knobs: num_steps, schedule, beta_start,
    beta_end, cosine_s, max_beta; defaults: T = 1000, linear schedule).

    Raises:
        ValueError: for an unknown knob, naming the valid ones.
    """
    check_knobs("corruption 'udm_gaussian'", knobs, [f.name for f in dataclasses.fields(DDPM)])
    return UDMGaussian(DDPM(**knobs))
