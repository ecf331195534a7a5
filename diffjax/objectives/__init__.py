"""Training objectives and their time distributions.

`objective(name, process, prediction=..., reduction=..., time_sampling=..., **knobs)` builds a pure loss
`loss(key, apply_fn, params, x0, cond=None)`; `sample_times` draws training times on its own.
"""

from ._losses import DSM as DSM
from ._losses import ELBO as ELBO
from ._losses import OBJECTIVES as OBJECTIVES
from ._losses import VMSE as VMSE
from ._losses import X0MSE as X0MSE
from ._losses import EDMLoss as EDMLoss
from ._losses import EpsMSE as EpsMSE
from ._losses import FlowMatching as FlowMatching
from ._losses import elbo_weight as elbo_weight
from ._objective import Loss as Loss
from ._objective import objective as objective
from ._time_sampling import TIME_SAMPLINGS as TIME_SAMPLINGS
from ._time_sampling import LogitNormal as LogitNormal
from ._time_sampling import LogNormal as LogNormal
from ._time_sampling import Uniform as Uniform
from ._time_sampling import UniformDiscrete as UniformDiscrete
from ._time_sampling import default_time_sampling as default_time_sampling
from ._time_sampling import sample_times as sample_times
from ._time_sampling import time_sampler as time_sampler
