"""The run loop every entry point shares, and the entry-point wrapper.

``run_loop`` drives any jitted ``step_fn(state, batch) -> (state, metrics)``: it resumes from
the workdir (or ``--resume_from``), feeds batches from a deterministic iterator positioned by
an integer, evaluates, logs, checkpoints every N iterations, applies the guards (non-finite
updates in a row, the reference's KL early stop) and saves and returns on SIGTERM. An
interrupted-and-resumed run reproduces an uninterrupted one exactly: the state, the data
position and the guard counters are all in the checkpoint.

``main(run)`` is what ``python -m fgjax.<entry>`` calls: it parses the shared command line,
starts multi-host JAX when launched on several hosts, and turns a ``UserError`` into one line
on stderr and exit status 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import ml_collections

from fgjax import checkpoint as ckpt
from fgjax import metrics as mlog
from fgjax.config import (
    RUNNER_SCHEMA,
    CommandLine,
    Schema,
    check_runner_config,
    flatten,
    parse_command_line,
    validate,
)
from fgjax.errors import ConfigError, TrainingStopped, UserError
from fgjax.preemption import PreemptionWatcher

# Metric names the guards read from the step's metrics.
NONFINITE_METRIC = "guard/nonfinite_skipped"  # updates skipped this iteration (loss not finite)
KL_METRIC = "kl/mean"  # mean per-sequence KL to the reference policy
CHECKPOINT_SUBDIR = "checkpoints"

State = Any
Batch = Any


@dataclasses.dataclass
class LoopState:
    """Host-side counters saved with every checkpoint."""

    iteration: int = 0  # iterations completed
    data_position: int = 0  # batches drawn; batch_iter_factory(position) resumes there
    nonfinite_in_row: int = 0  # consecutive iterations with a skipped non-finite update
    kl_strikes: int = 0  # iterations whose mean KL exceeded guards.kl_threshold


@dataclasses.dataclass
class RunResult:
    state: State
    loop: LoopState
    stop_reason: str  # "finished" | "preempted" | "kl_early_stop"


def validate_config(config: ml_collections.ConfigDict, schema: Schema = RUNNER_SCHEMA) -> None:
    """Start-up checks: the schema, the shared cross-key rules and the mesh vs. the devices."""
    validate(config, schema)
    check_runner_config(config)
    mesh_shape_from_config(config)


def mesh_shape_from_config(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
    """``(data, fsdp, tensor)`` with ``-1`` resolved; a ``ConfigError`` when it does not fit."""
    from fgjax.sharding import mesh_shape

    try:
        return mesh_shape(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
    except ValueError as err:  # mesh_shape names the sizes and the device count
        raise ConfigError(f"config keys mesh.*: {err}") from None


def mesh_from_config(config: ml_collections.ConfigDict) -> jax.sharding.Mesh:
    from fgjax.sharding import make_mesh

    data, fsdp, tensor = mesh_shape_from_config(config)
    return make_mesh(data, fsdp, tensor)


class Guards:
    """Non-finite updates ``max_nonfinite_in_row`` iterations in a row stop the run with an
    error; the KL early stop (the reference: stop once the mean per-sequence KL has exceeded
    ``kl_threshold`` on ``kl_strikes`` rollouts, not necessarily consecutive) ends it normally."""

    def __init__(self, guards: ml_collections.ConfigDict):
        self.max_nonfinite_in_row = guards.max_nonfinite_in_row
        self.kl_threshold = guards.kl_threshold
        self.kl_strikes = guards.kl_strikes

    def update(self, loop: LoopState, metrics: Mapping[str, float]) -> str | None:
        """Count this iteration; return ``"nonfinite"`` or ``"kl_early_stop"`` to stop."""
        if NONFINITE_METRIC not in metrics:
            raise KeyError(f"step metrics lack {NONFINITE_METRIC!r}, needed by the guards")
        loop.nonfinite_in_row = loop.nonfinite_in_row + 1 if metrics[NONFINITE_METRIC] else 0
        if self.kl_strikes:
            if KL_METRIC not in metrics:
                raise KeyError(f"step metrics lack {KL_METRIC!r} (set guards.kl_strikes = 0?)")
            loop.kl_strikes += int(metrics[KL_METRIC] > self.kl_threshold)
        if loop.nonfinite_in_row >= self.max_nonfinite_in_row:
            return "nonfinite"
        if self.kl_strikes and loop.kl_strikes >= self.kl_strikes:
            return "kl_early_stop"
        return None

    @staticmethod
    def metrics(loop: LoopState) -> dict[str, int]:
        return {
            "guard/nonfinite_in_row": loop.nonfinite_in_row,
            "guard/kl_strikes": loop.kl_strikes,
        }


def _log_config_changes(saved: Mapping, current: Mapping) -> None:
    saved_flat, current_flat = flatten(saved), flatten(current)
    for key in sorted(set(saved_flat) | set(current_flat)):
        old, new = saved_flat.get(key), current_flat.get(key)
        if isinstance(new, tuple):
            new = list(new)
        if old != new:
            logging.warning("config key %r changed since the checkpoint: %r -> %r", key, old, new)


def _start_state(checkpointer, init_state_fn, abstract_state, resume_from, config_dict):
    """Fresh state, or the state of ``resume_from`` / the latest checkpoint."""
    step = resume_from if resume_from is not None else checkpointer.latest_step()
    if step is None:
        return init_state_fn(), LoopState(), None
    if abstract_state is None:
        abstract_state = jax.eval_shape(init_state_fn)
    state, loop_dict, saved_config = checkpointer.restore(step, abstract_state)
    _log_config_changes(saved_config, config_dict)
    loop = LoopState(**loop_dict)
    logging.info("resumed from checkpoint step %d (data position %d)", step, loop.data_position)
    return state, loop, step


def _prepare_checkpoint_dir(directory: str, resume_from: int | None) -> None:
    if resume_from is None:
        return
    available = ckpt.step_dirs(directory)
    if resume_from not in available:
        listed = ", ".join(map(str, available)) or "none"
        raise ckpt.CheckpointError(
            f"--resume_from={resume_from}: no checkpoint for that step in {directory} "
            f"(available steps: {listed})"
        )
    if jax.process_index() == 0:
        ckpt.set_aside_steps_after(directory, resume_from)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("fgjax_set_aside_checkpoints")


def run_loop(
    config: ml_collections.ConfigDict,
    workdir: str,
    init_state_fn: Callable[[], State],
    step_fn: Callable[[State, Batch], tuple[State, Mapping[str, jax.Array]]],
    batch_iter_factory: Callable[[int], Iterator[Batch]],
    eval_fn: Callable[[State], Mapping[str, jax.Array]] | None = None,
    resume_from: int | None = None,
    abstract_state: Any = None,
) -> RunResult:
    """Train ``config.num_iterations`` iterations of ``step_fn`` (see the module docstring).

    ``init_state_fn()`` must return the sharded state; it is not called when resuming. The
    restore target is ``abstract_state`` (``jax.ShapeDtypeStruct`` leaves with shardings) or,
    when None, ``jax.eval_shape(init_state_fn)`` — right for an init jitted with
    ``out_shardings``; pass ``abstract_state`` when the init reads weights from files.
    ``batch_iter_factory(position)`` yields the batches from ``position`` on, the same ones for
    the same position. ``eval_fn(state)`` returns scalars, logged as ``eval/<name>``.
    Raises ``TrainingStopped`` when the non-finite guard fires (after saving).
    """
    config_dict = config.to_dict()
    checkpoint_dir = os.path.join(workdir, CHECKPOINT_SUBDIR)
    _prepare_checkpoint_dir(checkpoint_dir, resume_from)
    cfg = config.checkpoint
    checkpointer = ckpt.Checkpointer(
        checkpoint_dir,
        keep=cfg.keep,
        keep_best=cfg.keep_best,
        best_metric=cfg.best_metric,
        async_save=cfg.async_save,
    )
    guards = Guards(config.guards)
    with PreemptionWatcher(config.preemption.grace_seconds) as preemption:
        state, loop, restored_step = _start_state(
            checkpointer, init_state_fn, abstract_state, resume_from, config_dict
        )
        mlog.write_run_info(workdir, config_dict, {"resumed_from": restored_step})
        writer = mlog.MetricsWriter(workdir, config.logging.tensorboard, restored_step)
        bar = mlog.ProgressBar(
            config.num_iterations, loop.iteration, config.logging.progress_keys,
            config.logging.progress,
        )
        batches = batch_iter_factory(loop.data_position)
        stop_reason = "finished"
        try:
            while loop.iteration < config.num_iterations:
                started = time.perf_counter()
                state, step_metrics = step_fn(state, next(batches))
                metrics = mlog.to_python(jax.device_get(step_metrics))  # guards need them now
                loop.iteration += 1
                loop.data_position += 1
                stop = guards.update(loop, metrics)
                metrics.update(Guards.metrics(loop))
                eval_metrics = None
                if eval_fn is not None and config.eval_every and (
                    loop.iteration % config.eval_every == 0
                ):
                    eval_metrics = {
                        name if name.startswith("eval/") else f"eval/{name}": value
                        for name, value in mlog.to_python(jax.device_get(eval_fn(state))).items()
                    }
                    metrics.update(eval_metrics)
                metrics["perf/seconds_per_iteration"] = time.perf_counter() - started
                preempted = preemption.requested()
                last = (
                    loop.iteration == config.num_iterations or stop is not None or preempted
                )
                if loop.iteration % config.logging.log_every == 0 or eval_metrics or last:
                    writer.write(loop.iteration, metrics)
                bar.update(loop.iteration, metrics)
                best_candidate = eval_metrics is not None and cfg.keep_best > 0
                if loop.iteration % cfg.every == 0 or last or best_candidate:
                    checkpointer.save(
                        loop.iteration, state, dataclasses.asdict(loop), config_dict, eval_metrics
                    )
                if preempted:
                    stop_reason = "preempted"
                    logging.warning("preempted: saved iteration %d; exiting", loop.iteration)
                    break
                if stop is not None:
                    stop_reason = stop
                    break
        finally:
            checkpointer.wait()  # inside the watcher: the grace period bounds this too
            checkpointer.close()
            writer.close()
            bar.close()
    if config.logging.plot and mlog.is_writer() and os.path.exists(writer.path):
        mlog.plot_curves(writer.path, os.path.join(workdir, mlog.CURVES_FILE))
    if stop_reason == "nonfinite":
        raise TrainingStopped(
            f"stopped at iteration {loop.iteration}: the update was skipped for a non-finite "
            f"loss or gradient {loop.nonfinite_in_row} iterations in a row "
            f"(guards.max_nonfinite_in_row = {guards.max_nonfinite_in_row}); lower the "
            "learning rate or check the data"
        )
    if stop_reason == "kl_early_stop":
        logging.warning(
            "KL early stop at iteration %d: mean KL exceeded %g on %d iterations",
            loop.iteration, guards.kl_threshold, loop.kl_strikes,
        )
    return RunResult(state, loop, stop_reason)


def main(
    run: Callable[[CommandLine], Any],
    argv: list[str] | None = None,
    default_config: str | None = None,
    schema: Schema | None = None,
) -> None:
    """Entry-point wrapper: ``python -m fgjax.<entry> --config=FILE --workdir=DIR``
    (``schema``: the config keys ``--help`` lists)."""
    from fgjax.sharding import maybe_initialize_distributed

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with user_errors_as_one_line():
        command_line = parse_command_line(
            sys.argv if argv is None else argv, default_config, schema
        )
        maybe_initialize_distributed()
        use_compilation_cache(command_line.config)
        run(command_line)


def use_compilation_cache(config: ml_collections.ConfigDict) -> None:
    """Point JAX's persistent compilation cache at ``compilation_cache.dir`` (``''`` = off).

    A program whose HLO, devices, XLA flags and JAX version match one compiled before (by any
    run, stage or seed; or earlier in this process under another function object) is loaded
    instead of compiled. JAX treats the folder as trusted code: keep it private."""
    from jax.experimental.compilation_cache import compilation_cache

    path = config.compilation_cache.dir
    settings = {
        "jax_enable_compilation_cache": bool(path),
        "jax_persistent_cache_min_compile_time_secs": config.compilation_cache.min_compile_seconds,
    }
    if path and "://" not in path:  # a bucket (gs://...) is JAX's to open
        path = os.path.abspath(os.path.expanduser(path))
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as err:
            raise ConfigError(
                f"config key 'compilation_cache.dir' = {config.compilation_cache.dir!r}: cannot "
                f"create it ({err.strerror}); allowed: a writable folder or '' (off)"
            ) from None
    if path:
        settings["jax_compilation_cache_dir"] = path
    if all(getattr(jax.config, name) == value for name, value in settings.items()):
        return
    for name, value in settings.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()  # so the new settings apply after earlier compiles too
    if path:
        logging.info("XLA compilation cache: %s", path)


@contextlib.contextmanager
def user_errors_as_one_line():
    """A ``UserError`` inside becomes one ``error: ...`` line on stderr and exit status 2 (a
    traceback is for bugs, not for a bad flag or a preempted run)."""
    try:
        yield
    except UserError as err:
        message = " ".join(str(err).split("\n"))
        print(f"error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
