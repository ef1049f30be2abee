"""The default of ``python -m fgjax.train``: the synthetic fine-grained QA pipeline, quick
version (SFT -> oracle feedback -> R1/R2/R3/holistic RMs -> fine-grained vs holistic PPO ->
oracle evaluation), minutes on a 2-core CPU.

    python -m fgjax.train                      # workdir ./runs/synthetic_qa
    python -m fgjax.train --config=configs/synthetic_qa.py --workdir=/tmp/fg --config.seed=1

Keys and docs: ``fgjax/pipelines/synthetic_config.py`` (``--help`` lists them).
"""

from fgjax.pipelines.synthetic_config import synthetic_defaults


def get_config():
    config = synthetic_defaults()
    config.workdir = "runs/synthetic_qa"  # stages are cached here; a rerun skips finished ones
    config.checkpoint.keep_best = 0  # the pipeline ranks nothing; each stage keeps its own
    config.checkpoint.every = 200  # training stages also save at the end and on SIGTERM
    return config
