"""Flow matching and rectified flow (articles (十五), (十七)): interpolation paths from data (t = 0) to an easy prior
(t = 1), the flow-matching loss on independent or coupled pairs, the velocity ODE, reflow and straightness."""

from ._loss import FlowMatchingLoss as FlowMatchingLoss
from ._loss import flow_matching as flow_matching
from ._ode import SOLVERS as SOLVERS
from ._ode import reflow_pairs as reflow_pairs
from ._ode import sample as sample
from ._ode import solve as solve
from ._ode import straightness as straightness
from ._paths import PATHS as PATHS
from ._paths import Interpolant as Interpolant
from ._paths import Path as Path
from ._paths import Straight as Straight
from ._paths import Trigonometric as Trigonometric
from ._priors import GaussianPrior as GaussianPrior
from ._priors import UniformPrior as UniformPrior
