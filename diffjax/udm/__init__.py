"""The Unified Diffusion Model (UDM) for continuous data, articles (十) and (十一).

A forward process is any corruption `x_t = F_t(x_0, eps)` on the steps t = 0..T; a model restores x̂_0 from
`(x_t, t)`; the reverse process predicts x̂_0 and then samples `x_{t-1} ~ p(x_{t-1} | x_t, x_0 = x̂_0)`.

    import diffjax as dj
    blur = dj.udm.fit_blur_prior(dj.udm.corruption("cold_blur", num_steps=300), data)
    loss = dj.udm.OBJECTIVES["udm_l1"](blur)                  # loss(key, apply_fn, params, x0, cond=None)
    x0 = dj.sample(key, dj.Predictor(restorer, kind="x0"), blur, dj.udm.Cold(method="improved"), (16, 32, 32, 3))

Tables (name -> builder or class):

* `PROCESSES`: `udm_gaussian` (the DDPM schedule's `abar_t x_0 + bbar_t eps`; knobs of `dj.process("ddpm")`),
  `cold_blur` (cumulative Gaussian blur plus small noise) and `mask_pixels` (pixels hidden in a fixed order plus
  small noise); each builder validates its knobs.
* `OBJECTIVES`: `udm_l2`, `udm_l1` (`builder(corruption, prediction="x0", reduction="mean")`) and `udm_encoder`
  (`builder(corruption, latent_norm=True, reduction="mean")`).
* `SAMPLERS`: `udm` (reverse in {baseline, deterministic, mixed}), `cold` (method in {naive, improved}) and
  `udm_encoder`; run them with `dj.sample` on a corruption.
"""

from .._checks import lookup
from ._blur import ColdBlur as ColdBlur
from ._blur import blur_matrix as blur_matrix
from ._blur import cold_blur as cold_blur
from ._blur import fit_blur_prior as fit_blur_prior
from ._blur import gaussian_kernel as gaussian_kernel
from ._cold import Cold as Cold
from ._corruption import AdditiveCorruption as AdditiveCorruption
from ._corruption import Corruption as Corruption
from ._encoder import EncoderLoss as EncoderLoss
from ._encoder import UDMEncoder as UDMEncoder
from ._encoder import udm_encoder as udm_encoder
from ._gaussian import UDMGaussian as UDMGaussian
from ._gaussian import udm_gaussian as udm_gaussian
from ._losses import RestorationLoss as RestorationLoss
from ._losses import udm_l1 as udm_l1
from ._losses import udm_l2 as udm_l2
from ._mask import MaskPixels as MaskPixels
from ._mask import mask_pixels as mask_pixels
from ._reverse import UDM as UDM
from ._sampling import CorruptionSampler as CorruptionSampler

PROCESSES = {
    "udm_gaussian": udm_gaussian,
    "cold_blur": cold_blur,
    "mask_pixels": mask_pixels,
}

OBJECTIVES = {
    "udm_l2": udm_l2,
    "udm_l1": udm_l1,
    "udm_encoder": udm_encoder,
}

SAMPLERS = {
    "udm": UDM,
    "cold": Cold,
    "udm_encoder": UDMEncoder,
}


def corruption(name: str, **knobs) -> Corruption:
    """Builds the UDM corruption `name` (one of `PROCESSES`) with defaults, overridden by `knobs`.

    Raises:
        ValueError: for an unknown name or knob, naming the valid ones.
    """
    return lookup("corruption", PROCESSES, name)(**knobs)
