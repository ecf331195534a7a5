"""Forward processes: how data is destroyed. `process(name, **knobs)` builds one from an explicit table."""

from __future__ import annotations

import dataclasses

from .._checks import check_knobs, lookup
from ._continuous import EDM as EDM
from ._continuous import VE as VE
from ._continuous import VP as VP
from ._continuous import Flow as Flow
from ._continuous import SubVP as SubVP
from ._discrete import DDPM as DDPM
from ._gaussian import GaussianProcess as GaussianProcess

PROCESSES = {
    "ddpm": DDPM,
    "vp": VP,
    "subvp": SubVP,
    "ve": VE,
    "edm": EDM,
    "flow": Flow,
}


def process(name: str, **knobs) -> GaussianProcess:
    """Builds the forward process `name` with defaults from FORMULATIONS.md, overridden by `knobs`.

    Names: `ddpm` (num_steps, schedule in {linear, cosine, su}, beta_start, beta_end, cosine_s, max_beta),
    `vp` and `subvp` (beta_min=0.1, beta_max=20, t_eps=1e-3), `ve` (sigma_min=0.01, sigma_max=50),
    `edm` (sigma_min=0.002, sigma_max=80) and `flow` (t_eps=0, t_end=1).

    Raises:
        ValueError: for an unknown name or knob, naming the valid ones.
    """
    cls = lookup("process", PROCESSES, name)
    check_knobs(f"process {name!r}", knobs, [f.name for f in dataclasses.fields(cls)])
    return cls(**knobs)
