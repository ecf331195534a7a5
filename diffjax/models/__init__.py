"""Networks: Flax Linen modules that map `(x, t, cond)` to an output shaped like `x`; they know no process.

    from diffjax.models import PRESETS, build_model, count_params
    model = build_model("unet", **PRESETS["digits"])
    variables = model.init({"params": key}, x, t)                    # x: (B, H, W, C); t: (B,) int or float
    out = model.apply(variables, x, t, cond, train=True, rngs={"dropout": key})

`cond` is None or (B,) integer labels; label `num_classes` (and `cond=None`) is the null class used by
classifier-free guidance. `t` is whatever time the process uses; `time_scale` multiplies it first.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax

from .._checks import check_knobs, lookup
from ._blocks import AttnBlock as AttnBlock
from ._blocks import ResBlock as ResBlock
from ._embedding import TIME_EMBEDDINGS as TIME_EMBEDDINGS
from ._embedding import TimeEmbedding as TimeEmbedding
from ._embedding import fourier_embedding as fourier_embedding
from ._embedding import sinusoidal_embedding as sinusoidal_embedding
from ._encoder_decoder import EncoderDecoder as EncoderDecoder
from ._mlp import MLP as MLP
from ._norm import GroupNorm as GroupNorm
from ._norm import group_norm as group_norm
from ._transformer import Transformer as Transformer
from ._unet import PRESETS as PRESETS
from ._unet import UNet as UNet

MODELS = {
    "mlp": MLP,
    "encoder_decoder": EncoderDecoder,
    "unet": UNet,
    "transformer": Transformer,
}

_TUPLE_FIELDS = ("ch_mult", "attn_resolutions")


def model_fields(name: str) -> tuple[str, ...]:
    """The keyword arguments `build_model(name, ...)` accepts (the module's dataclass fields)."""
    cls = lookup("model", MODELS, name)
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("parent", "name") and f.init)


def build_model(name: str, **kwargs) -> nn.Module:
    """Builds the network `name` (`mlp` or `unet`) with its defaults overridden by `kwargs`.

    Lists (e.g. `ch_mult` from a config) become tuples. Structural mistakes (e.g. GroupNorm groups that do
    not divide a width) fail here, before anything is traced.

    Raises:
        ValueError: for an unknown name or keyword, naming the valid ones, or an invalid value.
    """
    cls = lookup("model", MODELS, name)
    check_knobs(f"model {name!r}", kwargs, model_fields(name))
    kwargs = {k: tuple(v) if k in _TUPLE_FIELDS and v is not None else v for k, v in kwargs.items()}
    return cls(**kwargs)


def count_params(variables) -> int:
    """Number of scalars in `variables["params"]` (or in the whole tree when it has no `params` key).

    Works on arrays and on the `jax.ShapeDtypeStruct`s of `jax.eval_shape(model.init, ...)`.
    """
    tree = variables.get("params", variables) if hasattr(variables, "get") else variables
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree))
