"""Cold Diffusion's naive and improved samplers, article (十一) item 2."""

from __future__ import annotations

import dataclasses

from .._checks import check_choice
from ._corruption import AdditiveCorruption
from ._sampling import CorruptionSampler

METHODS = ("naive", "improved")


@dataclasses.dataclass(frozen=True)
class Cold(CorruptionSampler):
    """Cold Diffusion's samplers on `x_t = D_t(x_0) + sigma eps` with the noise-free degradation `D = F(., 0)`:

    * `naive`: `x̂_0 = G_t(x_t)`, `x_{t-1} = D_{t-1}(x̂_0)` (article (十)'s baseline in the limit sigma -> 0);
    * `improved`: `x_{t-1} = x_t + D_{t-1}(x̂_0) - D_t(x̂_0)` (the deterministic design: the noise, here everything
      `D_t` cannot explain, is inferred and kept).

    The improved sampler telescopes, `x_0 = x_T + sum_t [D_{t-1}(x̂_0^(t)) - D_t(x̂_0^(t))]`, so a restorer with a
    constant error e leaves the error `e - D_T(e)` (bounded by ||D_T(e) - D_0(e)||) where the naive one leaves e.
    Sub-sequences t -> s replace t - 1 by s. The predictor is a restorer of kind `x0` (`G_t`). With a constant noise
    scale, `improved` is `dj.udm.UDM(reverse="deterministic")` at every step but the last, where UDM drops the
    inferred noise (`s_0 = 0`) and returns x̂_0, while `improved` keeps it: `x_0 = x_1 + x̂_0 - D_1(x̂_0)`.

    Attributes:
        method: `naive` or `improved` (default).
    """

    method: str = "improved"

    name = "cold"

    def validate(self, process, predictor):
        super().validate(process, predictor)
        check_choice("cold sampler method", self.method, METHODS)
        if not isinstance(process, AdditiveCorruption):
            raise ValueError(
                f"sampler 'cold' needs a degradation plus noise (cold_blur, mask_pixels), got {type(process).__name__}"
            )

    def kernel(self, key, step, process, x, x0, t, s):
        """One step t -> s; `x0` is x̂_0 (no randomness: `key` and `step` are unused)."""
        if self.method == "naive":
            return process.degrade(x0, s)
        return x + process.degrade(x0, s) - process.degrade(x0, t)
