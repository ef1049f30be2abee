"""A toy job on the shared runner: linear regression with Adam, sharded over 8 CPU devices.

It plugs into ``fgjax.runner.run_loop`` exactly as the PPO trainer does (a jitted, donated
``step(state, batch) -> (state, metrics)`` with a ``flax.struct`` state, an init jitted with
``out_shardings``, a position-addressed batch iterator) so the run-infrastructure tests exercise
the real paths cheaply. As a script it is an entry point:
``python tests/runner_toy.py --config=configs/toy.py --workdir=DIR`` (set ``XLA_FLAGS`` for 8
devices and ``JAX_PLATFORMS=cpu`` first).
"""

from __future__ import annotations

import os
import pathlib
import runpy
import signal
import subprocess
import sys

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from fgjax import runner, sharding
from fgjax.checkpoint import Checkpointer
from fgjax.config import CommandLine, check_divisible, parse_command_line
from fgjax.metrics import METRICS_FILE, read_jsonl

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
TOY_CONFIG = str(REPO_ROOT / "configs" / "toy.py")
TOY_SCHEMA = runpy.run_path(TOY_CONFIG)["TOY_SCHEMA"]


@flax.struct.dataclass
class ToyState:
    step: jax.Array
    params: dict  # {"w": [F, O]}
    opt_state: optax.OptState
    nonfinite_skips: jax.Array


def true_weights(cfg) -> np.ndarray:
    return np.random.default_rng(1234).normal(size=(cfg.features, cfg.outputs)).astype(np.float32)


def host_batch(config, position: int) -> dict:
    """Batch number ``position`` (deterministic); position -1 is the eval batch."""
    cfg = config.toy
    rng = np.random.default_rng([config.seed, position + 1])
    x = rng.normal(size=(cfg.batch_size, cfg.features)).astype(np.float32)
    y = x @ true_weights(cfg) + 0.01 * rng.normal(size=(cfg.batch_size, cfg.outputs))
    if cfg.nan_from_iteration and position + 1 >= cfg.nan_from_iteration:
        x = np.full_like(x, np.nan)
    return {"x": x, "y": y.astype(np.float32)}


def build(config):
    """``(init_state_fn, step_fn, batch_iter_factory, eval_fn)`` for ``run_loop``."""
    cfg = config.toy
    mesh = runner.mesh_from_config(config)
    tx = optax.adam(cfg.learning_rate)
    param_shardings = {"w": NamedSharding(mesh, PartitionSpec("fsdp", None))}
    abstract_params = {"w": jax.ShapeDtypeStruct((cfg.features, cfg.outputs), jnp.float32)}
    replicated = sharding.replicated(mesh)
    state_shardings = ToyState(
        step=replicated,
        params=param_shardings,
        opt_state=sharding.optimizer_state_shardings(tx, param_shardings, abstract_params, mesh),
        nonfinite_skips=replicated,
    )

    def init():
        params = {"w": jax.random.normal(jax.random.key(config.seed), (cfg.features, cfg.outputs))}
        zero = jnp.zeros((), jnp.int32)
        return ToyState(step=zero, params=params, opt_state=tx.init(params), nonfinite_skips=zero)

    def loss_fn(params, batch):
        return jnp.mean((batch["x"] @ params["w"] - batch["y"]) ** 2)

    def step(state: ToyState, batch):
        loss, grads = jax.value_and_grad(loss_fn)(state.params, batch)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
        skipped = (~finite).astype(jnp.int32)
        new_state = ToyState(
            step=state.step + 1,
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            nonfinite_skips=state.nonfinite_skips + skipped,
        )
        metrics = {
            "loss/total": loss,
            "reward/raw": -loss,
            "reward/toy_fit": -jnp.sqrt(loss),
            "kl/mean": jnp.mean(new_state.params["w"] ** 2),
            runner.NONFINITE_METRIC: skipped,
        }
        return new_state, metrics

    batch_shardings = {"x": sharding.batch_sharding(mesh), "y": sharding.batch_sharding(mesh)}
    init_state_fn = jax.jit(init, out_shardings=state_shardings)
    jitted_step = jax.jit(
        step,
        in_shardings=(state_shardings, batch_shardings),
        out_shardings=(state_shardings, None),
        donate_argnums=0,
    )
    eval_batch = jax.device_put(host_batch(config, -1), batch_shardings)
    eval_fn = jax.jit(lambda state: {"reward": -loss_fn(state.params, eval_batch)})

    def step_fn(state, batch):
        state, metrics = jitted_step(state, batch)
        if cfg.sigterm_after and int(state.step) == cfg.sigterm_after:
            os.kill(os.getpid(), signal.SIGTERM)  # a deterministic "preemption"
        return state, metrics

    def batch_iter_factory(position: int):
        while True:
            yield jax.device_put(host_batch(config, position), batch_shardings)
            position += 1

    return init_state_fn, step_fn, batch_iter_factory, eval_fn


def kill_in_save(step: int) -> None:
    """SIGKILL this process after Orbax has written step ``step``'s files to its temporary
    directory but before the rename that commits them: the worst moment for a crash."""
    from orbax.checkpoint._src.path import atomicity  # test-only hook into Orbax internals

    original = atomicity.AtomicRenameTemporaryPath.finalize

    async def finalize(self, *args, **kwargs):
        if self._final_path.name == str(step):
            os.kill(os.getpid(), signal.SIGKILL)
        return await original(self, *args, **kwargs)

    atomicity.AtomicRenameTemporaryPath.finalize = finalize


def run(command_line: CommandLine) -> runner.RunResult:
    config = command_line.config
    runner.validate_config(config, TOY_SCHEMA)
    data, fsdp, _ = runner.mesh_shape_from_config(config)
    check_divisible(config, "toy.batch_size", data * fsdp, "the mesh's data*fsdp devices")
    if config.toy.kill_in_save_at:
        kill_in_save(config.toy.kill_in_save_at)
    init_state_fn, step_fn, batch_iter_factory, eval_fn = build(config)
    return runner.run_loop(
        config,
        command_line.workdir,
        init_state_fn,
        step_fn,
        batch_iter_factory,
        eval_fn=eval_fn,
        resume_from=command_line.resume_from,
    )


# Helpers for the tests.


def run_in_process(workdir, *overrides: str, resume_from: int | None = None):
    argv = ["prog", f"--config={TOY_CONFIG}", f"--workdir={workdir}", *overrides]
    if resume_from is not None:
        argv.append(f"--resume_from={resume_from}")
    return run(parse_command_line(argv))


def run_subprocess(workdir, *overrides: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The toy entry point in a fresh CPU-only process with 8 devices (like the tests').
    TensorBoard and the PNG are off there: importing tensorboardX imports torch when it is
    installed, which costs seconds per process (the in-process runs cover it)."""
    env = dict(os.environ)
    env.update(XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    quiet = ("--config.logging.tensorboard=False",)
    argv = [sys.executable, __file__, f"--config={TOY_CONFIG}", f"--workdir={workdir}", *quiet,
            *overrides]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)


def logged(workdir) -> list[dict]:
    """The JSONL records without the timing metrics (which differ from run to run)."""
    records = read_jsonl(os.path.join(workdir, METRICS_FILE))
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in records]


def restore_state(workdir, step: int, *overrides: str):
    """The toy state saved at ``step`` (restored into its shardings)."""
    argv = ["prog", f"--config={TOY_CONFIG}", f"--workdir={workdir}", *overrides]
    init_state_fn = build(parse_command_line(argv).config)[0]
    checkpointer = Checkpointer(os.path.join(workdir, runner.CHECKPOINT_SUBDIR), keep=100)
    try:
        return checkpointer.restore(step, jax.eval_shape(init_state_fn))
    finally:
        checkpointer.close()


def reference_run(tmp_path_factory):
    """An uninterrupted 6-iteration toy run: ``(workdir, RunResult)`` (tests wrap it in a
    module-scoped fixture)."""
    workdir = tmp_path_factory.mktemp("reference")
    return workdir, run_in_process(workdir, "--config.logging.plot=True")


def host_arrays(state) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree.leaves(state)]


def assert_same_arrays(a, b) -> None:
    a, b = host_arrays(a), host_arrays(b)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)  # bitwise on CPU


if __name__ == "__main__":
    runner.main(run, default_config=TOY_CONFIG, schema=TOY_SCHEMA)
