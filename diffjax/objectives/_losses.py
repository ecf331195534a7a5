"""The training objectives: each is a weighted regression `E_{t, x_0, eps} w(t) ||pred - target||^2`.

With `x_t = alpha x_0 + sigma eps` every target is the exact value of one prediction kind at the true pair
`(x_0, eps)` (`predictions.from_x0_eps`), so an objective is just a target kind and a weight `w(t)`:

| name            | target kind | target                      | w(t)                                      |
|-----------------|-------------|-----------------------------|-------------------------------------------|
| `eps_mse`       | `eps`       | `eps`                       | 1 (DDPM's simple loss, (一))              |
| `elbo`          | `eps`       | `eps`                       | `beta_t^4/(2 bbar_t^2 alpha_t^2 sigma_t^2)` ((二)) |
| `x0_mse`        | `x0`        | `x_0`                       | 1 ((三))                                  |
| `v_mse`         | `v`         | `alpha eps - sigma x_0`     | 1                                         |
| `dsm`           | `score`     | `-eps / sigma`              | `sigma^2`, `g^2` or 1 ((五), (十八))      |
| `edm`           | `x0` (= D)  | `x_0`                       | `lambda(sigma)` (EDM note)                |
| `flow_matching` | `velocity`  | `alpha' x_0 + sigma' eps`   | 1 ((十五))                                |

Because the target is linear in `(x_0, eps)` with time-only coefficients, the Bayes-optimal prediction of every
kind (the posterior mean) minimises every objective, whatever kind the network outputs.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from .._checks import check_choice
from ..preconditioning import PRECONDITIONINGS, edm_loss_weight, precondition
from ..predictions import convert
from ..processes import GaussianProcess

SIGMA_TYPES = ("posterior", "beta")
DSM_WEIGHTINGS = ("sigma2", "g2", "none")


def _require_discrete(what: str, process: GaussianProcess) -> None:
    if not process.is_discrete or not hasattr(process, "alpha_bars"):
        raise ValueError(f"{what} needs the discrete 'ddpm' process, got {type(process).__name__}; for a "
                         "continuous process use objective 'dsm' with weighting='g2' (the likelihood weighting)")


def _elbo_table(process: GaussianProcess, sigma_type: str) -> np.ndarray:
    """`w_t` for t = 0..T in float64 (w_0 = 0: step 0 is data and is never trained on)."""
    abar = process.alpha_bars()  # Su's scales abar_t, t = 0..T
    abar2 = abar**2
    alpha2 = abar2[1:] / abar2[:-1]  # per-step alpha_t^2, t = 1..T
    beta2 = (abar2[:-1] - abar2[1:]) / abar2[:-1]  # 1 - alpha_t^2 without cancellation
    bbar2 = 1.0 - abar2
    w = 0.5 * beta2 / (alpha2 * bbar2[1:])  # sigma_t = beta_t
    if sigma_type == "posterior":  # sigma_t = bbar_{t-1} beta_t / bbar_t; sigma_1 = 0, so keep beta's w_1
        w[1:] = 0.5 * beta2[1:] / (alpha2[1:] * bbar2[1:-1])
    return np.concatenate([[0.0], w])


def elbo_weight(process: GaussianProcess, t, sigma_type: str = "posterior"):
    """DDPM's ELBO weight on `||eps - eps_hat||^2`: `w_t = beta_t^4 / (2 bbar_t^2 alpha_t^2 sigma_t^2)` (article (二)).

    In Su's scales (`alpha_t`, `beta_t` per step, `bbar_t = sigma(t)`):

    * `sigma_type="posterior"` (`sigma_t = bbar_{t-1} beta_t / bbar_t`):
      `w_t = 1/2 beta_t^2 / (alpha_t^2 bbar_{t-1}^2) = 1/2 (SNR_{t-1}/SNR_t - 1)`. At t = 1 this sigma is 0 and
      the weight infinite (the ELBO's decoder term takes its place), so t = 1 gets the `beta` weight instead.
    * `sigma_type="beta"` (`sigma_t = beta_t`): `w_t = 1/2 beta_t^2 / (alpha_t^2 bbar_t^2)`.

    The table is computed in float64 from `process.alpha_bars()` and indexed by the integer steps `t`.
    """
    _require_discrete("elbo_weight", process)
    check_choice("ELBO sigma_type", sigma_type, SIGMA_TYPES)
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.integer):
        t = jnp.round(t).astype(jnp.int32)
    return jnp.asarray(_elbo_table(process, sigma_type), dtype=jnp.result_type(float))[t]


@dataclasses.dataclass(frozen=True)
class _Regression:
    """`E w(t) ||pred - target||^2` with the prediction converted to the kind `target_kind`."""

    target_kind: ClassVar[str]
    default_time_sampling: ClassVar[str | None] = None

    def check(self, process: GaussianProcess) -> None:
        """Raises `ValueError` when the objective does not fit `process`."""

    def weight(self, process: GaussianProcess, t):
        """The per-example weight `w(t)`."""
        return jnp.ones(jnp.shape(t), jnp.result_type(float))

    def predict(self, process: GaussianProcess, net, prediction: str, x_t, t):
        """The network's prediction at `(x_t, t)` as a `target_kind` value."""
        return convert(process, x_t, t, net(x_t, t), prediction, self.target_kind)


@dataclasses.dataclass(frozen=True)
class EpsMSE(_Regression):
    """DDPM's simple loss `||eps - eps_theta(alpha_t x_0 + sigma_t eps, t)||^2` (article (一))."""

    target_kind: ClassVar[str] = "eps"


@dataclasses.dataclass(frozen=True)
class ELBO(_Regression):
    """DDPM's ELBO loss `w_t ||eps - eps_theta||^2`, `w_t = beta_t^4 / (2 bbar_t^2 alpha_t^2 sigma_t^2)` (article (二)).

    See `elbo_weight` for `sigma_type` in {"posterior", "beta"} and the t = 1 convention. Discrete DDPM only.
    """

    sigma_type: str = "posterior"
    target_kind: ClassVar[str] = "eps"

    def __post_init__(self):
        check_choice("ELBO sigma_type", self.sigma_type, SIGMA_TYPES)

    def check(self, process):
        _require_discrete("objective 'elbo'", process)

    def weight(self, process, t):
        return elbo_weight(process, t, self.sigma_type)


@dataclasses.dataclass(frozen=True)
class X0MSE(_Regression):
    """The denoiser loss `||x_0 - mu_bar(x_t)||^2` (article (三); = eps-MSE weighted by 1/SNR_t)."""

    target_kind: ClassVar[str] = "x0"


@dataclasses.dataclass(frozen=True)
class VMSE(_Regression):
    """The v-prediction loss `||v - v_theta||^2` with `v = alpha eps - sigma x_0` (Salimans & Ho)."""

    target_kind: ClassVar[str] = "v"


@dataclasses.dataclass(frozen=True)
class DSM(_Regression):
    """Denoising score matching `lambda(t) ||s_theta(x_t, t) + eps / sigma_t||^2` (articles (五), (十八)).

    `weighting`: `sigma2` (`lambda = sigma^2`, identical to the eps-MSE), `g2` (`lambda = g(t)^2`, the
    likelihood weighting; on DDPM the one-step `beta_t^2`) or `none` (`lambda = 1`).
    """

    weighting: str = "sigma2"
    target_kind: ClassVar[str] = "score"

    def __post_init__(self):
        check_choice("dsm weighting", self.weighting, DSM_WEIGHTINGS)

    def weight(self, process, t):
        if self.weighting == "sigma2":
            return process.sigma(t) ** 2
        if self.weighting == "g2":
            return process.g2(t)
        return super().weight(process, t)


@dataclasses.dataclass(frozen=True)
class EDMLoss(_Regression):
    """EDM's loss `lambda(sigma) ||D(x_hat; sigma) - x_0||^2` in the rescaled `x_hat = x_t / alpha = x_0 + sigma eps`.

    `precond` in {"vp", "ve", "edm", "fm"}: the network is the raw `F(params, c_in x_hat, c_noise[, cond])` and
    `D = c_skip x_hat + c_out F` (`diffjax.preconditioning.precondition`; the `prediction` kind is then unused).
    `precond=None`: the network already predicts `x_0` (or any kind, converted). `weighting` picks the row of
    `lambda = 1/c_out^2` (default: `precond`, or "edm" when `precond` is None); `sigma_data` enters the edm row.
    Default time sampling: `ln sigma ~ N(p_mean, p_std^2)` ("log_normal").
    """

    precond: str | None = "edm"
    sigma_data: float = 0.5
    weighting: str | None = None
    target_kind: ClassVar[str] = "x0"
    default_time_sampling: ClassVar[str | None] = "log_normal"

    def __post_init__(self):
        if self.precond is not None:
            check_choice("EDM precond", self.precond, PRECONDITIONINGS)
        if self.weighting is not None:
            check_choice("EDM weighting", self.weighting, PRECONDITIONINGS)
        if not self.sigma_data > 0:
            raise ValueError(f"sigma_data must be positive, got {self.sigma_data}")

    @property
    def row(self) -> str:
        """The preconditioning row whose `lambda(sigma)` weights the loss."""
        return self.weighting or self.precond or "edm"

    def weight(self, process, t):
        return edm_loss_weight(self.row, process.edm_sigma(t), self.sigma_data)

    def predict(self, process, net, prediction, x_t, t):
        if self.precond is None:
            return super().predict(process, net, prediction, x_t, t)
        # `net` already closes over params and cond, so the wrapper takes the params-free calling convention.
        return precondition(net, process, self.precond, self.sigma_data)(x_t, t)


@dataclasses.dataclass(frozen=True)
class FlowMatching(_Regression):
    """Conditional flow matching `||v_theta(x_t, t) - u||^2`, `u = alpha'(t) x_0 + sigma'(t) eps` (article (十五)).

    For the linear path `x_t = (1 - t) x_0 + t eps` the target is `u = eps - x_0`. Continuous processes only.
    """

    target_kind: ClassVar[str] = "velocity"

    def check(self, process):
        if process.is_discrete:
            raise ValueError(f"objective 'flow_matching' needs a continuous process (its target is d x_t / dt), "
                             f"got {type(process).__name__}; use process 'flow' or 'vp'")


OBJECTIVES = {
    "eps_mse": EpsMSE,
    "elbo": ELBO,
    "x0_mse": X0MSE,
    "v_mse": VMSE,
    "dsm": DSM,
    "edm": EDMLoss,
    "flow_matching": FlowMatching,
}
