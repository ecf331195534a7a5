"""The VE SDE, article (五): x_t = x_0 + sigma(t) eps with sigma(t) = sigma_min (sigma_max/sigma_min)^t, f = 0,
g^2 = d sigma^2/dt; eps-MSE training and Song et al.'s predictor-corrector sampler (reverse-diffusion predictor
plus one Langevin corrector step with snr 0.16) over 1000 steps.

    diffjax train --config configs/sde_ve.py:digits --workdir runs/sde_ve_digits
    diffjax train --config configs/sde_ve.py:toy2d,smoke --workdir /tmp/sde_ve_smoke
"""

from configs.base import get_config as base_config
from configs.base import with_scale


def get_config(arg: str = "digits"):
    c = base_config()
    c.formulation = "sde_ve"
    c.process.update(name="ve", sigma_min=0.01, sigma_max=50.0)
    c.prediction = "eps"
    c.objective.update(name="eps_mse")
    c.sampler.update(name="pc", predictor="reverse_diffusion", snr=0.16, n_corrector=1, steps=1000)
    return with_scale(c, arg)
