"""``python -m fgjax.train --config=configs/<name>.py [--config.key=value ...] --workdir=DIR``

Fine-grained RLHF with PPO; see ``fgjax/trainer/job.py`` for what a run does.
"""

from __future__ import annotations

from fgjax import runner
from fgjax.trainer import job
from fgjax.trainer.ppo_config import PPO_SCHEMA


def main(argv: list[str] | None = None) -> None:
    runner.main(job.run, argv, schema=PPO_SCHEMA)


if __name__ == "__main__":
    main()
