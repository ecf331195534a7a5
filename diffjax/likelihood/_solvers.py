"""The adaptive diffrax solvers the ODE-based functions accept, and their count of vector-field evaluations."""

from __future__ import annotations

import diffrax
import jax

from .._checks import check_choice
from ..samplers._ode import evaluations

ADAPTIVE_SOLVERS = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "heun": diffrax.Heun,
}


def check_tolerances(solver: str, rtol: float, atol: float, max_steps: int) -> None:
    """Raises `ValueError` for an unknown solver name or non-positive tolerances."""
    check_choice("ODE solver", solver, ADAPTIVE_SOLVERS)
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
    if int(max_steps) < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps}")


def adaptive_solve(field, y0, args, t0: float, t1: float, solver: str, rtol: float, atol: float, max_steps: int):
    """Solves `dy/dt = field(t, y, args)` from `t0` to `t1` (either direction) with a PID step-size controller.

    Returns `(y(t1), num_steps, nfe)`; diffrax picks the first step size itself. A first-same-as-last method
    (tsit5, dopri5, dopri8) evaluates the field once at the start and `stages - 1` times per attempted step,
    Heun `stages` times per step; `nfe` is that count (checked against counted model calls in the tests).
    """
    method = ADAPTIVE_SOLVERS[solver]()
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        method,
        t0=t0,
        t1=t1,
        dt0=None,
        y0=y0,
        args=args,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=int(max_steps),
    )
    y1 = jax.tree_util.tree_map(lambda leaf: leaf[-1], sol.ys)
    num_steps = sol.stats["num_steps"]
    return y1, num_steps, evaluations(method, num_steps)
