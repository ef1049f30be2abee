"""A tiny linear-regression job for the run infrastructure (runner, checkpoints, metrics).

Run with the test helper: ``python tests/runner_toy.py --config=configs/toy.py --workdir=/tmp/toy``.
Only ``TOY_SCHEMA``'s keys are allowed; every field's doc is in the schema (``--help`` lists them).
"""

from fgjax.config import RUNNER_SCHEMA, defaults, integer, number

TOY_SCHEMA = {
    **RUNNER_SCHEMA,
    "toy.batch_size": integer(16, "rows per batch; a multiple of the data*fsdp devices", minimum=1),
    "toy.features": integer(16, "input width (rows of the weight, sharded over fsdp)", minimum=1),
    "toy.outputs": integer(4, "output width", minimum=1),
    "toy.learning_rate": number(0.05, "Adam learning rate", minimum=0.0),
    "toy.nan_from_iteration": integer(0, "feed NaN inputs from this iteration on; 0 = never",
                                      minimum=0),
    "toy.sigterm_after": integer(0, "the step signals SIGTERM to its own process after this "
                                    "iteration (preemption tests); 0 = never", minimum=0),
    "toy.kill_in_save_at": integer(0, "SIGKILL the process in the middle of saving this step "
                                      "(crash tests); 0 = never", minimum=0),
}


def get_config():
    config = defaults(TOY_SCHEMA)
    config.num_iterations = 6  # short enough for a test, long enough to resume in the middle
    config.eval_every = 2  # evaluations rank the best checkpoint
    config.checkpoint.every = 2  # iterations between checkpoints
    config.checkpoint.async_save = True  # exercise the asynchronous path
    config.logging.log_every = 1  # one JSONL line per iteration
    config.logging.progress = False  # quiet test logs
    config.logging.plot = False  # matplotlib costs ~1 s; the metrics test turns it on
    config.guards.kl_threshold = 1e9  # the toy's "KL" is a weight norm; no early stop
    config.preemption.grace_seconds = 30.0  # bound on the exit after SIGTERM
    return config
