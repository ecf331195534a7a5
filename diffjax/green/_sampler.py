"""The Green's-function ODE sampler (article (十四)): `dx/dt = f_t(x)` from `T` down to `t_min` with diffrax."""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

from .._checks import check_choice
from ..predictions import Predictor
from ..samplers import Sampler
from ._ode import check_solver, solve
from ._process import GreenProcess

TIME_VARIABLES = ("log_t", "t")


@dataclasses.dataclass(frozen=True)
class GreenODE(Sampler):
    """Integrates `dx/dt = f_t(x)` from the prior at `T` down to `t_min` and returns `x(t_min)` (article (十四)).

    The predictor is `dj.Predictor(fn, kind="velocity")` with `fn(x_t, t) = f_t(x_t)`, `t` of shape `(batch,)`
    in the process's time (e.g. `green.exact_green_velocity(...).predictor()` or a network trained with
    `green_velocity`). By default the solve runs in `s = log t`, `dx/ds = t f_t(x)`: for the kernels here
    `f_t ~ (x - E[x_0 | x_t]) / t`, which is smooth in log-time, as PFGM's `t' = log z`.

    Attributes:
        solver: `tsit5` (default), `dopri5`, `heun`, `midpoint` or `euler` (diffrax).
        adaptive: PID-controlled steps with `rtol`, `atol` (default True, 1e-4 as PFGM's RK45); False takes
            `steps` equal steps of the time variable.
        rtol, atol: tolerances of the adaptive solve.
        steps: the fixed steps, or (adaptive) the first step `(end - start) / steps`.
        max_steps: the adaptive step budget; running out raises at run time.
        time_variable: `log_t` (default) or `t`.
    """

    solver: str = "tsit5"
    adaptive: bool = True
    rtol: float = 1e-4
    atol: float = 1e-4
    steps: int = 100
    max_steps: int = 4096
    time_variable: str = "log_t"

    name = "green_ode"

    def validate(self, process, predictor: Predictor) -> None:
        if not isinstance(process, GreenProcess):
            raise ValueError(
                f"sampler 'green_ode' needs a GreenProcess (green.green_process(...)), got {type(process).__name__}"
            )
        if predictor.kind != "velocity":
            raise ValueError(
                f"sampler 'green_ode' needs a 'velocity' predictor (fn(x_t, t) = dx/dt), got kind {predictor.kind!r}"
            )
        check_solver(self.name, self.solver, self.adaptive, self.rtol, self.atol, self.steps, self.max_steps)
        check_choice("green_ode time_variable", self.time_variable, TIME_VARIABLES)

    def prior(self, key, process, shape):
        return process.prior_sample(key, shape)

    def run(self, key, predictor, process, x_init, cond):
        log_time = self.time_variable == "log_t"

        def field(s, x, args):
            model, cond = args
            t = jnp.exp(s) if log_time else s
            v = model(x, jnp.full((x.shape[0],), t, x.dtype), **cond)
            return t * v if log_time else v

        start, end = (math.log(process.T), math.log(process.t_min)) if log_time else (process.T, process.t_min)
        x, nfe = solve(
            field,
            x_init,
            (predictor, cond),
            start,
            end,
            solver=self.solver,
            adaptive=self.adaptive,
            rtol=self.rtol,
            atol=self.atol,
            steps=self.steps,
            max_steps=self.max_steps,
        )
        return x, {"nfe": jnp.asarray(nfe, jnp.int32)}
