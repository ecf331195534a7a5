"""The VP SDE, article (五): x_t = alpha_t x_0 + sigma_t eps with beta(t) = 0.1 + 19.9 t (Score-SDE), trained
by eps-MSE (score matching with lambda = sigma_t^2), sampled by Euler-Maruyama on the reverse SDE
dx = [f_t x - g_t^2 score] dt + g_t dw over 1000 steps. `--config.sampler.name=pc` adds a Langevin corrector;
`--config.sampler.sigma_rev` in [0, 1] picks a member of article (六)'s equal-marginal family.

    diffjax train --config configs/sde_vp.py:digits --workdir runs/sde_vp_digits
    diffjax train --config configs/sde_vp.py:toy2d,smoke --workdir /tmp/sde_vp_smoke
"""

from configs.base import get_config as base_config
from configs.base import with_scale


def get_config(arg: str = "digits"):
    c = base_config()
    c.formulation = "sde_vp"
    c.process.update(name="vp", beta_min=0.1, beta_max=20.0)
    c.prediction = "eps"
    c.objective.update(name="eps_mse")
    c.sampler.update(name="euler_maruyama", steps=1000)
    return with_scale(c, arg)
