"""Classifier-free guidance, article (九): one conditional model trained with dropped labels, guided at sampling.

Training replaces each label by a null label with probability `p_uncond` (`drop_labels`), so one network
learns `eps(x_t, y, t)` and `eps(x_t, null, t)`. Sampling uses

    eps~ = (1 + w) eps(x_t, y, t) - w eps(x_t, null, t),    w = gamma - 1,

i.e. with exact models `eps~ = -sigma_t grad log[p_t(x_t)^(-w) p_t(x_t | y)^(1 + w)]`. The combination is affine
with weights summing to one, so it holds for every prediction kind (all are affine in eps at fixed x_t) and
`cfg` keeps the model's kind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ..predictions import Predictor


@dataclasses.dataclass(frozen=True)
class _GuidedFreeFn:
    """`(1 + w) f(x, y) - w f(x, null)` as a hashable function of `(params, x_t, t, **cond)`, one model call."""

    model_fn: Callable[..., Any]
    model_kind: str
    label_key: str

    def __call__(self, params, x, t, **cond):
        if self.label_key not in cond:
            raise ValueError(
                f"classifier-free guidance needs the class labels as cond[{self.label_key!r}]: pass "
                f"cond={{{self.label_key!r}: labels}} to dj.sample"
            )
        labels = jnp.asarray(cond[self.label_key])
        batch = x.shape[0]
        null = jnp.full_like(labels, params["null_label"])
        both = {k: jnp.concatenate([v, v]) for k, v in cond.items() if k != self.label_key}
        both[self.label_key] = jnp.concatenate([labels, null])
        t = jnp.broadcast_to(jnp.asarray(t), (batch,))
        out = Predictor(self.model_fn, self.model_kind, params["model"])(
            jnp.concatenate([x, x]), jnp.concatenate([t, t]), **both
        )
        w = params["w"].astype(out.dtype)
        return (1.0 + w) * out[:batch] - w * out[batch:]


def cfg(predictor: Predictor, w, null_label, *, label_key: str = "y") -> Predictor:
    """Classifier-free guidance `(1 + w) f(x_t, y, t) - w f(x_t, null, t)` as a `Predictor` (article (九)).

    The conditional and unconditional outputs come from one model call on a doubled batch. Every entry of
    `cond` other than the labels must have the batch as its leading axis (it is repeated). `w` and
    `null_label` are traced, so sweeping the guidance weight does not recompile. w = 0 is the conditional model.

    Args:
        predictor: a class-conditional model `fn(x_t, t, **{label_key: labels})` of any kind.
        w: the guidance weight (gamma - 1).
        null_label: the label that stands for "no condition" during training (see `drop_labels`).
        label_key: the entry of `cond` holding the integer labels `(batch,)`.
    """
    if not isinstance(predictor, Predictor):
        raise ValueError(f"expected a diffjax Predictor, got {type(predictor).__name__}")
    params = {"model": predictor.params, "w": jnp.asarray(w), "null_label": jnp.asarray(null_label)}
    return Predictor(_GuidedFreeFn(predictor.fn, predictor.kind, label_key), predictor.kind, params)


def drop_labels(key, labels, p_uncond, null_label):
    """Replaces each label by `null_label` with probability `p_uncond`, independently (CFG training, article (九)).

    Pure: the same key drops the same labels. Ho & Salimans use `p_uncond` in 0.1-0.2.
    """
    labels = jnp.asarray(labels)
    drop = jax.random.bernoulli(key, p_uncond, labels.shape)
    return jnp.where(drop, jnp.asarray(null_label, labels.dtype), labels)
