"""The Poisson flow generative model, article (十三): data on the plane z = 0 of R^{d+1}, points perturbed along the
field lines (m ~ U[0, M], tau = 0.03, sigma = 0.01), a network regressing the normalised empirical Poisson field
over the batch (gamma = 5), and the backward field-line ODE dx/dz = E_x / E_z in log z from z_max (hemisphere
prior) to z_min through diffrax (adaptive Tsit5, rtol = atol = 1e-4), with the z_exp trick. The network returns
one extra channel: the field's z component. z_max, M, upper_norm and z_exp follow the data scale (see
diffjax.pfgm.PRESETS).

    diffjax train --config configs/pfgm.py:toy2d --workdir runs/pfgm_toy2d
    diffjax train --config configs/pfgm.py:digits,smoke --workdir /tmp/pfgm_smoke
"""

from configs.base import get_config as base_config
from configs.base import with_scale
from diffjax.pfgm import PRESETS


def get_config(arg: str = "toy2d"):
    c = base_config()
    c.formulation = "pfgm"
    c.process.update(name="pfgm", tau=0.03, sigma_end=0.01, gamma=5.0, z_min=1e-3, restrict_M=True,
                     target="normalized_empirical")
    c.prediction = "x0"  # nominal: the network's output is the field, read by the pfgm sampler
    c.objective.update(name="pfgm")
    c.sampler.update(name="pfgm", solver="tsit5", adaptive=True, rtol=1e-4, atol=1e-4)
    c = with_scale(c, arg or "toy2d")
    c.process.update(**PRESETS["toy2d" if c.data.name == "toy2d" else "digits" if c.data.name == "digits"
                               else "cifar10"])
    c.sampler.clip_final = None
    c.model.time_scale = 1.0
    if c.training.num_steps == 2:  # smoke: an untrained field is stiff for an adaptive solver
        c.sampler.update(adaptive=False, steps=8)  # the network sees z itself
    return c
