"""DDPM as Bayes plus denoising, article (三): the network predicts x0 (the denoiser mu_bar), trained by
x0-MSE, and sampling draws from the posterior p(x_{t-1} | x_t, x0 = mu_bar(x_t)) with its variance.
`--config.sampler.clip_x0=True` clips the predicted x0 to the data range first (Ho's reference code).

    diffjax train --config configs/ddpm_bayes.py:digits --workdir runs/ddpm_bayes_digits
"""

from configs.base import get_config as base_config
from configs.base import with_scale


def get_config(arg: str = "digits"):
    c = base_config()
    c.formulation = "ddpm_bayes"
    c.process.update(name="ddpm", num_steps=1000, schedule="linear")
    c.prediction = "x0"
    c.objective.update(name="x0_mse")
    c.sampler.update(name="ancestral", variance="posterior", clip_x0=False)
    return with_scale(c, arg)
