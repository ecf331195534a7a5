"""Every name a config (or a notebook) can use for a process, an objective or a sampler, in explicit tables.

The Gaussian family (articles (一)–(九), (十二), (十五)–(十七), EDM) lives in `processes`, `objectives` and
`samplers`; the non-Gaussian families bring their own tables: the unified diffusion model on continuous data
(`udm`, articles (十)(十一)), discrete token diffusion (`discrete`), the Poisson flow (`pfgm`, (十三)) and
Green's-function ODEs (`green`, (十四)). `process`, `objective` and `sampler` look a name up in all of them, so
`dj.process("cold_blur")` works like `dj.process("vp")`. Nothing is registered by importing a module.
"""

from __future__ import annotations

import dataclasses
import inspect

from . import discrete, green, pfgm, udm
from . import objectives as objectives_lib
from . import processes as processes_lib
from . import samplers as samplers_lib
from ._checks import check_knobs

# name -> (family, builder). Builders: processes `(**knobs)`, objectives `(process, **knobs)`, samplers `(**knobs)`.
EXTRA_PROCESSES = {
    **{name: ("udm", b) for name, b in udm.PROCESSES.items()},
    **{name: ("discrete", b) for name, b in discrete.PROCESSES.items()},
    **{name: ("pfgm", b) for name, b in pfgm.PROCESSES.items()},
    **{name: ("green", b) for name, b in green.PROCESSES.items()},
}
EXTRA_OBJECTIVES = {
    **{name: ("udm", b) for name, b in udm.OBJECTIVES.items()},
    **{name: ("discrete", b) for name, b in discrete.OBJECTIVES.items()},
    **{name: ("pfgm", b) for name, b in pfgm.OBJECTIVES.items()},
    **{name: ("green", b) for name, b in green.OBJECTIVES.items()},
}
# The discrete edit process and its sampler share the name "edit"; the sampler table says `edit` too.
EXTRA_SAMPLERS = {
    **{name: ("udm", b) for name, b in udm.SAMPLERS.items()},
    **{name: ("discrete", b) for name, b in discrete.SAMPLERS.items()},
    **{name: ("pfgm", b) for name, b in pfgm.SAMPLERS.items()},
    **{name: ("green", b) for name, b in green.SAMPLERS.items()},
}

PROCESS_NAMES = (*processes_lib.PROCESSES, *EXTRA_PROCESSES)
OBJECTIVE_NAMES = (*objectives_lib.OBJECTIVES, *EXTRA_OBJECTIVES)
SAMPLER_NAMES = (*samplers_lib.SAMPLERS, *EXTRA_SAMPLERS)


def _unknown(what: str, name, gaussian, extra) -> ValueError:
    plural = what + ("es" if what.endswith("s") else "s")
    return ValueError(f"unknown {what} {name!r}; valid {plural}: {', '.join(sorted(gaussian))}; other families: "
                      f"{', '.join(sorted(extra))}")


def _accepted(builder) -> tuple[str, ...] | None:
    """The keyword names `builder` takes (None when it takes `**knobs` and checks them itself)."""
    if dataclasses.is_dataclass(builder):
        return tuple(f.name for f in dataclasses.fields(builder) if f.init)
    params = inspect.signature(builder).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return tuple(p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL)


def _build_extra(kind: str, table: dict, name: str, knobs: dict, *leading):
    """Builds `table[name]` with `knobs` (checked against the builder's own names) after `leading` arguments."""
    builder = table[name][1]
    accepted = _accepted(builder)
    if accepted is not None:
        check_knobs(f"{kind} {name!r}", knobs, [a for a in accepted if a not in ("process", "corruption")])
    return builder(*leading, **knobs)


def family(kind: str, name: str) -> str:
    """`gaussian` or the package (`udm`, `discrete`, `pfgm`, `green`) that defines the process/objective/sampler."""
    table = {"process": EXTRA_PROCESSES, "objective": EXTRA_OBJECTIVES, "sampler": EXTRA_SAMPLERS}[kind]
    return table[name][0] if name in table else "gaussian"


def process(name: str, **knobs):
    """The forward process `name`: a Gaussian one (`ddpm`, `vp`, `ve`, `edm`, `flow`, ...) or a corruption of
    another family (`udm_gaussian`, `cold_blur`, `mask_pixels`, `token_mask`, `edit`, `pfgm`, `green`)."""
    if name in processes_lib.PROCESSES:
        return processes_lib.process(name, **knobs)
    if name not in EXTRA_PROCESSES:
        raise _unknown("process", name, processes_lib.PROCESSES, EXTRA_PROCESSES)
    return _build_extra("process", EXTRA_PROCESSES, name, knobs)


def objective(name: str, process, **knobs):
    """The training loss `name` on `process`; Gaussian objectives take `dj.objective`'s arguments, the others
    their own knobs (e.g. `udm_l1`: prediction, reduction; `masked_ce`: positions)."""
    if name in objectives_lib.OBJECTIVES:
        if not isinstance(process, processes_lib.GaussianProcess):
            raise ValueError(f"objective {name!r} needs a Gaussian process, got {type(process).__name__}; use one of "
                             f"{', '.join(EXTRA_OBJECTIVES)} for non-Gaussian corruptions")
        return objectives_lib.objective(name, process, **knobs)
    if name not in EXTRA_OBJECTIVES:
        raise _unknown("objective", name, objectives_lib.OBJECTIVES, EXTRA_OBJECTIVES)
    return _build_extra("objective", EXTRA_OBJECTIVES, name, knobs, process)


def sampler(name: str, **knobs):
    """The sampler `name` of any family (see `dj.samplers.sampler` for the Gaussian ones)."""
    if name in samplers_lib.SAMPLERS:
        return samplers_lib.sampler(name, **knobs)
    if name not in EXTRA_SAMPLERS:
        raise _unknown("sampler", name, samplers_lib.SAMPLERS, EXTRA_SAMPLERS)
    return _build_extra("sampler", EXTRA_SAMPLERS, name, knobs)
