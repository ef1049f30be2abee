"""``python -m fgjax.train [--config=configs/<name>.py] [--config.key=value ...] [--workdir=DIR]``

With no ``--config``: the synthetic fine-grained QA pipeline (``configs/synthetic_qa.py``).
A config's ``job`` key picks what runs: ``synthetic_qa`` (the whole pipeline,
``fgjax/pipelines/synthetic_qa.py``) or ``ppo`` (PPO from given checkpoints,
``fgjax/trainer/job.py``).
"""

from __future__ import annotations

import os

from fgjax import runner
from fgjax.config import CommandLine
from fgjax.pipelines.synthetic_config import SYNTHETIC_SCHEMA
from fgjax.trainer.ppo_config import PPO_SCHEMA

DEFAULT_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "synthetic_qa.py"
)


def run(command_line: CommandLine):
    if command_line.config.get("job") == "synthetic_qa":
        from fgjax.pipelines import synthetic_qa

        return synthetic_qa.run(command_line)
    from fgjax.trainer import job

    return job.run(command_line)


def main(argv: list[str] | None = None) -> None:
    runner.main(run, argv, DEFAULT_CONFIG, {**PPO_SCHEMA, **SYNTHETIC_SCHEMA})


if __name__ == "__main__":
    main()
