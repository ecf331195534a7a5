"""Green's-function ODEs (article (十四)): isotropic kernels `p_t(x_t | x_0)` whose flux makes the continuity
equation hold, the conditional-velocity loss, the ODE sampler and the exact velocity of small point sets.

    import diffjax as dj
    from diffjax import green

    process = green.green_process("cdf_tanh", T=40.0)
    loss = green.OBJECTIVES["green_velocity"](process)          # loss(key, apply_fn, params, x0)
    exact = green.exact_green_velocity(points, weights, process.kernel)
    x0 = dj.sample(key, exact.predictor(), process, green.SAMPLERS["green_ode"](), (n, d))
"""

from ._exact import ExactGreenVelocity as ExactGreenVelocity
from ._exact import exact_green_velocity as exact_green_velocity
from ._exact import sample_marginal as sample_marginal
from ._kernels import KERNELS as KERNELS
from ._kernels import Gaussian as Gaussian
from ._kernels import Gravity as Gravity
from ._kernels import Kernel as Kernel
from ._kernels import RadialCDF as RadialCDF
from ._kernels import green_function as green_function
from ._kernels import log_sphere_area as log_sphere_area
from ._kernels import random_directions as random_directions
from ._loss import GreenVelocityLoss as GreenVelocityLoss
from ._process import GreenProcess as GreenProcess
from ._process import green_process as green_process
from ._sampler import GreenODE as GreenODE

PROCESSES = {"green": GreenProcess}
OBJECTIVES = {"green_velocity": GreenVelocityLoss}
SAMPLERS = {"green_ode": GreenODE}
