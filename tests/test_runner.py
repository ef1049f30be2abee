"""The shared run loop on the toy job: SIGTERM + resume equality, guards, the grace period."""

import json
import os
import signal
import threading

import pytest
import runner_toy
from runner_toy import (
    assert_same_arrays,
    logged,
    restore_state,
    run_in_process,
    run_subprocess,
)

from fgjax import runner
from fgjax.checkpoint import step_dirs
from fgjax.errors import TrainingStopped, VocabularyMismatchError
from fgjax.preemption import EXIT_ABANDONED, PreemptionWatcher


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    return runner_toy.reference_run(tmp_path_factory)


def test_sigterm_then_resume_equals_an_uninterrupted_run(reference_run, tmp_path):
    reference_dir, reference = reference_run
    assert reference.stop_reason == "finished" and reference.loop.iteration == 6
    # The step signals its own process after iteration 3: the run saves and exits 0.
    interrupted = run_subprocess(tmp_path, "--config.toy.sigterm_after=3")
    assert interrupted.returncode == 0, interrupted.stderr[-3000:]
    assert "preempted: saved iteration 3" in interrupted.stderr
    assert step_dirs(tmp_path / "checkpoints") == [2, 3]
    assert [r["step"] for r in logged(tmp_path)] == [1, 2, 3]

    resumed = run_in_process(tmp_path)  # no --resume_from: picks up the workdir's latest
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["resumed_from"] == 3
    assert resumed.stop_reason == "finished"
    assert (resumed.loop.iteration, resumed.loop.data_position) == (6, 6)
    assert_same_arrays(resumed.state, reference.state)
    assert logged(tmp_path) == logged(reference_dir)


def test_kl_early_stop_after_five_strikes(tmp_path):
    result = run_in_process(tmp_path, "--config.guards.kl_threshold=0.0",
                            "--config.guards.kl_strikes=5")
    assert result.stop_reason == "kl_early_stop"
    assert (result.loop.iteration, result.loop.kl_strikes) == (5, 5)
    assert [r["guard/kl_strikes"] for r in logged(tmp_path)] == [1, 2, 3, 4, 5]
    assert 5 in step_dirs(tmp_path / "checkpoints")  # saved where it stopped


def test_nonfinite_updates_are_skipped_then_stop_the_run(tmp_path):
    overrides = ("--config.toy.nan_from_iteration=3", "--config.guards.max_nonfinite_in_row=2")
    with pytest.raises(TrainingStopped, match=r"stopped at iteration 4: the update was skipped "
                                              r"for a non-finite loss or gradient 2 iterations"):
        run_in_process(tmp_path, *overrides)
    records = logged(tmp_path)
    assert [r["guard/nonfinite_skipped"] for r in records] == [0, 0, 1, 1]
    assert [r["guard/nonfinite_in_row"] for r in records] == [0, 0, 1, 2]
    # Skipped updates leave parameters and optimizer state as they were after iteration 2.
    after_2, _, _ = restore_state(tmp_path, 2, *overrides)
    after_4, loop_4, _ = restore_state(tmp_path, 4, *overrides)
    assert_same_arrays((after_2.params, after_2.opt_state), (after_4.params, after_4.opt_state))
    assert int(after_4.nonfinite_skips) == 2 and loop_4["nonfinite_in_row"] == 2


def test_grace_period_bounds_the_exit_after_sigterm():
    previous = signal.getsignal(signal.SIGTERM)
    expired = threading.Event()
    statuses = []

    def on_expired(status):
        statuses.append(status)
        expired.set()

    with PreemptionWatcher(0.2, on_grace_expired=on_expired) as watcher:
        assert not watcher.requested()
        os.kill(os.getpid(), signal.SIGTERM)
        assert watcher.requested()
        assert expired.wait(10), "the watchdog did not fire"
    assert statuses == [EXIT_ABANDONED]
    assert signal.getsignal(signal.SIGTERM) is previous

    with PreemptionWatcher(0.3, on_grace_expired=on_expired) as watcher:
        os.kill(os.getpid(), signal.SIGTERM)
    # Leaving the context in time (a clean, saved exit) cancels the watchdog.
    assert not threading.Event().wait(0.6) and statuses == [EXIT_ABANDONED]


def test_entry_point_turns_a_user_error_into_one_line_and_status_2(capsys):
    def run(command_line):
        raise VocabularyMismatchError("reward model 'relevance' has 4 tokens,\nthe policy 5")

    argv = ["prog", f"--config={runner_toy.TOY_CONFIG}", "--workdir=/tmp/unused"]
    with pytest.raises(SystemExit) as info:
        runner.main(run, argv=argv)
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: reward model 'relevance' has 4 tokens, the policy 5"
    )


@pytest.fixture
def restore_compilation_cache():
    """The session's cache settings (conftest) come back after a test changes them."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    names = ("jax_enable_compilation_cache", "jax_compilation_cache_dir",
             "jax_persistent_cache_min_compile_time_secs")
    before = {name: getattr(jax.config, name) for name in names}
    yield
    for name, value in before.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


def test_compilation_cache_loads_a_program_compiled_before_and_turns_off(
        tmp_path, restore_compilation_cache):
    import jax
    import jax.numpy as jnp

    from fgjax.config import runner_config

    hits = []

    def on_event(event, **kwargs):
        if event == "/jax/compilation_cache/cache_hits":
            hits.append(event)

    config = runner_config()
    config.compilation_cache.dir = str(tmp_path / "xla")
    runner.use_compilation_cache(config)
    jax.jit(lambda x: jnp.cumsum(x) * 3.0 + 1.0)(jnp.arange(11.0))
    stored = set((tmp_path / "xla").iterdir())
    assert stored, "nothing written to the cache folder"
    jax.monitoring.register_event_listener(on_event)
    try:
        # Another function object with the same program (as a later stage or seed builds it).
        jax.jit(lambda y: jnp.cumsum(y) * 3.0 + 1.0)(jnp.arange(11.0))
        assert len(hits) == 1
        config.compilation_cache.dir = ""
        runner.use_compilation_cache(config)
        assert not jax.config.jax_enable_compilation_cache
        jax.jit(lambda z: jnp.cumsum(z) * 3.0 + 1.0)(jnp.arange(11.0))
        jax.jit(lambda z: jnp.cumprod(z) - 2.0)(jnp.arange(13.0))
        assert len(hits) == 1 and set((tmp_path / "xla").iterdir()) == stored
    finally:
        jax.monitoring.unregister_event_listener(on_event)


def test_compilation_cache_folder_that_cannot_be_created_is_a_config_error(
        tmp_path, restore_compilation_cache):
    from fgjax.config import runner_config
    from fgjax.errors import ConfigError

    (tmp_path / "file").write_text("")
    config = runner_config()
    config.compilation_cache.dir = str(tmp_path / "file" / "xla")
    with pytest.raises(ConfigError, match="compilation_cache.dir.*writable folder"):
        runner.use_compilation_cache(config)
