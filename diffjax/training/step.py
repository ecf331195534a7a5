"""The pure training step: one loss evaluation, optimizer update and EMA update."""

from __future__ import annotations

import functools
import operator

import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec

from ..experiment import apply_model
from ..guidance import drop_labels
from .state import TrainState, ema_update

LABEL_DROPOUT_STREAM = 0x1ABE1  # a key stream of its own: runs without dropout draw exactly as before


def make_train_step(model, loss, optimizer, schedule, *, seed: int, ema_decay: float, skip_nonfinite: bool = False,
                    grad_shards: int = 0, mesh=None, label_dropout: tuple[float, int] | None = None):
    """Returns `train_step(state, batch) -> (state, metrics)`, pure and jit-able.

    The step's randomness is `fold_in(key(seed), step)`, so a resumed run draws exactly what an
    uninterrupted one would. `batch` holds `x` and optionally `label`. With `skip_nonfinite`, a step
    whose loss or gradient norm is not finite leaves the state unchanged (but for the step counter).

    With `grad_shards = G > 0` the batch is cut into G equal shards with their own keys; each device of
    `mesh` computes the gradients of its shards one after another (`shard_map` + `lax.map`, so every shard is
    the same program whatever the device count), then all G gradients are gathered and added in a fixed order.
    The step is then bit-for-bit the same on any number of devices dividing G, at the cost of
    holding G gradients at once. With 0, the batch mean is reduced however the compiler splits it, which is
    faster but rounds differently on different device counts.

    `label_dropout = (p_uncond, null_label)` replaces each label by the null label with probability p_uncond,
    so one network learns the conditional and the unconditional model (classifier-free guidance, article (九)).
    """

    def batch_loss(params, key, batch):
        loss_key, dropout_key = jax.random.split(key)
        label = batch.get("label")
        if label_dropout is not None and label is not None:
            p_uncond, null_label = label_dropout
            label = drop_labels(jax.random.fold_in(key, LABEL_DROPOUT_STREAM), label, p_uncond, null_label)

        def apply_fn(p, x, t, cond=None, method=None):
            return apply_model(model, p, x, t, cond, train=True, dropout_key=dropout_key, method=method)

        # Columns besides x and label (e.g. reflow's coupled x1) go to the loss by name.
        extras = {k: v for k, v in batch.items() if k not in ("x", "label")}
        if label is not None:
            extras["cond"] = label
        return loss(loss_key, apply_fn, params, batch["x"], **extras)

    def sharded_value_and_grad(params, key, batch):
        axis = tuple(mesh.axis_names)  # every device of the mesh (data and fsdp axes) takes its own shards
        shard_size = batch["x"].shape[0] // grad_shards

        def local(params, rows):
            per_device = rows["x"].shape[0] // shard_size
            shards = jax.tree.map(lambda a: a.reshape(per_device, shard_size, *a.shape[1:]), rows)
            first = jax.lax.axis_index(axis) * per_device

            def one_shard(args):
                i, shard = args
                return jax.value_and_grad(batch_loss)(params, jax.random.fold_in(key, first + i), shard)

            values, grads = jax.lax.map(one_shard, (jnp.arange(per_device), shards))
            return jax.lax.all_gather((values, grads), axis, tiled=True)

        values, grads = jax.shard_map(local, mesh=mesh, in_specs=(PartitionSpec(), PartitionSpec(axis)),
                                      out_specs=PartitionSpec(), check_vma=False)(params, batch)
        scale = 1.0 / grad_shards
        total = lambda a: functools.reduce(operator.add, [a[i] for i in range(grad_shards)]) * scale  # noqa: E731
        return total(values), jax.tree.map(total, grads)

    def train_step(state: TrainState, batch: dict):
        key = jax.random.fold_in(jax.random.key(seed), state.step)
        if grad_shards:
            value, grads = sharded_value_and_grad(state.params, key, batch)
        else:
            value, grads = jax.value_and_grad(batch_loss)(state.params, key, batch)
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
