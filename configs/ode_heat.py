"""The heat-equation ODE, article (十二): dx/dt = -sigma'(t) sigma(t) grad log p_t(x) maps the data to
N(0, sigma_T^2 I) with p_t = p_0 * N(0, sigma_t^2 I); here sigma(t) = t (EDM's sigma-time), trained by conditional
score matching weighted by sigma^2 (eps-MSE) and integrated backwards by diffrax's adaptive Tsit5.

    diffjax train --config configs/ode_heat.py:digits --workdir runs/ode_heat_digits
    diffjax train --config configs/ode_heat.py:toy2d,smoke --workdir /tmp/ode_heat_smoke
"""

from configs.base import get_config as base_config
from configs.base import with_scale


def get_config(arg: str = "digits"):
    c = base_config()
    c.formulation = "ode_heat"
    c.process.update(name="edm", sigma_min=0.002, sigma_max=80.0)
    c.prediction = "eps"
    c.objective.update(name="dsm", weighting="sigma2")
    c.model.time_scale = 10.0  # the network sees sigma in [0.002, 80]
    c.sampler.update(name="ode", solver="tsit5", adaptive=True, rtol=1e-4, atol=1e-4)
    return with_scale(c, arg)
