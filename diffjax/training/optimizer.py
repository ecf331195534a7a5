"""The optax optimizer and learning-rate schedule named by `config.optimizer`."""

from __future__ import annotations

import optax
from ml_collections import ConfigDict

from .._checks import check_choice

OPTIMIZERS = ("adam", "adamw", "lamb")
DECAYS = ("constant", "cosine", "linear")


def learning_rate_schedule(config: ConfigDict, num_steps: int) -> optax.Schedule:
    """Linear warm-up from 0 over `warmup_steps`, then `constant`, `cosine` or `linear` decay to
    `end_factor * learning_rate` at `num_steps`."""
    check_choice("optimizer.decay", config.decay, DECAYS)
    lr, warmup = config.learning_rate, int(config.warmup_steps)
    rest = max(num_steps - warmup, 1)
    if config.decay == "constant":
        after = optax.constant_schedule(lr)
    elif config.decay == "cosine":
        after = optax.cosine_decay_schedule(lr, rest, alpha=config.end_factor)
    else:
        after = optax.linear_schedule(lr, lr * config.end_factor, rest)
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), after], [warmup])


def build_optimizer(config: ConfigDict, num_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """`clip_by_global_norm(grad_clip)` (when > 0) chained with adam, adamw or lamb."""
    check_choice("optimizer.name", config.name, OPTIMIZERS)
    schedule = learning_rate_schedule(config, num_steps)
    kwargs = dict(b1=config.b1, b2=config.b2, eps=config.eps)
    if config.name == "adam":
        opt = optax.adam(schedule, **kwargs)
    elif config.name == "adamw":
        opt = optax.adamw(schedule, weight_decay=config.weight_decay, **kwargs)
    else:
        opt = optax.lamb(schedule, weight_decay=config.weight_decay, **kwargs)
    if config.grad_clip and config.grad_clip > 0:
        opt = optax.chain(optax.clip_by_global_norm(config.grad_clip), opt)
    return opt, schedule
