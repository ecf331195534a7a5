"""DDPM as an autoregressive VAE, article (二): the ELBO-weighted eps loss and the matching reverse variance.
`--config.objective.sigma_type` and `--config.sampler.variance` pick one of the two sigma choices
(posterior: exact for a single point; beta: exact for N(0, I) data).

    diffjax train --config configs/ddpm_vae.py:digits --workdir runs/ddpm_vae_digits
    diffjax train --config configs/ddpm_vae.py:digits --workdir runs/ddpm_vae_beta \\
        --config.objective.sigma_type=beta --config.sampler.variance=beta
"""

from configs.base import get_config as base_config
from configs.base import with_scale


def get_config(arg: str = "digits"):
    c = base_config()
    c.formulation = "ddpm_vae"
    c.process.update(name="ddpm", num_steps=1000, schedule="su")
    c.prediction = "eps"
    c.objective.update(name="elbo", sigma_type="posterior", reduction="sum")
    c.sampler.update(name="ancestral", variance="posterior")
    return with_scale(c, arg)
