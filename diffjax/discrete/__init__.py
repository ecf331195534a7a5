"""Discrete diffusion on token sequences, articles (十) and (十一) items 3 and 4: masking and the edit model.

    from diffjax import Predictor, sample
    from diffjax.discrete import EditReverse, MaskedCE, TokenMask, Unmask
    process = TokenMask(seq_len=64, vocab_size=2)                  # mask_token = 2
    loss = MaskedCE(process)(key, apply_fn, params, x0)            # x0: (B, 64) int32
    predictor = Predictor(logits_fn, kind="x0")                    # logits_fn(x_t, t, **cond) -> (B, L, V) logits
    x0 = sample(key, predictor, process, Unmask(unmask_per_step=1), (16, 64))

The tables map config names to classes, called with their knobs: processes as `cls(seq_len=..., vocab_size=...,
**knobs)`, objectives as `cls(process, **knobs)`, samplers as `cls(**knobs)`.
"""

from ._losses import EditCE as EditCE
from ._losses import MaskedCE as MaskedCE
from ._losses import TokenCrossEntropy as TokenCrossEntropy
from ._losses import token_cross_entropy as token_cross_entropy
from ._processes import Edit as Edit
from ._processes import TokenMask as TokenMask
from ._processes import TokenProcess as TokenProcess
from ._samplers import EditReverse as EditReverse
from ._samplers import Unmask as Unmask

PROCESSES = {
    "token_mask": TokenMask,
    "edit": Edit,
}

OBJECTIVES = {
    "masked_ce": MaskedCE,
    "edit_ce": EditCE,
}

SAMPLERS = {
    "unmask": Unmask,
    "edit": EditReverse,
}
