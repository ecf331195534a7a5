"""Flow matching, article (十五): the straight path x_t = (1 - t) x_0 + t eps between data and a Gaussian prior,
a network regressing the conditional velocity eps - x_0 (uniform t), and the learned ODE solved backwards by
diffrax's adaptive Tsit5.

    diffjax train --config configs/flow_matching.py:digits --workdir runs/flow_matching_digits
    diffjax train --config configs/flow_matching.py:toy2d,smoke --workdir /tmp/flow_matching_smoke
"""

from configs.base import get_config as base_config
from configs.base import with_scale


def get_config(arg: str = "digits"):
    c = base_config()
    c.formulation = "flow_matching"
    c.process.update(name="flow")
    c.prediction = "velocity"
    c.objective.update(name="flow_matching")
    c.sampler.update(name="ode", solver="tsit5", adaptive=True, rtol=1e-4, atol=1e-4)
    return with_scale(c, arg)
