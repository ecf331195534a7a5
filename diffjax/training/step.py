"""The pure training step: one loss evaluation, optimizer update and EMA update."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ..experiment import apply_model
from .state import TrainState, ema_update


def make_train_step(model, loss, optimizer, schedule, *, seed: int, ema_decay: float, skip_nonfinite: bool = False):
    """Returns `train_step(state, batch) -> (state, metrics)`, pure and jit-able.

    The step's randomness is `fold_in(key(seed), step)`, so a resumed run draws exactly what an
    uninterrupted one would. `batch` holds `x` and optionally `label`. With `skip_nonfinite`, a step
    whose loss or gradient norm is not finite leaves the state unchanged (but for the step counter).
    """

    def train_step(state: TrainState, batch: dict):
        key = jax.random.fold_in(jax.random.key(seed), state.step)
        loss_key, dropout_key = jax.random.split(key)

        def loss_fn(params):
            def apply_fn(p, x, t, cond=None):
                return apply_model(model, p, x, t, cond, train=True, dropout_key=dropout_key)

            return loss(loss_key, apply_fn, params, batch["x"], batch.get("label"))

        value, grads = jax.value_and_grad(loss_fn)(state.params)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema_params = ema_update(state.ema_params, params, ema_decay)
        new = TrainState(step=state.step + 1, params=params, ema_params=ema_params, opt_state=opt_state)
        finite = jnp.isfinite(value) & jnp.isfinite(grad_norm)
        if skip_nonfinite:
            keep = lambda a, b: jax.tree.map(lambda x, y: jnp.where(finite, x, y), a, b)  # noqa: E731
            new = TrainState(step=state.step + 1, params=keep(params, state.params),
                             ema_params=keep(ema_params, state.ema_params),
                             opt_state=keep(opt_state, state.opt_state))
        metrics = {"loss": value, "grad_norm": grad_norm, "learning_rate": schedule(state.step),
                   "skipped": (~finite).astype(jnp.int32)}
        return new, metrics

    return train_step
