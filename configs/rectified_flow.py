"""Rectified flow, article (十七): the straight interpolation x_t = (1 - t) x_0 + t eps, velocity regression, and
Euler steps uniform in t (the 1-rectified flow; `diffjax.flows.reflow_pairs` and `straightness` give the next
rounds from a notebook).

    diffjax train --config configs/rectified_flow.py:digits --workdir runs/rectified_flow_digits
    diffjax train --config configs/rectified_flow.py:toy2d,smoke --workdir /tmp/rectified_flow_smoke
"""

from configs.base import get_config as base_config
from configs.base import with_scale


def get_config(arg: str = "digits"):
    c = base_config()
    c.formulation = "rectified_flow"
    c.process.update(name="flow")
    c.prediction = "velocity"
    c.objective.update(name="flow_matching")
    c.sampler.update(name="euler", steps=100)
    return with_scale(c, arg)
