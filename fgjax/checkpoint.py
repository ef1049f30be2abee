"""Checkpoints on ``orbax.checkpoint.CheckpointManager``.

Each step directory holds three items: ``state`` (the sharded train state pytree), ``loop`` (the
runner's host-side counters: iteration, data-iterator position, guard counters) and ``config``
(the resolved config as JSON). Saves are asynchronous by default; Orbax writes to a temporary
directory and renames it when complete, so a process killed mid-save leaves the previous
checkpoints intact (and the temporary one is cleaned up on the next start). The last ``keep``
checkpoints are kept, plus the ``keep_best`` best by an eval metric.

Restoring goes straight into the shardings of an abstract state (``jax.ShapeDtypeStruct`` leaves
with ``.sharding``, e.g. ``jax.eval_shape`` of a jitted init with ``out_shardings``), so full
arrays never sit on one device.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from fgjax.errors import CheckpointError

ABANDONED_DIR = "checkpoints_abandoned"  # where --resume_from moves newer checkpoints
# Orbax's readers report unreadable or truncated files with these types (tensorstore errors are
# ValueErrors, JSON metadata errors JSONDecodeError, missing files OSError).
_READ_ERRORS = (ValueError, OSError, KeyError)


def step_dirs(directory: str) -> list[int]:
    """Committed step directories (Orbax names them by the bare step number)."""
    if not os.path.isdir(directory):
        return []
    return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def set_aside_steps_after(directory: str, step: int) -> list[int]:
    """Move checkpoints newer than ``step`` to ``<workdir>/checkpoints_abandoned/`` (not deleted:
    restarting from an older step abandons them, but the user may still want them)."""
    newer = [s for s in step_dirs(directory) if s > step]
    target_root = os.path.join(os.path.dirname(os.path.abspath(directory)), ABANDONED_DIR)
    for s in newer:
        os.makedirs(target_root, exist_ok=True)
        target = os.path.join(target_root, str(s))
        suffix = 1
        while os.path.exists(target):
            target = os.path.join(target_root, f"{s}.{suffix}")
            suffix += 1
        shutil.move(os.path.join(directory, str(s)), target)
        logging.warning("resume_from=%d: moved checkpoint %d to %s", step, s, target)
    return newer


def check_abstract_state(abstract_state) -> None:
    """Every leaf must say where it lives, or Orbax would guess the restored layout."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(abstract_state):
        if getattr(leaf, "sharding", None) is None:
            raise ValueError(
                f"abstract state leaf {jax.tree_util.keystr(path)} has no sharding; build it "
                "with jax.eval_shape of an init jitted with out_shardings"
            )


class Checkpointer:
    """Save and restore ``(state, loop_state, config)`` under ``directory``."""

    def __init__(
        self,
        directory: str,
        *,
        keep: int,
        keep_best: int = 0,
        best_metric: str = "eval/reward",
        async_save: bool = True,
    ):
        self.directory = os.path.abspath(directory)
        self.best_metric = best_metric
        policies = [checkpoint_managers.LatestN(n=keep)]
        if keep_best:
            policies.append(
                checkpoint_managers.BestN(
                    get_metric_fn=lambda metrics: metrics[best_metric],
                    n=keep_best,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,  # half-written saves of a killed process
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(
        self,
        step: int,
        state,
        loop_state: Mapping[str, Any],
        config: Mapping[str, Any],
        eval_metrics: Mapping[str, float] | None = None,
    ) -> bool:
        """Start saving (returns at once when asynchronous). ``eval_metrics`` must hold
        ``best_metric`` for the checkpoint to compete for "best". False if already saved."""
        if step in self._manager.all_steps():
            return False
        metrics = None
        if eval_metrics is not None and self.best_metric in eval_metrics:
            metrics = {self.best_metric: float(eval_metrics[self.best_metric])}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            loop=ocp.args.JsonSave(dict(loop_state)),
            config=ocp.args.JsonSave(json.loads(json.dumps(config, default=str))),
        )
        return self._manager.save(step, args=args, metrics=metrics, force=True)

    def restore(self, step: int, abstract_state) -> tuple[Any, dict, dict]:
        """``(state, loop_state, config)`` of ``step``; the state lands in the shardings of
        ``abstract_state``. Raises ``CheckpointError`` naming the step when it is missing or
        unreadable."""
        available = self.steps()
        if step not in available:
            listed = ", ".join(map(str, available)) or "none"
            raise CheckpointError(
                f"no checkpoint for step {step} in {self.directory} (available steps: {listed})"
            )
        check_abstract_state(abstract_state)
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            loop=ocp.args.JsonRestore(),
            config=ocp.args.JsonRestore(),
        )
        try:
            restored = self._manager.restore(step, args=args)
        except _READ_ERRORS as err:
            older = [s for s in available if s < step]
            hint = f"; restart with --resume_from={older[-1]}" if older else ""
            first_line = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise CheckpointError(
                f"checkpoint step {step} in {self.directory} is unreadable or does not fit the "
                f"current state ({type(err).__name__}: {first_line}){hint}"
            ) from err
        return restored["state"], dict(restored["loop"]), dict(restored["config"])

    def wait(self) -> None:
        """Block until pending asynchronous saves are committed."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()
