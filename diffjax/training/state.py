"""The training state pytree and its EMA."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes: `step`, `params`, `ema_params`, `opt_state`."""

    step: jax.Array
    params: Any
    ema_params: Any
    opt_state: Any


def ema_decay(decay: float | None, halflife_images: float | None, batch_size: int) -> float:
    """The per-step EMA decay: given directly, or from a half-life in images (EDM): `0.5^(batch / halflife)`."""
    if halflife_images is not None:
        return 0.5 ** (batch_size / float(halflife_images))
    return float(decay if decay is not None else 0.0)


def ema_update(ema_params, params, decay: float):
    """`ema <- decay * ema + (1 - decay) * params`."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)


def init_state(model, optimizer, key, example_x, example_t, example_cond=None) -> TrainState:
    """A fresh state: network weights from `model.init`, EMA equal to them, optimizer state from optax."""
    params = model.init({"params": key}, example_x, example_t, example_cond)["params"]
    ema_params = jax.tree.map(jnp.copy, params)  # its own buffers: the state is donated to the step
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, ema_params=ema_params,
                      opt_state=optimizer.init(params))
