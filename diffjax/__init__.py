"""diffjax: one math core for generative diffusion models.

The notebook API (DESIGN.md §3): a formulation is a choice of process, prediction, objective and sampler.

    import diffjax as dj
    process = dj.process("ddpm", num_steps=1000, schedule="linear")
    predictor = dj.Predictor(fn, kind="eps")
    x0 = dj.sample(key, predictor, process, dj.sampler("ddim", steps=50, eta=0.0), (64, 2))
    loss = dj.objective("eps_mse", process)(key, apply_fn, params, x0)

Beyond Gaussian noise, the same three names build the unified diffusion model's corruptions (`cold_blur`,
`mask_pixels`, `udm_gaussian`), token diffusion (`token_mask`, `edit`), the Poisson flow (`pfgm`) and Green's-function
ODEs (`green`), with their objectives and samplers (`dj.udm`, `dj.discrete`, `dj.pfgm`, `dj.green`).
"""

from . import discrete as discrete
from . import flows as flows
from . import green as green
from . import guidance as guidance
from . import likelihood as likelihood
from . import pfgm as pfgm
from . import testing as testing
from . import udm as udm
from . import variance as variance
from .catalog import objective as objective
from .catalog import process as process
from .catalog import sampler as sampler
from .guidance import cfg as cfg
from .guidance import classifier_guidance as classifier_guidance
from .guidance import drop_labels as drop_labels
from .likelihood import bits_per_dim as bits_per_dim
from .likelihood import elbo_bits_per_dim as elbo_bits_per_dim
from .likelihood import log_likelihood as log_likelihood
from .objectives import OBJECTIVES as OBJECTIVES
from .objectives import TIME_SAMPLINGS as TIME_SAMPLINGS
from .objectives import sample_times as sample_times
from .preconditioning import edm_coefficients as edm_coefficients
from .preconditioning import edm_loss_weight as edm_loss_weight
from .preconditioning import precondition as precondition
from .predictions import KINDS as KINDS
from .predictions import Predictor as Predictor
from .predictions import convert as convert
from .processes import PROCESSES as PROCESSES
from .processes import GaussianProcess as GaussianProcess
from .samplers import SAMPLERS as SAMPLERS
from .samplers import ddim_invert as ddim_invert
from .samplers import sample as sample
from .samplers import slerp as slerp
from .variance import estimate_x0_variance as estimate_x0_variance
from .variance import with_x0_variance as with_x0_variance

__version__ = "0.1.0"
