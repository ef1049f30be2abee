"""QA evaluation of a tiny policy on 32 dev prompts:

    python -m fgjax.evaluate --config=configs/eval_tiny.py --workdir=/tmp/eval_tiny \\
        --config.policy.path=/tmp/sft_tiny/hf --config.rm.relevance=/tmp/rm_r1/hf \\
        --config.rm.factuality=/tmp/rm_r2/hf --config.rm.completeness=/tmp/rm_r3/hf

(the folders that ``configs/sft_tiny.py`` and ``configs/rm_tiny.py`` runs export). Keys:
``fgjax.evaluate.EVAL_SCHEMA``.
"""

import os

from fgjax.config import defaults
from fgjax.evaluate import EVAL_SCHEMA

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def get_config():
    config = defaults(EVAL_SCHEMA)
    config.data.dir = os.path.join(REPO_ROOT, "..", "shared", "data", "qa_feedback")
    config.data.num_prompts = 32
    config.eval.batch_size = 16
    config.eval.max_prompt_len = 32  # as configs/sft_tiny.py trained it
    config.eval.max_new_tokens = 64
    config.rm.max_prompt_len = 48  # as configs/rm_tiny.py trained them
    return config
