"""EDM (Karras et al. 2022), the unification note: sigma-time process x = x_0 + sigma eps, sigma in
[0.002, 80]; the network is preconditioned, D = c_skip x + c_out F(c_in x, c_noise), trained with
lambda(sigma) = 1/c_out^2 and ln sigma ~ N(-1.2, 1.2^2); sampled by Heun (Algorithm 2) over 18 rho-spaced steps
(35 evaluations). `--config.sampler.S_churn=...` adds churn.

    diffjax train --config configs/edm.py:digits --workdir runs/edm_digits
    diffjax train --config configs/edm.py:toy2d,smoke --workdir /tmp/edm_smoke
"""

from configs.base import get_config as base_config
from configs.base import with_scale


def get_config(arg: str = "digits"):
    c = base_config()
    c.formulation = "edm"
    c.process.update(name="edm", sigma_min=0.002, sigma_max=80.0)
    c.prediction = "x0"
    c.objective.update(name="edm", precond="edm", sigma_data=0.5)
    c.model.time_scale = 250.0  # the network sees c_noise = ln(sigma)/4, in about [-1.6, 1.1]
    c.sampler.update(name="heun", steps=18)
    return with_scale(c, arg)
