"""Checkpoints behind one interface: every orbax call of diffjax is in this file (its API churns).

Layout: `W/checkpoints/<step>/{state,meta}`. Saves are asynchronous and atomic (orbax commits a step only
when all of it is written), so a kill at any moment leaves the previous committed step restorable; a
restore that fails on the newest step falls back to older ones with a warning.

Every process writes only the shards it holds, and a restore reads each array straight into the sharding
its target asks for: a state saved FSDP-sharded on one mesh restores replicated, or sharded otherwise, on a
mesh of any other size (e.g. 8 devices with `fsdp=4`, then 2 devices with `fsdp=1`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import re
import time

import jax
import orbax.checkpoint as ocp

log = logging.getLogger("diffjax")


class CheckpointError(RuntimeError):
    """A checkpoint could not be written, or no checkpoint of a run is readable; the message says what to do."""


class Checkpoints:
    """The checkpoints of one run directory: `save`, `restore_latest`, `wait`, `close`."""

    def __init__(self, directory: str | pathlib.Path, keep: int = 3, async_save: bool = True):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, cleanup_tmp_directories=True,
                                               enable_async_checkpointing=async_save)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        """The committed steps, oldest first."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state, meta: dict, *, wait: bool = False) -> None:
        """Saves `state` (a pytree of arrays) and `meta` (JSON) at `step`; asynchronous unless `wait`.

        Raises:
            CheckpointError: when this save, or a pending asynchronous one, fails (disk full, I/O error);
                committed steps are untouched.
        """
        try:
            self._manager.save(int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                                  meta=ocp.args.JsonSave(meta)), force=True)
        except Exception as e:  # noqa: BLE001 - orbax re-raises a failed async save here, in any type
            raise self._save_failed(step, e) from e
        if wait:
            self.wait()

    def _save_failed(self, step, error) -> CheckpointError:
        committed = self.steps()
        where = f"the newest committed checkpoint, step {committed[-1]}," if committed else "no step was committed;"
        return CheckpointError(f"checkpointing in {self.directory} failed at step {step} ({_first_line(error)}); "
                               f"{where} is intact. Free disk space or fix the directory, then rerun the same "
                               "command to resume")

    def restore(self, step: int, abstract_state):
        """Restores `step` into the shapes, dtypes and shardings of `abstract_state` (`abstract_like`);
        returns `(state, meta)`. Raises whatever orbax raises when the step is unreadable."""
        restored = self._manager.restore(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        return restored["state"], restored["meta"]

    def restore_latest(self, abstract_state):
        """Restores the newest readable step into the shardings of `abstract_state`.

        Returns `(step, state, meta)`, or None when there is no committed checkpoint. A step that fails to
        restore (truncated or missing files) is skipped with a warning naming it and the error, and once an
        older step has restored, the skipped ones are moved (never deleted) to `<run>/unreadable_checkpoints/`
        so that training can save those steps again.
        """
        skipped = []
        for step in reversed(self.steps()):
            try:
                state, meta = self.restore(step, abstract_state)
            except Exception as e:  # noqa: BLE001 - any failure of one step means: try the previous one
                log.warning("checkpoint at step %d in %s is unreadable (%s); falling back to an older one",
                            step, self.directory, _first_line(e))
                skipped.append(step)
                continue
            self._set_aside(skipped)
            return step, state, meta
        if skipped:
            raise CheckpointError(f"no checkpoint in {self.directory} is readable (steps "
                                  f"{', '.join(map(str, sorted(skipped)))}); move them away to start afresh, or "
                                  "use another --workdir")
        return None

    def _set_aside(self, steps) -> None:
        if not steps:
            return
        aside = self.directory.parent / "unreadable_checkpoints"
        if jax.process_index() == 0:
            aside.mkdir(exist_ok=True)
            for step in steps:
                target = aside / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
                (self.directory / str(step)).rename(target)
                log.warning("moved the unreadable checkpoint of step %d to %s", step, target)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("diffjax: unreadable checkpoints set aside")
        self._manager.reload()

    def wait(self) -> None:
        """Blocks until every pending save has committed; raises `CheckpointError` if one failed."""
        try:
            self._manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001
            raise self._save_failed("(pending)", e) from e

    def close(self) -> None:
        """Waits for pending saves, then releases orbax's threads (errors are raised by `wait`)."""
        try:
            self.wait()
        finally:
            with contextlib.suppress(Exception):
                self._manager.close()


def abstract_like(tree, sharding):
    """`ShapeDtypeStruct`s of `tree` carrying `sharding` (a sharding or a matching pytree of them)."""
    if isinstance(sharding, jax.sharding.Sharding):
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, sharding)


def _first_line(error: BaseException) -> str:
    """`Type: message` cut to its first informative line (tensorstore errors run over many lines), led by
    the operating system's reason when the message carries one (e.g. `No space left on device`)."""
    text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0].split(" See full TensorStore details")[0] if lines else ""
    code = re.search(r"os_error_code='(\d+)'", text)
    if isinstance(error, OSError) and error.errno:
        reason = f"{os.strerror(error.errno)}: "
    elif code:
        reason = f"{os.strerror(int(code.group(1)))}: "
    else:
        reason = ""
    return f"{reason}{type(error).__name__}: {first[:200]}"
