"""Tiny reward models on the QA-Feedback dev split (fit 50 examples, report on the rest):

    python -m fgjax.train_rm --config=configs/rm_tiny.py --config.rm.name=r1 --workdir=/tmp/rm_r1

``rm.name`` picks r1 (relevance), r2 (factuality), r3 (completeness) or holistic. Trains a
1,024-token BPE tokenizer at ``tokenizer.path`` on first use. Keys: ``fgjax.train_rm.RM_SCHEMA``.
"""

import os

from fgjax.config import defaults
from fgjax.train_rm import RM_SCHEMA

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def get_config():
    config = defaults(RM_SCHEMA)
    config.data.dir = os.path.join(REPO_ROOT, "..", "shared", "data", "qa_feedback")
    config.data.num_train = 50  # examples to fit (R1/R2 rows, R3/holistic pairs)
    config.data.num_eval = 64  # held-out examples from other records
    config.tokenizer.path = "/tmp/fgjax_tiny_bpe_1024"  # trained here on first use
    config.tokenizer.train_vocab_size = 1024
    config.model.family = "gpt2"  # fresh tiny model
    config.model.hidden_size = 32
    config.model.intermediate_size = 64
    config.model.num_layers = 2
    config.model.num_heads = 2
    config.model.max_positions = 256
    config.rm.name = "r1"
    config.rm.class_weights = "none"
    config.rm.batch_size = 8
    config.rm.eval_batch_size = 32
    config.rm.learning_rate = 3e-3
    config.rm.max_prompt_len = 48  # R1: the question; R2/R3: the question + passage start
    config.rm.max_answer_len = 160  # QA answers run to ~150 tokens with this vocabulary
    config.mesh.data = -1  # all devices on the batch; tiny parameters stay replicated
    config.mesh.fsdp = 1
    config.num_iterations = 150
    config.eval_every = 50
    config.checkpoint.every = 50
    config.checkpoint.best_metric = "eval/heldout_accuracy"
    config.checkpoint.keep_best = 0
    config.logging.progress_keys = ("loss/total",)
    config.guards.kl_strikes = 0  # no KL in supervised training
    config.logging.plot = False  # metrics.plot_curves draws PPO metrics only
    return config
