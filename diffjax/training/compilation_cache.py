"""JAX's persistent compilation cache for the command line: compiled programs kept on disk between runs.

XLA:CPU takes 40-85 s to compile a U-Net's train step on a 2-core machine and 3-9 s to load it from the cache
(bench/README.md, lever "persistent compilation cache"). A resumed run, or `diffjax sample` and `evaluate` after
`train`, compiles the same programs again, so the CLI keeps a cache in the run directory by default
(`--compilation_cache workdir`, in `W/xla_cache`). A path shares one cache between runs; `off` turns it off.
A cache set in the environment (`JAX_COMPILATION_CACHE_DIR`) is the user's choice and `workdir` leaves it alone.

The cache changes no number: a cached program is the compiled program. JAX keeps only programs that took at
least `jax_persistent_cache_min_compile_time_secs` (1 s by default) to compile, writes from process 0 only in a
multi-process run, and recompiles with a warning if an entry cannot be read (e.g. one cut short by a kill).
"""

from __future__ import annotations

import logging
import os
import pathlib

import jax

log = logging.getLogger("diffjax")

ENV_VARIABLE = "JAX_COMPILATION_CACHE_DIR"
WORKDIR_SUBDIR = "xla_cache"


def cache_dir(requested: str, workdir: str | os.PathLike) -> str | None:
    """The directory that `--compilation_cache requested` means for run directory `workdir`, or None (off).

    Args:
        requested: `"workdir"` (`workdir/xla_cache`, unless the environment sets a cache), `"off"`, or a path.
        workdir: the run directory.
    """
    if requested == "off":
        return None
    if requested == "workdir":
        if os.environ.get(ENV_VARIABLE):
            return os.environ[ENV_VARIABLE]
        if "://" in str(workdir):  # a remote run directory: JAX would need etils[epath]; leave it off
            return None
        return str(pathlib.Path(workdir) / WORKDIR_SUBDIR)
    return os.path.expanduser(requested)


def configure_compilation_cache(requested: str, workdir: str | os.PathLike) -> str | None:
    """Points JAX's persistent compilation cache at `cache_dir(requested, workdir)`; returns it (None: off).

    Call before the process compiles anything: JAX decides at its first compile whether the process uses a
    cache, and keeps to that. Raises ValueError, in one line, if a directory given by path cannot be made or
    written to; with `"workdir"` the cache is then off instead, and the run reports its unwritable workdir.
    """
    path = cache_dir(requested, workdir)
    blocker = None if path is None else _unwritable_ancestor(path)
    if blocker is not None and requested != "workdir":
        raise ValueError(
            f"--compilation_cache: cannot write to {path} ({blocker} is not a writable directory); give a "
            "writable directory, or 'off'"
        )
    if path is None or blocker is not None:  # off, or an unwritable workdir, which the run reports in its own words
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", path)
    log.info("compilation cache: %s", path)
    return path


def _unwritable_ancestor(path: str) -> pathlib.Path | None:
    """For a local `path`, its nearest existing ancestor (or itself) if that is not a writable directory, else
    None: JAX makes the cache directory at the first compile, and this says now whether it will be able to."""
    if "://" in path:
        return None
    existing = pathlib.Path(path).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return None if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK) else existing
