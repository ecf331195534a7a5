"""The Gaussian instance of the unified diffusion model, article (十一) item 1: x_t = abar_t x_0 + bbar_t eps on
DDPM's linear schedule (T = 1000), an x_0 restorer trained with the Gaussian-q loss ||x_0 - G_t(x_t)||^2 (udm_l2),
and the UDM reverse process: predict x̂_0, then x_{t-1} = F_{t-1}(x̂_0, sqrt(1 - s~^2) F_t^{-1}(x̂_0, x_t) + s~ eps)
(reverse='mixed' with s~ from DDPM's posterior; 'deterministic' is DDIM, 'baseline' re-noises x̂_0).

    diffjax train --config configs/udm_gaussian.py:digits --workdir runs/udm_gaussian_digits
    diffjax train --config configs/udm_gaussian.py:toy2d,smoke --workdir /tmp/udm_gaussian_smoke
"""

from configs.base import get_config as base_config
from configs.base import with_scale


def get_config(arg: str = "digits"):
    c = base_config()
    c.formulation = "udm_gaussian"
    c.process.update(name="udm_gaussian", num_steps=1000, schedule="linear")
    c.prediction = "x0"
    c.objective.update(name="udm_l2")
    c.sampler.update(name="udm", reverse="mixed", sigma_tilde="ddpm", steps=100)
    c = with_scale(c, arg)
    if c.process.num_steps == 20:  # smoke: with_scale shrinks ddpm's steps only
        c.sampler.steps = 5
    return c
