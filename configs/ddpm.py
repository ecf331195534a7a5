"""DDPM as demolish-then-rebuild, article (一): eps-MSE (summed over pixels, as Su's code), Su's schedule
alpha_t = sqrt(1 - 0.02 t/T) with T = 1000, ancestral sampling with sigma_t = beta_t.

    diffjax train --config configs/ddpm.py:digits --workdir runs/ddpm_digits
    diffjax train --config configs/ddpm.py:digits,cpu --workdir runs/demo   # `make demo`: minutes on a CPU
    diffjax train --config configs/ddpm.py:toy2d,smoke --workdir /tmp/ddpm_smoke
"""

from configs.base import get_config as base_config
from configs.base import with_scale


def get_config(arg: str = "digits"):
    c = base_config()
    c.formulation = "ddpm"
    c.process.update(name="ddpm", num_steps=1000, schedule="su")
    c.prediction = "eps"
    c.objective.update(name="eps_mse", reduction="sum")
    c.sampler.update(name="ancestral", variance="beta")
    return with_scale(c, arg)
