"""Orbax checkpoints: keep last K + best, sharded restore, crash safety, clear errors."""

import os
import shutil
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import runner_toy
from jax.sharding import NamedSharding, PartitionSpec
from runner_toy import assert_same_arrays, logged, run_in_process, run_subprocess

from fgjax import runner
from fgjax.checkpoint import ABANDONED_DIR, Checkpointer, step_dirs
from fgjax.errors import CheckpointError


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    return runner_toy.reference_run(tmp_path_factory)


def sharded_init():
    mesh = jax.make_mesh((8,), ("fsdp",), axis_types=(jax.sharding.AxisType.Auto,))
    shardings = {"w": NamedSharding(mesh, PartitionSpec("fsdp", None)),
                 "count": NamedSharding(mesh, PartitionSpec())}
    init = lambda: {"w": jnp.arange(64.0).reshape(16, 4), "count": jnp.ones((), jnp.int32)}
    return jax.jit(init, out_shardings=shardings)


def test_keeps_the_last_k_plus_the_best_and_restores_into_shardings(tmp_path):
    init = sharded_init()
    state = init()
    checkpointer = Checkpointer(str(tmp_path), keep=2, keep_best=1, async_save=True)
    for step, reward in [(1, 5.0), (2, 1.0), (3, None), (4, 0.5), (5, None)]:
        metrics = None if reward is None else {"eval/reward": reward}
        assert checkpointer.save(step, state, {"iteration": step}, {"seed": 0}, metrics)
    assert not checkpointer.save(5, state, {"iteration": 5}, {"seed": 0})  # already there
    checkpointer.wait()
    assert checkpointer.steps() == [1, 4, 5]  # latest two + the best (step 1, reward 5.0)
    restored, loop, config = checkpointer.restore(4, jax.eval_shape(init))
    assert loop == {"iteration": 4} and config == {"seed": 0}
    assert restored["w"].sharding == state["w"].sharding  # straight into the shards
    np.testing.assert_array_equal(np.asarray(restored["w"]), np.asarray(state["w"]))
    missing = r"no checkpoint for step 7 .*available steps: 1, 4, 5"
    with pytest.raises(CheckpointError, match=missing):
        checkpointer.restore(7, jax.eval_shape(init))
    unsharded = jax.eval_shape(lambda: {"w": jnp.zeros((16, 4)), "count": jnp.ones((), jnp.int32)})
    with pytest.raises(ValueError, match=r"\['count'\] has no sharding"):
        checkpointer.restore(4, unsharded)
    checkpointer.close()


def test_sigkill_in_the_middle_of_a_save_keeps_the_previous_checkpoint(reference_run, tmp_path):
    reference_dir, reference = reference_run
    killed = run_subprocess(tmp_path, "--config.toy.kill_in_save_at=4")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    names = os.listdir(tmp_path / "checkpoints")
    assert "2" in names and "4" not in names
    assert any(name.startswith("4.orbax-checkpoint-tmp") for name in names)  # half-written

    resumed = run_in_process(tmp_path)
    assert '"resumed_from": 2' in (tmp_path / "run_info.json").read_text()
    assert not any("tmp" in name for name in os.listdir(tmp_path / "checkpoints"))
    assert_same_arrays(resumed.state, reference.state)
    assert logged(tmp_path) == logged(reference_dir)  # lines logged after step 2 were dropped


def test_truncated_checkpoint_names_the_step_and_resume_from_a_good_step(
    reference_run, tmp_path, capsys
):
    reference_dir, reference = reference_run
    workdir = tmp_path / "run"
    shutil.copytree(reference_dir, workdir)
    assert step_dirs(workdir / "checkpoints") == [4, 6]
    for root, _, files in os.walk(workdir / "checkpoints" / "6" / "state"):
        for name in files:
            path = os.path.join(root, name)
            os.truncate(path, os.path.getsize(path) // 2)

    argv = ["prog", f"--config={runner_toy.TOY_CONFIG}", f"--workdir={workdir}"]
    with pytest.raises(SystemExit) as info:
        runner.main(runner_toy.run, argv=argv)
    assert info.value.code == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.startswith(f"error: checkpoint step 6 in {workdir}/checkpoints is unreadable")
    assert last_line.endswith("restart with --resume_from=4")

    resumed = run_in_process(workdir, resume_from=4)
    assert (resumed.loop.iteration, resumed.stop_reason) == (6, "finished")
    assert_same_arrays(resumed.state, reference.state)
    assert logged(workdir) == logged(reference_dir)
    assert (workdir / ABANDONED_DIR / "6").is_dir()  # set aside, not deleted


def test_resume_from_a_missing_step_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match=r"--resume_from=3: no checkpoint for that step in "
                                              r".* \(available steps: none\)"):
        run_in_process(tmp_path, resume_from=3)
