"""Poisson flow generative models (article (十三)): data on the plane z = 0 of R^{d+1}, the Poisson field's
normalised large-batch target, its training loss, the field-line ODE sampler and the exact field of point sets.

    import diffjax as dj
    from diffjax import pfgm

    process = pfgm.PoissonProcess(**pfgm.PRESETS["toy2d"])
    loss = pfgm.OBJECTIVES["pfgm"](process, chunk_size=1024)    # loss(key, apply_fn, params, x0)
    exact = pfgm.exact_poisson_field(points, weights)
    x0 = dj.sample(key, exact.predictor(process), process, pfgm.SAMPLERS["pfgm"](), (n, d))

The network sees `(x, t)` with `t = process.network_time(z)` and returns the data's shape with one extra channel
on the last axis (`field_output_channels`, `split_field`).
"""

from ._field import ExactPoissonField as ExactPoissonField
from ._field import exact_poisson_field as exact_poisson_field
from ._field import field_output_channels as field_output_channels
from ._field import field_sums as field_sums
from ._field import join_field as join_field
from ._field import normalize as normalize
from ._field import normalized_field as normalized_field
from ._field import normalized_z_component as normalized_z_component
from ._field import poisson_target as poisson_target
from ._field import split_field as split_field
from ._loss import PoissonFieldLoss as PoissonFieldLoss
from ._process import PRESETS as PRESETS
from ._process import TARGETS as TARGETS
from ._process import PoissonProcess as PoissonProcess
from ._process import scaled_knobs as scaled_knobs
from ._sampler import PoissonFlowODE as PoissonFlowODE

PROCESSES = {"pfgm": PoissonProcess}
OBJECTIVES = {"pfgm": PoissonFieldLoss}
SAMPLERS = {"pfgm": PoissonFlowODE}
