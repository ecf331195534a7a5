"""The diffrax solve shared by the field-line samplers (Green's-function ODEs, PFGM): one solve, no host trips."""

from __future__ import annotations

import diffrax
import jax.numpy as jnp
import numpy as np

from .._checks import check_choice
from ..samplers._ode import SOLVERS, evaluations


def check_solver(name: str, solver: str, adaptive: bool, rtol: float, atol: float, steps, max_steps) -> None:
    """Raises `ValueError` (one line, naming the fix) for a bad solver setting of sampler `name`."""
    check_choice(f"ODE solver of sampler {name!r}", solver, SOLVERS)
    if int(steps) != steps or steps < 1:
        raise ValueError(
            f"sampler {name!r} needs steps >= 1 (fixed steps, or the first step when adaptive), got {steps!r}"
        )
    if adaptive:
        if solver == "euler":
            raise ValueError(
                f"sampler {name!r}: adaptive steps need an error estimate; use solver 'heun', "
                "'midpoint', 'tsit5' or 'dopri5', or adaptive=False"
            )
        if not (rtol > 0 and atol > 0):
            raise ValueError(f"sampler {name!r}: rtol and atol must be positive, got rtol={rtol}, atol={atol}")
        if int(max_steps) != max_steps or max_steps < 1:
            raise ValueError(f"sampler {name!r}: max_steps must be a positive integer, got {max_steps!r}")


def solve(
    field,
    x,
    args,
    s0: float,
    s1: float,
    *,
    solver: str,
    adaptive: bool,
    rtol: float,
    atol: float,
    steps: int,
    max_steps: int,
):
    """Solves `dx/ds = field(s, x, args)` from `s0` to `s1` (either direction) with diffrax.

    Fixed steps: `steps` equal steps (`diffrax.StepTo`). Adaptive: a PID controller with `rtol`, `atol`, the first
    step `(s1 - s0) / steps` and at most `max_steps` steps. Returns `(x(s1), nfe)`, the vector-field evaluations
    counted from diffrax's step count.
    """
    method = SOLVERS[solver]()
    dtype = x.dtype
    if adaptive:
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
        dt0, budget = (s1 - s0) / steps, int(max_steps)
    else:
        grid = jnp.asarray(np.linspace(s0, s1, int(steps) + 1), dtype)
        controller, dt0, budget = diffrax.StepTo(ts=grid), None, int(steps)
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        method,
        t0=jnp.asarray(s0, dtype),
        t1=jnp.asarray(s1, dtype),
        dt0=None if dt0 is None else jnp.asarray(dt0, dtype),
        y0=x,
        args=args,
        stepsize_controller=controller,
        max_steps=budget,
    )
    return solution.ys[-1].astype(dtype), evaluations(method, solution.stats["num_steps"])
