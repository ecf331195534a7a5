"""Analytic-DPM, article (七): DDPM's eps-MSE training; at sampling, the x_0-variance table
var0_t = (sigma_t^2/alpha_t^2)(1 - E||eps||^2/d) (clipped) is estimated once per checkpoint (cached in W/variance/)
and widens the reverse variance to sigma_t^2 + gamma_t^2 var0_t. Su's demo: 10 steps of DDIM with eta = 1.
`--config.variance.estimator` in {eps_norm, x0_moment, mle}; `--config.sampler.variance=eta` turns it off.

    diffjax train --config configs/analytic_dpm.py:digits --workdir runs/analytic_dpm_digits
    diffjax train --config configs/analytic_dpm.py:toy2d,smoke --workdir /tmp/analytic_dpm_smoke
"""

from configs.base import get_config as base_config
from configs.base import with_scale


def get_config(arg: str = "digits"):
    c = base_config()
    c.formulation = "analytic_dpm"
    c.process.update(name="ddpm", num_steps=1000, schedule="linear")
    c.prediction = "eps"
    c.objective.update(name="eps_mse")
    c.sampler.update(name="ddim", steps=10, eta=1.0, variance="analytic")
    return with_scale(c, arg)
