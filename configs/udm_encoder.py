"""The encoder model of the unified diffusion model, article (十一) item 5: x_t = abar_t F_phi(x_0) + bbar_t eps with a
trainable encoder F_phi (scaled to unit RMS per example), a decoder q(x_0 | x_t) trained with it by one L2 loss
(udm_encoder), and the UDM reverse process in the latent: decode x̂_0, encode it, step; at t = 1 return x̂_0.

    diffjax train --config configs/udm_encoder.py:toy2d --workdir runs/udm_encoder_toy2d
    diffjax train --config configs/udm_encoder.py:digits,smoke --workdir /tmp/udm_encoder_smoke
"""

from configs.base import get_config as base_config
from configs.base import with_scale


def get_config(arg: str = "digits"):
    c = base_config()
    c.formulation = "udm_encoder"
    c.process.update(name="udm_gaussian", num_steps=1000, schedule="linear")
    c.prediction = "x0"
    c.objective.update(name="udm_encoder", latent_norm=True)
    c.sampler.update(name="udm_encoder", reverse="mixed", sigma_tilde="ddpm", steps=100)
    c = with_scale(c, arg)
    # Both halves are residual MLPs (over the flattened pixels for images).
    c.model.update(name="encoder_decoder", preset=None, ch=None, ch_mult=None, num_res_blocks=None,
                   attn_resolutions=None, num_groups=None, dropout=None,
                   hidden=c.model.hidden or 512, depth=c.model.depth or 4)
    c.sampler.clip_final = None
    if c.process.num_steps == 20:  # smoke: with_scale shrinks ddpm's steps only
        c.sampler.steps = 5
    return c
