"""Classifier-free guidance, article (九): one class-conditional network trained with labels dropped to a null
class with probability p_uncond = 0.1, sampled with (1 + w) eps(x, y) - w eps(x, null), w = cfg_scale (DDIM, 50
steps). `--config.guidance.cfg_scale=0` is the plain conditional model.

    diffjax train --config configs/guidance_cfg.py:digits --workdir runs/guidance_cfg_digits
    diffjax train --config configs/guidance_cfg.py:toy2d,smoke --workdir /tmp/guidance_cfg_smoke
"""

from configs.base import get_config as base_config
from configs.base import with_scale


def get_config(arg: str = "digits"):
    c = base_config()
    c.formulation = "guidance_cfg"
    c.process.update(name="ddpm", num_steps=1000, schedule="linear")
    c.prediction = "eps"
    c.objective.update(name="eps_mse")
    c.model.class_conditional = True
    c.guidance.update(p_uncond=0.1, cfg_scale=1.0)
    c.sampler.update(name="ddim", steps=50, eta=0.0)
    return with_scale(c, arg)
