"""Reflow, article (十七) (Liu et al.'s k-rectified flow): train the 1-rectified flow (straight path x_t = (1 - t) x_0
+ t eps, velocity regression), then for each of reflow.rounds rounds carry reflow.num_pairs noises to data with the
current flow's ODE (adaptive Tsit5), and train the next flow on those coupled pairs from the current weights
(W/reflow_<r>). The straightness of each round's ODE paths is written to W/reflow.json (0 = straight lines); the
last round samples with few Euler steps (--config.sampler.steps=1 for one-step generation).

    diffjax train --config configs/reflow.py:toy2d --workdir runs/reflow_toy2d
    diffjax train --config configs/reflow.py:digits,smoke --workdir /tmp/reflow_smoke
"""

from configs.base import get_config as base_config
from configs.base import with_scale
from diffjax.config import parse_flags


def get_config(arg: str = "digits"):
    c = base_config()
    c.formulation = "reflow"
    c.process.update(name="flow")
    c.prediction = "velocity"
    c.objective.update(name="flow_matching")
    c.reflow.update(rounds=1, num_pairs=10_000, solver="tsit5")
    c.sampler.update(name="euler", steps=4)
    c = with_scale(c, arg)
    if "smoke" in parse_flags(arg or "digits", ("toy2d", "digits", "cifar10", "celeba64", "smoke", "cpu")):
        c.reflow.update(num_pairs=32, solver="euler", ode_steps=4)
    return c
