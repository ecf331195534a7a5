"""Cold diffusion as a unified diffusion model, article (十一) item 2: x_t = B_t x_0 + sigma eps with a cumulative
Gaussian blur B_t (kernel 11, per-step std 0.35 + 0.01 t, sigma = 0.01), a restorer trained with the L1 loss
||x_0 - G_t(F_t(x_0))||_1 (udm_l1), and the improved sampler x_{t-1} = x_t + F_{t-1}(x̂_0) - F_t(x̂_0)
(--config.sampler.method=naive for x_{t-1} = F_{t-1}(x̂_0)). The prior is a Gaussian fitted to the data's
per-channel means (what a full blur keeps). On 8x8 digits 50 steps blur to a flat image.

    diffjax train --config configs/udm_cold_blur.py:digits --workdir runs/udm_cold_blur_digits
    diffjax train --config configs/udm_cold_blur.py:digits,smoke --workdir /tmp/udm_cold_blur_smoke
"""

from configs.base import get_config as base_config
from configs.base import with_scale


def get_config(arg: str = "digits"):
    c = base_config()
    c.formulation = "udm_cold_blur"
    c.process.update(name="cold_blur", num_steps=50, kernel_size=11, blur_std_start=0.35, blur_std_step=0.01,
                     cold_noise_sigma=0.01)
    c.prediction = "x0"
    c.objective.update(name="udm_l1")
    c.sampler.update(name="cold", method="improved")
    c = with_scale(c, arg)
    c.sampler.clip_final = None
    if c.training.num_steps == 2:  # smoke
        c.process.num_steps = 5
    return c
