"""The sub-VP SDE, article (五): dx = -beta x dt / 2 + sqrt(beta(t)(1 - exp(-2 int beta))) dw, whose marginal std
is 1 - exp(-int beta); eps-MSE training and reverse-SDE (Euler-Maruyama) sampling over 1000 steps.

    diffjax train --config configs/sde_subvp.py:digits --workdir runs/sde_subvp_digits
    diffjax train --config configs/sde_subvp.py:toy2d,smoke --workdir /tmp/sde_subvp_smoke
"""

from configs.base import get_config as base_config
from configs.base import with_scale


def get_config(arg: str = "digits"):
    c = base_config()
    c.formulation = "sde_subvp"
    c.process.update(name="subvp", beta_min=0.1, beta_max=20.0)
    c.prediction = "eps"
    c.objective.update(name="eps_mse")
    c.sampler.update(name="euler_maruyama", steps=1000)
    return with_scale(c, arg)
