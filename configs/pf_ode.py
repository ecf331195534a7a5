"""The probability-flow ODE, article (六): dx/dt = f_t x - g_t^2 score / 2 on the VP SDE, solved by diffrax's
adaptive Tsit5 (rtol = atol = 1e-5); the same ODE gives exact log-likelihoods:
`diffjax likelihood --workdir W`.

    diffjax train --config configs/pf_ode.py:digits --workdir runs/pf_ode_digits
    diffjax train --config configs/pf_ode.py:toy2d,smoke --workdir /tmp/pf_ode_smoke
"""

from configs.base import get_config as base_config
from configs.base import with_scale


def get_config(arg: str = "digits"):
    c = base_config()
    c.formulation = "pf_ode"
    c.process.update(name="vp", beta_min=0.1, beta_max=20.0)
    c.prediction = "eps"
    c.objective.update(name="eps_mse")
    c.sampler.update(name="ode", solver="tsit5", adaptive=True, rtol=1e-5, atol=1e-5)
    return with_scale(c, arg)
