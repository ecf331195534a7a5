"""Checkpoints behind one interface: every orbax call of diffjax is in this file (its API churns).

Layout: `W/checkpoints/<step>/{state,meta}`. Saves are asynchronous and atomic (orbax commits a step only
when all of it is written), so a kill at any moment leaves the previous committed step restorable; a
restore that fails on the newest step falls back to older ones with a warning.
"""

from __future__ import annotations

import logging
import pathlib

import jax
import orbax.checkpoint as ocp

log = logging.getLogger("diffjax")


class Checkpoints:
    """The checkpoints of one run directory: `save`, `restore_latest`, `wait`, `close`."""

    def __init__(self, directory: str | pathlib.Path, keep: int = 3, async_save: bool = True):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=async_save)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        """The committed steps, oldest first."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state, meta: dict, *, wait: bool = False) -> None:
        """Saves `state` (a pytree of arrays) and `meta` (JSON) at `step`; asynchronous unless `wait`."""
        self._manager.save(int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                              meta=ocp.args.JsonSave(meta)), force=True)
        if wait:
            self._manager.wait_until_finished()

    def restore_latest(self, abstract_state):
        """Restores the newest readable step into the shardings of `abstract_state`.

        Returns `(step, state, meta)`, or None when there is no committed checkpoint. A step that fails to
        restore (truncated or missing files) is skipped with a warning naming it and the error.
        """
        for step in reversed(self.steps()):
            try:
                restored = self._manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
            except Exception as e:  # noqa: BLE001 - any failure of one step means: try the previous one
                log.warning("checkpoint at step %d in %s is unreadable (%s: %s); falling back to an older one",
                            step, self.directory, type(e).__name__, str(e).splitlines()[0][:200])
                continue
            return step, restored["state"], restored["meta"]
        return None

    def wait(self) -> None:
        """Blocks until every pending save has committed."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def abstract_like(tree, sharding):
    """`ShapeDtypeStruct`s of `tree` carrying `sharding` (a sharding or a matching pytree of them)."""
    if isinstance(sharding, jax.sharding.Sharding):
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, sharding)
