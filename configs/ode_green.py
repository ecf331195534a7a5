"""An ODE built from a Green's function, article (十四): the space-time isotropic (gravity) kernel
p_t(x_t | x_0) ∝ t / (t^2 + ||x_t - x_0||^2)^{(d+1)/2} (PFGM's law, with x_t = x_0 + t z), a network regressing the
conditional velocity, and dx/dt = f_t(x) integrated from T = 40 to t_min through diffrax. --config.process.kernel=cdf
--config.process.psi=tanh (or exp) switches to a radial-CDF kernel psi_t(r) = tanh(r / t).

    diffjax train --config configs/ode_green.py:toy2d --workdir runs/ode_green_toy2d
    diffjax train --config configs/ode_green.py:toy2d,smoke --workdir /tmp/ode_green_smoke
"""

from configs.base import get_config as base_config
from configs.base import with_scale


def get_config(arg: str = "toy2d"):
    c = base_config()
    c.formulation = "ode_green"
    c.process.update(name="green", kernel="gravity", T=40.0, t_min=1e-3)
    c.prediction = "velocity"
    c.objective.update(name="green_velocity")
    c.sampler.update(name="green_ode", solver="tsit5", adaptive=True, rtol=1e-4, atol=1e-4)
    c = with_scale(c, arg or "toy2d")
    c.sampler.clip_final = None
    c.model.time_scale = 1.0
    if c.training.num_steps == 2:  # smoke: an untrained field is stiff for an adaptive solver
        c.sampler.update(adaptive=False, steps=8)
    return c
