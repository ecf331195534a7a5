"""Classifier guidance with a noise-conditional classifier `log p(y | x_t, t)`, article (九).

Bayes' rule splits the conditional score as `grad log p_t(x_t | y) = grad log p_t(x_t) + grad log p_t(y | x_t)`,
so a noise prediction becomes (article (九), "general/continuous" form, with a scale gamma)

    eps~(x_t, t, y) = eps_theta(x_t, t) - gamma sigma_t grad_{x_t} log p(y | x_t, t).

`classifier_guidance` returns that as a new `Predictor`, usable by every sampler (ancestral, DDIM, ODE, ...).
With gamma = 1, the exact unconditional model and the exact class posterior it is exactly the class-conditional
noise prediction. The ancestral sampler can instead shift its mean, `x_s = mu(x_t) + gamma sigma_ts^2 grad log
p(y | x_t) + sigma_ts z` (article (九)'s first form): `dj.sampler("ancestral", guidance="mean")`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax

from .._broadcast import expand_to
from .._checks import check_choice
from ..objectives import time_sampler
from ..predictions import Predictor
from ..processes import GaussianProcess

CLASSIFIER_INPUTS = ("x_t", "x0_hat")


@dataclasses.dataclass(frozen=True)
class _ClassifierGuidedFn:
    """The guided noise prediction as a hashable function of `(params, x_t, t, **cond)`."""

    process: GaussianProcess
    model_fn: Callable[..., Any]
    model_kind: str
    classifier_fn: Callable[..., Any]
    label_key: str
    classifier_input: str
    model_takes_label: bool

    def model(self, params) -> Predictor:
        return Predictor(self.model_fn, self.model_kind, params["model"])

    def model_cond(self, cond):
        return cond if self.model_takes_label else {k: v for k, v in cond.items() if k != self.label_key}

    def labels(self, cond):
        if self.label_key not in cond:
            raise ValueError(
                f"classifier guidance needs the class labels as cond[{self.label_key!r}]: pass "
                f"cond={{{self.label_key!r}: labels}} to dj.sample"
            )
        return cond[self.label_key]

    def log_prob_grad(self, params, x, t, cond):
        """`grad_{x_t} log p(y | x_t, t)` per example (rows of a batch do not interact)."""
        labels = jnp.asarray(self.labels(cond))
        model_cond = self.model_cond(cond)

        def total_log_prob(x):
            inputs = x
            if self.classifier_input == "x0_hat":  # a clean classifier on x̂_0(x_t), article (九)
                inputs = self.model(params).x0_eps(self.process, x, t, **model_cond)[0]
            logits = self.classifier_fn(params["classifier"], inputs, t)
            log_probs = jax.nn.log_softmax(logits, axis=-1)
            return jnp.take_along_axis(log_probs, labels.astype(jnp.int32)[:, None], axis=-1).sum()

        return jax.grad(total_log_prob)(x)

    def __call__(self, params, x, t, **cond):
        eps = self.model(params).predict(self.process, x, t, "eps", **self.model_cond(cond))
        shift = expand_to(self.process.sigma(t), x) * self.log_prob_grad(params, x, t, cond)
        return eps - params["scale"].astype(x.dtype) * shift


@dataclasses.dataclass(frozen=True)
class ClassifierGuided(Predictor):
    """A classifier-guided noise predictor (kind `eps`), built by `classifier_guidance`.

    `params` holds the model's and the classifier's parameters and the scale, so new weights or a new scale
    reuse the compiled sampler. The ancestral sampler's `guidance="mean"` reads its two parts separately.
    """

    def unguided_x0_eps(self, process, x, t, **cond):
        """The unguided model's `(x_0, eps)` at `(x_t, t)`."""
        return self.fn.model(self.params).x0_eps(process, x, t, **self.fn.model_cond(cond))

    def scaled_log_prob_grad(self, x, t, **cond):
        """`gamma grad_{x_t} log p(y | x_t, t)`."""
        return self.params["scale"].astype(x.dtype) * self.fn.log_prob_grad(self.params, x, t, cond)


jax.tree_util.register_dataclass(ClassifierGuided, data_fields=["params"], meta_fields=["fn", "kind"])


def classifier_guidance(
    predictor: Predictor,
    process: GaussianProcess,
    classifier_fn,
    classifier_params=None,
    *,
    scale=1.0,
    label_key: str = "y",
    classifier_input: str = "x_t",
    model_takes_label: bool = False,
) -> ClassifierGuided:
    """The guided noise prediction `eps - scale * sigma_t grad log p(y | x_t, t)` as a `Predictor` (article (九)).

    Args:
        predictor: the (usually unconditional) model, of any kind; it is converted to eps.
        process: the process it was trained on (for sigma_t and the conversion).
        classifier_fn: `classifier_fn(params, x, t) -> logits` of shape `(batch, num_classes)`, with `t` the
            process time `(batch,)`; noise-conditional unless `classifier_input="x0_hat"`.
        classifier_params: its parameters (a pytree; may be None).
        scale: gamma; 1 is Bayes' rule, larger sharpens (a traced value: changing it does not recompile).
        label_key: the entry of `cond` (passed to `dj.sample`) holding the integer labels `(batch,)`.
        classifier_input: `x_t` (a noisy classifier) or `x0_hat` (a clean classifier on the model's x̂_0,
            article (九)'s `p_o(y | x̂_0(x_t))`; the gradient then flows through the model, a second model
            evaluation plus its backward pass per step).
        model_takes_label: also pass the labels to the model (guiding a class-conditional model).
    """
    if not isinstance(predictor, Predictor):
        raise ValueError(f"expected a diffjax Predictor, got {type(predictor).__name__}")
    if not callable(classifier_fn):
        raise ValueError(
            f"classifier_fn must be callable as classifier_fn(params, x_t, t), got {type(classifier_fn).__name__}"
        )
    check_choice("classifier input", classifier_input, CLASSIFIER_INPUTS)
    fn = _ClassifierGuidedFn(
        process, predictor.fn, predictor.kind, classifier_fn, label_key, classifier_input, model_takes_label
    )
    params = {"model": predictor.params, "classifier": classifier_params, "scale": jnp.asarray(scale)}
    return ClassifierGuided(fn, "eps", params)


@dataclasses.dataclass(frozen=True)
class ClassifierLoss:
    """The cross-entropy `E_{t, x_0, eps} -log p_phi(y | x_t, t)` of a noise-conditional classifier (article (九)).

    Call it as `loss(key, apply_fn, params, x0, labels)` (the labels may also be passed as `cond=`, the name
    the training loop uses); `apply_fn(params, x_t, t)` returns logits `(batch, num_classes)`. `t` comes from
    the time sampling and `x_t = alpha_t x_0 + sigma_t eps`. Frozen, hashable.
    """

    process: GaussianProcess
    time_sampling: Any
    needs_labels: ClassVar[bool] = True  # the training loop keeps the labels of unconditional runs for it

    def __call__(self, key, apply_fn, params, x0, cond):
        x0, labels = jnp.asarray(x0), cond
        if labels is None:
            raise ValueError("the classifier loss needs the class labels of x0; train it on a labelled dataset")
        key_t, key_eps = jax.random.split(key)
        t = self.time_sampling(key_t, self.process, x0.shape[0])
        x_t = self.process.perturb(x0, t, jax.random.normal(key_eps, x0.shape, x0.dtype))
        logits = apply_fn(params, x_t, t)
        return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(labels)).mean()


def classifier_loss(process: GaussianProcess, *, time_sampling: str | None = None, **knobs) -> ClassifierLoss:
    """Builds the noise-conditional classifier's training loss on `process` (article (九)).

    `time_sampling` and its `knobs` as in `dj.objective` (default: uniform steps for DDPM, uniform times
    otherwise).
    """
    return ClassifierLoss(process, time_sampler(process, time_sampling, **knobs))
