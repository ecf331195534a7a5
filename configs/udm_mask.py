"""Masked generation as a unified diffusion model, article (十一) item 4: binarised digits as 64-token sequences,
t tokens replaced by an absorbing [MASK], a bidirectional Transformer trained with cross-entropy at the masked
positions (BERT-like, non-autoregressive), and the improved reverse process: pick one masked position, sample its
token from q(x_0 | x_t), unmask it (any-order autoregressive; --config.sampler.unmask_per_step=k for k per step).

    diffjax train --config configs/udm_mask.py:digits --workdir runs/udm_mask_digits
    diffjax train --config configs/udm_mask.py:digits,smoke --workdir /tmp/udm_mask_smoke
"""

from configs.base import get_config as base_config
from configs.base import with_scale


def get_config(arg: str = "digits"):
    c = base_config()
    c.formulation = "udm_mask"
    c.process.update(name="token_mask")
    c.prediction = "x0"
    c.objective.update(name="masked_ce", positions="corrupted")
    c.sampler.update(name="unmask", unmask_per_step=1, order="random", temperature=1.0)
    c = with_scale(c, token_scale(arg))
    token_data(c)
    return c


def token_scale(arg: str) -> str:
    """Token configs run on binarised digits: `toy2d` is not a token set, so only digits (and smoke) apply."""
    flags = [f for f in (arg or "digits").split(",") if f]
    if any(f not in ("digits", "smoke") for f in flags):
        from diffjax.config import ConfigError

        raise ConfigError(f"token configs run on binarised digits: use 'digits' or 'digits,smoke', got {arg!r}")
    return arg or "digits"


def token_data(c) -> None:
    """Binarised digits, a small Transformer, and sampling in one batch (the sampler is cheap)."""
    smoke = c.training.num_steps == 2
    c.data.name = "binary_digits"
    c.model.update(name="transformer", preset=None, ch=None, ch_mult=None, num_res_blocks=None,
                   attn_resolutions=None, num_groups=None, dropout=None, num_layers=1 if smoke else 4,
                   num_heads=2 if smoke else 4, width=16 if smoke else 128)
    c.sampler.clip_final = None
    if not smoke:
        c.training.update(num_steps=10_000, batch_size=128, log_every=200, checkpoint_every=2000)
        c.optimizer.update(learning_rate=5e-4, warmup_steps=500, decay="cosine")
