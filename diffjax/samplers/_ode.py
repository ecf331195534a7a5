"""The probability-flow ODE of article (六), solved with diffrax on the device."""

from __future__ import annotations

import dataclasses

import diffrax
import jax.numpy as jnp

from .._checks import check_choice
from ._base import ContinuousSampler, batched_time, check_steps

SOLVERS = {
    "euler": diffrax.Euler,
    "heun": diffrax.Heun,
    "midpoint": diffrax.Midpoint,
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
}


def evaluations(solver, num_steps):
    """Vector-field evaluations of an explicit Runge–Kutta `solver` over `num_steps` attempted steps.

    `stages` per step, or for a first-same-as-last method (tsit5, dopri5) one at the start and `stages - 1`
    per step.
    """
    tableau = getattr(solver, "tableau", None)
    if tableau is None:  # Euler
        return num_steps
    stages = len(tableau.c) + 1
    return 1 + (stages - 1) * num_steps if tableau.fsal else stages * num_steps


@dataclasses.dataclass(frozen=True)
class ProbabilityFlowODE(ContinuousSampler):
    """Solves the probability-flow ODE `dx/dt = f(t) x - ½ g(t)^2 grad log p_t(x)` from t_max down (article (六)).

    On a Gaussian process the right-hand side is the `velocity` prediction `alpha' x̂_0 + sigma' ε̂`, so any
    prediction kind drives it through the exact conversion, and a `velocity` model (the linear flow) is used
    as it is. The solve runs with diffrax, on the device, from the first grid time (t_max) to the last one,
    which is t_min unless t_min is clean data (sigma = 0, the flow with t_eps = 0: the model is not queried
    there, and the ODE stops at the last grid time, t_max/steps on the uniform grid). Then x̂_0 at that time
    is returned (EDM's final Euler step to sigma = 0), one more model evaluation.

    Fixed steps (`adaptive=False`) step exactly through the `steps` times of the process grid
    (`diffrax.StepTo`); adaptive steps use `diffrax.PIDController(rtol, atol)`, starting with the grid's
    first step. `info["nfe"]` counts the model evaluations from diffrax's step count (see `evaluations`).

    Attributes:
        solver: `euler`, `heun`, `midpoint`, `tsit5` or `dopri5` (diffrax's explicit Runge–Kutta methods).
        adaptive: adaptive step sizes (needs an error estimate: not `euler`). Default True: tsit5 with
            rtol = atol = 1e-5, the black-box setting of score_sde's ODE sampler (RK45 at 1e-5).
        rtol, atol: the controller's tolerances.
        max_steps: diffrax's step budget for the adaptive solve; running out raises at run time.
        steps: grid times (default 100): the fixed steps, or, adaptive, the first step and the stop time.
    """

    solver: str = "tsit5"
    adaptive: bool = True
    rtol: float = 1e-5
    atol: float = 1e-5
    max_steps: int = 4096
    steps: int | None = 100

    name = "ode"

    def validate(self, process, predictor):
        super().validate(process, predictor)
        check_choice("ODE solver", self.solver, SOLVERS)
        check_steps(self.name, len(self.timesteps) if self.timesteps is not None else self.steps, minimum=2)
        if self.adaptive:
            if self.solver == "euler":
                raise ValueError(
                    "sampler 'ode': adaptive steps need an error estimate; use solver 'heun', "
                    "'midpoint', 'tsit5' or 'dopri5', or adaptive=False"
                )
            if not (self.rtol > 0 and self.atol > 0):
                raise ValueError(f"sampler 'ode': rtol and atol must be positive, got {self.rtol}, {self.atol}")
            if int(self.max_steps) < 1:
                raise ValueError(f"sampler 'ode': max_steps must be a positive integer, got {self.max_steps}")

    def velocity(self, predictor, process, x, t, cond):
        """The ODE's right-hand side at `(x, t)`, for the scalar time `t`."""
        if self.clip_x0:
            x0, eps = self.x0_eps(predictor, process, x, t, cond)
            return process.alpha_dot(t) * x0 + process.sigma_dot(t) * eps
        return predictor.predict(process, x, batched_time(jnp.asarray(t), x), "velocity", **cond)

    def integrate(self, predictor, process, x, ts, cond):
        """Solves the ODE from `ts[0]` to `ts[-1]` (either direction) through the times `ts`, or adaptively
        between them. Returns `(x(ts[-1]), nfe)`; reversing `ts` runs the inverse map (data to noise)."""
        solver = SOLVERS[self.solver]()
        if self.adaptive:
            controller = diffrax.PIDController(rtol=self.rtol, atol=self.atol)
            dt0, max_steps = ts[1] - ts[0], int(self.max_steps)
        else:
            controller, dt0, max_steps = diffrax.StepTo(ts=ts), None, ts.shape[0] - 1
        term = diffrax.ODETerm(lambda t, y, args: self.velocity(args[0], process, y, t, args[1]))
        solution = diffrax.diffeqsolve(
            term,
            solver,
            t0=ts[0],
            t1=ts[-1],
            dt0=dt0,
            y0=x,
            args=(predictor, cond),
            stepsize_controller=controller,
            max_steps=max_steps,
        )
        return solution.ys[-1].astype(x.dtype), evaluations(solver, solution.stats["num_steps"])

    def run(self, key, predictor, process, x_init, cond):
        ts = self.grid(process)
        x, nfe = self.integrate(predictor, process, x_init, ts, cond)
        x0, _ = self.x0_eps(predictor, process, x, ts[-1], cond)
        return self.finish(x0), {"nfe": jnp.asarray(nfe + 1, jnp.int32)}
