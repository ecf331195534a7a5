"""DDIM, article (四): DDPM's training (eps-MSE) with the deterministic (eta = 0) sampler over a 50-step
sub-sequence. `--config.sampler.eta` (0..1), `--config.sampler.steps` and `--config.sampler.spacing`
(leading, trailing, linspace) are free at sampling time.

    diffjax train --config configs/ddim.py:digits --workdir runs/ddim_digits
    diffjax sample --workdir runs/ddim_digits --config.sampler.steps=20 --config.sampler.eta=0.5
"""

from configs.base import get_config as base_config
from configs.base import with_scale


def get_config(arg: str = "digits"):
    c = base_config()
    c.formulation = "ddim"
    c.process.update(name="ddpm", num_steps=1000, schedule="linear")
    c.prediction = "eps"
    c.objective.update(name="eps_mse")
    c.sampler.update(name="ddim", steps=50, eta=0.0, spacing="leading")
    return with_scale(c, arg)
