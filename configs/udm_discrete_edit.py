"""The discrete edit model as a unified diffusion model, article (十一) item 3: binarised digits as 64-token
sequences, t positions replaced by a *different* random token (so the edit set is identifiable and F_t invertible),
a bidirectional Transformer predicting x_0 (cross-entropy at every position), and Su's reverse: predict x̂_0
constrained to differ from x_t in exactly t positions, copy x̂_0's token at one differing position, repeat 64 times
(--config.sampler.reverse=baseline for x_{t-1} = F_{t-1}(x̂_0)).

    diffjax train --config configs/udm_discrete_edit.py:digits --workdir runs/udm_discrete_edit_digits
    diffjax train --config configs/udm_discrete_edit.py:digits,smoke --workdir /tmp/udm_discrete_edit_smoke
"""

from configs.base import get_config as base_config
from configs.base import with_scale
from configs.udm_mask import token_data, token_scale


def get_config(arg: str = "digits"):
    c = base_config()
    c.formulation = "udm_discrete_edit"
    c.process.update(name="edit")
    c.prediction = "x0"
    c.objective.update(name="edit_ce", positions="all")
    c.sampler.update(name="edit", reverse="deterministic", select="sample", temperature=1.0)
    c = with_scale(c, token_scale(arg))
    token_data(c)
    return c
