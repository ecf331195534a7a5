"""Gaussian-mixture data with closed-form quantities at every noise level (FORMULATIONS §1.4).

For data `p_0 = sum_k pi_k N(mu_k, diag(s_k^2))` and `x_t = alpha x_0 + sigma eps`:

* `p_t = sum_k pi_k N(alpha mu_k, alpha^2 s_k^2 + sigma^2)`, whose score comes by log-sum-exp;
* responsibilities `w_k(x_t)` are the normalised terms of that sum;
* per component `x_0 | x_t, k ~ N(m_k, v_k)` with
  `m_k = mu_k + alpha s_k^2 (x_t - alpha mu_k) / (alpha^2 s_k^2 + sigma^2)` and
  `v_k = s_k^2 sigma^2 / (alpha^2 s_k^2 + sigma^2)`;
* `E[x_0|x_t] = sum_k w_k m_k`, `Var[x_0|x_t] = sum_k w_k (v_k + (m_k - E[x_0|x_t])^2)` (per dimension).

Standard deviations may be zero (a Dirac component), as long as sigma > 0 where the model is queried.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from ..predictions import KINDS, Predictor, from_x0_eps
from ..processes import GaussianProcess


def _column(coef, x):
    """A scalar or `(B,)` coefficient as a `(B, 1, 1)`-broadcastable array for `(B, K, d)` terms."""
    coef = jnp.asarray(coef, dtype=x.dtype)
    return coef if coef.ndim == 0 else coef.reshape(-1, 1, 1)


@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    """A mixture of diagonal Gaussians in `d` dimensions; a pytree of its three arrays.

    Attributes:
        weights: `(K,)` mixture weights, summing to one.
        means: `(K, d)` component means.
        stds: `(K, d)` per-dimension component standard deviations (zero for a Dirac component).
    """

    weights: jax.Array
    means: jax.Array
    stds: jax.Array

    @property
    def dim(self) -> int:
        return self.means.shape[-1]

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    # ---- data ---------------------------------------------------------------------------------------
    def sample(self, key, n: int, return_components: bool = False):
        """Draws `n` points `(n, d)` from `p_0` (and their component indices if asked)."""
        k_comp, k_noise = jax.random.split(key)
        comp = jax.random.choice(k_comp, self.num_components, (n,), p=self.weights)
        x = self.means[comp] + self.stds[comp] * jax.random.normal(k_noise, (n, self.dim), self.means.dtype)
        return (x, comp) if return_components else x

    def mean(self):
        """The data mean `E[x_0]`, shape `(d,)`."""
        return self.weights @ self.means

    def variance(self):
        """The per-dimension data variance `Var[x_0]`, shape `(d,)`."""
        second = self.weights @ (self.stds**2 + self.means**2)
        return second - self.mean() ** 2

    # ---- noisy marginals ----------------------------------------------------------------------------
    def _terms(self, x, alpha, sigma):
        """Per-component log-densities `(B, K)` and the marginal variances `(B, K, d)` at `(alpha, sigma)`."""
        x = jnp.asarray(x)
        a, s = _column(alpha, x), _column(sigma, x)
        var = a**2 * self.stds[None] ** 2 + s**2  # (B|1, K, d)
        diff = x[:, None, :] - a * self.means[None]
        log_norm = -0.5 * (diff**2 / var + jnp.log(2 * math.pi * var)).sum(-1)
        return jnp.log(self.weights)[None] + log_norm, var, diff

    def log_prob(self, x, alpha=1.0, sigma=0.0):
        """`log p_t(x)` per row of `x` `(B, d)`, for the marginal at `(alpha, sigma)` (data by default)."""
        log_terms, _, _ = self._terms(x, alpha, sigma)
        return jax.nn.logsumexp(log_terms, axis=-1)

    def responsibilities(self, x, alpha=1.0, sigma=0.0):
        """`w_k(x_t)`, the posterior probability of each component given `x_t`, shape `(B, K)`."""
        log_terms, _, _ = self._terms(x, alpha, sigma)
        return jax.nn.softmax(log_terms, axis=-1)

    def score(self, x, alpha, sigma):
        """The exact score `grad_x log p_t(x)`, shape `(B, d)`."""
        log_terms, var, diff = self._terms(x, alpha, sigma)
        w = jax.nn.softmax(log_terms, axis=-1)
        return -(w[..., None] * diff / var).sum(1)

    def posterior(self, x, alpha, sigma):
        """The exact mean and per-dimension variance of `x_0 | x_t`, each `(B, d)`."""
        log_terms, var, diff = self._terms(x, alpha, sigma)
        w = jax.nn.softmax(log_terms, axis=-1)[..., None]
        a, s = _column(alpha, x), _column(sigma, x)
        stds2 = self.stds[None] ** 2
        m = self.means[None] + a * stds2 * diff / var
        v = stds2 * s**2 / var
        mean = (w * m).sum(1)
        return mean, (w * (v + (m - mean[:, None]) ** 2)).sum(1)  # law of total variance, no cancellation

    def posterior_mean(self, x, alpha, sigma):
        """`E[x_0 | x_t]`."""
        return self.posterior(x, alpha, sigma)[0]

    def eps(self, x, alpha, sigma):
        """The exact noise prediction `E[eps | x_t] = -sigma grad log p_t(x_t)`."""
        return -_row(sigma, jnp.asarray(x)) * self.score(x, alpha, sigma)

    # ---- as a model ---------------------------------------------------------------------------------
    def predictor(self, process: GaussianProcess, kind: str = "eps") -> Predictor:
        """The exact (Bayes-optimal) `Predictor` of `kind` for this data on `process`.

        It accepts `x_t` of shape `(B, d)` or `(B, *dims)` with `prod(dims) = d`, and `t` scalar or `(B,)`.
        Every kind is formed from the exact posterior mean through `from_x0_eps`.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown prediction kind {kind!r}; valid choices: {', '.join(KINDS)}")

        def exact(x, t):
            flat = x.reshape(x.shape[0], -1)
            alpha, sigma = process.alpha(t), process.sigma(t)
            x0 = self.posterior_mean(flat, alpha, sigma)
            s = _row(sigma, flat)
            # At sigma = 0 (clean data, e.g. the flow at t = 0) E[eps | x_t] = -sigma * score = 0.
            eps = jnp.where(s > 0, (flat - _row(alpha, flat) * x0) / jnp.where(s > 0, s, 1.0), 0.0)
            return from_x0_eps(process, flat, t, x0, eps, kind).reshape(x.shape)

        return Predictor(_ExactFn(exact, self, process, kind), kind=kind)

    # ---- classes (article (九)) ---------------------------------------------------------------------
    def component(self, k: int) -> GaussianMixture:
        """The data law of class `k`: the mixture restricted to its component `k` (weight one)."""
        if not 0 <= int(k) < self.num_components:
            raise ValueError(f"component index must lie in [0, {self.num_components}), got {k}")
        k = int(k)
        return GaussianMixture(jnp.ones((1,), self.weights.dtype), self.means[k:k + 1], self.stds[k:k + 1])

    def class_logits(self, x, alpha, sigma):
        """Logits of the exact class posterior `p(y = k | x_t)`: `log pi_k + log N(x_t; alpha mu_k, ...)`, `(B, K)`.

        Their softmax is `responsibilities`; `log_softmax` is `log p(y | x_t)` exactly.
        """
        return self._terms(x, alpha, sigma)[0]

    def classifier(self, process: GaussianProcess):
        """The exact noise-conditional classifier `fn(params, x_t, t) -> logits` on `process` (params unused)."""

        def logits(params, x, t):
            return self.class_logits(x.reshape(x.shape[0], -1), process.alpha(t), process.sigma(t))

        return _ExactFn(logits, self, process, "classifier")

    def conditional_predictor(self, process: GaussianProcess, kind: str = "eps", null_label: int | None = None,
                              label_key: str = "y") -> Predictor:
        """The exact class-conditional `Predictor`: row i is the prediction for data of class `labels[i]`.

        Called as `fn(x_t, t, **{label_key: labels})`; the label `null_label` (default K, the number of
        components) stands for "no class" and gives the unconditional prediction, as a model trained with
        classifier-free label dropout would.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown prediction kind {kind!r}; valid choices: {', '.join(KINDS)}")
        null = self.num_components if null_label is None else int(null_label)

        def exact(x, t, **cond):
            labels = jnp.asarray(cond[label_key])
            flat = x.reshape(x.shape[0], -1)
            alpha, sigma = process.alpha(t), process.sigma(t)
            x0 = self._class_posterior_mean(flat, alpha, sigma, labels, null)
            eps = (flat - _row(alpha, flat) * x0) / _row(sigma, flat)
            return from_x0_eps(process, flat, t, x0, eps, kind).reshape(x.shape)

        return Predictor(_ExactFn(exact, self, process, (kind, null, label_key)), kind=kind)

    def _class_posterior_mean(self, x, alpha, sigma, labels, null):
        """`E[x_0 | x_t, y]` per row: component `y`'s posterior mean, or the full one where `y == null`."""
        log_terms, var, diff = self._terms(x, alpha, sigma)
        one_hot = jax.nn.one_hot(jnp.clip(labels, 0, self.num_components - 1), self.num_components, dtype=x.dtype)
        w = jnp.where((labels == null)[:, None], jax.nn.softmax(log_terms, axis=-1), one_hot)[..., None]
        m = self.means[None] + _column(alpha, x) * self.stds[None] ** 2 * diff / var
        return (w * m).sum(1)

    # ---- posterior variance (articles (七), (八)) -----------------------------------------------------
    def mean_posterior_variance(self, key, alpha, sigma, num_samples: int, diagonal: bool = False):
        """Monte Carlo `E_{x_t}[tr Var(x_0 | x_t)] / d` (or per dimension) and its standard error.

        The expectation is over `x_t = alpha x_0 + sigma eps` with `x_0` from this mixture; each draw uses the
        exact posterior variance, so the only error is the sampling of x_t. Returns `(mean, stderr)`, scalars,
        or `(d,)` arrays with `diagonal=True`.
        """
        k_data, k_eps = jax.random.split(key)
        x0 = self.sample(k_data, num_samples)
        x = alpha * x0 + sigma * jax.random.normal(k_eps, x0.shape, x0.dtype)
        var = self.posterior(x, alpha, sigma)[1]
        per_draw = var if diagonal else var.mean(-1)
        return per_draw.mean(0), per_draw.std(0) / math.sqrt(num_samples)


def _row(coef, x):
    coef = jnp.asarray(coef, dtype=x.dtype)
    return coef if coef.ndim == 0 else coef.reshape(-1, 1)


@dataclasses.dataclass(frozen=True, eq=False)
class _ExactFn:
    """A hashable wrapper so an oracle predictor built twice for the same data compiles once.

    `kind` tags what the function computes (a prediction kind, or e.g. "classifier"); equal tags, process and
    data mean equal functions.
    """

    fn: object
    data: GaussianMixture
    process: GaussianProcess
    kind: object

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __hash__(self):
        return hash((self.process, self.kind, id(self.data)))

    def __eq__(self, other):
        return (isinstance(other, _ExactFn) and self.process == other.process and self.kind == other.kind
                and self.data is other.data)


jax.tree_util.register_dataclass(GaussianMixture, data_fields=["weights", "means", "stds"], meta_fields=[])


def gaussian_mixture(weights, means, stds) -> GaussianMixture:
    """Builds a `GaussianMixture`; `stds` may be a scalar, `(K,)` (isotropic) or `(K, d)`."""
    means = jnp.atleast_2d(jnp.asarray(means, dtype=jnp.result_type(float)))
    weights = jnp.asarray(weights, dtype=means.dtype)
    stds = jnp.asarray(stds, dtype=means.dtype)
    if stds.ndim == 1:
        stds = stds[:, None]
    stds = jnp.broadcast_to(stds, means.shape)
    if weights.shape != (means.shape[0],):
        raise ValueError(f"weights must have shape ({means.shape[0]},) to match means {means.shape}, "
                         f"got {weights.shape}")
    if bool(jnp.any(weights < 0)) or not math.isclose(float(weights.sum()), 1.0, rel_tol=1e-5):
        raise ValueError("mixture weights must be non-negative and sum to one")
    if bool(jnp.any(stds < 0)):
        raise ValueError("mixture standard deviations must be non-negative")
    return GaussianMixture(weights, means, stds)


def standard_normal(dim: int) -> GaussianMixture:
    """Data `N(0, I_d)`: the case in which the sigma_t = beta_t ancestral sampler is exact (article (二))."""
    return gaussian_mixture([1.0], jnp.zeros((1, dim)), 1.0)


def dirac(point) -> GaussianMixture:
    """Data concentrated at one point: the case in which posterior-sigma sampling is exact (article (二))."""
    point = jnp.atleast_1d(jnp.asarray(point, dtype=jnp.result_type(float)))
    return gaussian_mixture([1.0], point[None], 0.0)
