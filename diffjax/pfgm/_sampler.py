"""PFGM's sampler (article (十三)): follow the field lines `dx/dz = E_x / E_z` from z_max down to z_min with diffrax."""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

from ..green._ode import check_solver, solve
from ..predictions import Predictor
from ..samplers import Sampler
from ._field import normalized_z_component, split_field
from ._process import PoissonProcess

# The z-component is kept at or below -1e-6 times the field's norm: the field must point down (dz < 0) and the
# slope |dx/dz| stays below 1e6 where a network's z-part is near zero or positive (the official code adds 1e-5).
_MIN_DESCENT = 1e-6


@dataclasses.dataclass(frozen=True)
class PoissonFlowODE(Sampler):
    """Solves PFGM's backward ODE in `t' = log z`: `dx/dt' = z f_x / f_z`, from `log z_max` to `log z_min`.

    The state starts on the plane z = z_max from the process's hemisphere prior (`PoissonProcess.prior_sample`)
    and the sample is `x` at z = z_min (the official code drops the z coordinate there). The ODE depends only on
    the direction of the predicted field, so the normalised and the `unbiased` targets drive it alike.

    The predictor is `dj.Predictor(fn, kind="x0")` with `fn(x, t)` returning the field in the network convention
    of `pfgm.split_field` (one extra channel), at `t = process.network_time(z)` of shape `(batch,)`; the kind is
    nominal (required to be "x0" so a Gaussian model is not passed by mistake). For the `normalized_empirical`
    target with `gamma > 0` and `z < z_exp`, the predicted z-component is replaced by its exact value given the
    predicted x-part (`pfgm.normalized_z_component`; the z-part of `N` is exactly `-z`), which the official
    sampler does because the learned z-component is least accurate where it is small. `info["nfe"]` counts the network
    evaluations.

    Attributes:
        solver: `tsit5` (default; the official code uses scipy's RK45), `dopri5`, `heun`, `midpoint` or `euler`.
        adaptive: PID-controlled steps with `rtol`, `atol` (official 1e-4); False takes `steps` equal steps in
            log z (the official fixed-step samplers use N = 100).
        rtol, atol: tolerances of the adaptive solve.
        steps: the fixed steps, or (adaptive) the first step `(log z_min - log z_max) / steps`.
        max_steps: the adaptive step budget; running out raises at run time.
    """

    solver: str = "tsit5"
    adaptive: bool = True
    rtol: float = 1e-4
    atol: float = 1e-4
    steps: int = 100
    max_steps: int = 4096

    name = "pfgm"

    def validate(self, process, predictor: Predictor) -> None:
        if not isinstance(process, PoissonProcess):
            raise ValueError(
                f"sampler 'pfgm' needs the pfgm PoissonProcess, got {type(process).__name__}; build "
                "it with pfgm.PoissonProcess(...)"
            )
        if predictor.kind != "x0":
            raise ValueError(
                f"sampler 'pfgm' needs dj.Predictor(fn, kind='x0') with fn returning the field (the kind "
                f"is nominal), got kind {predictor.kind!r}"
            )
        check_solver(self.name, self.solver, self.adaptive, self.rtol, self.atol, self.steps, self.max_steps)

    def prior(self, key, process, shape):
        return process.prior_sample(key, shape)

    def direction(self, predictor, process, x, z, cond):
        """`dx/dt' = z f_x / f_z` at height `z` (a scalar), after the z_exp substitution."""
        out = predictor(x, process.network_time(jnp.full((x.shape[0],), z, x.dtype)), **cond)
        f_x, f_z = split_field(out)
        if process.target == "normalized_empirical" and process.z_exp > 0 and process.gamma > 0:
            f_z = jnp.where(z < process.z_exp, normalized_z_component(f_x, z, process.gamma), f_z)
        norm = jnp.sqrt(jnp.sum(f_x.reshape(f_x.shape[0], -1) ** 2, axis=-1) + f_z**2)
        f_z = jnp.minimum(f_z, -(_MIN_DESCENT * norm + jnp.finfo(f_z.dtype).tiny))
        return z * f_x / f_z.reshape((-1,) + (1,) * (x.ndim - 1))

    def run(self, key, predictor, process, x_init, cond):
        def field(s, x, args):
            model, cond = args
            return self.direction(model, process, x, jnp.exp(s), cond)

        x, nfe = solve(
            field,
            x_init,
            (predictor, cond),
            math.log(process.z_max),
            math.log(process.z_min),
            solver=self.solver,
            adaptive=self.adaptive,
            rtol=self.rtol,
            atol=self.atol,
            steps=self.steps,
            max_steps=self.max_steps,
        )
        return x, {"nfe": jnp.asarray(nfe, jnp.int32)}
