"""Tiny SFT on the QA-Feedback dev split, minutes on a CPU.

    python -m fgjax.sft --config=configs/sft_tiny.py --workdir=/tmp/sft_tiny

Trains a 1,024-token BPE tokenizer at ``tokenizer.path`` on first use. Every key is documented
in ``fgjax.sft.SFT_SCHEMA`` (``--help`` lists them).
"""

import os

from fgjax.config import defaults
from fgjax.sft import SFT_SCHEMA

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def get_config():
    config = defaults(SFT_SCHEMA)
    config.data.dir = os.path.join(REPO_ROOT, "..", "shared", "data", "qa_feedback")
    config.data.num_train = 50  # a small subset: fast, and a clear drop in perplexity
    config.data.num_eval = 50  # perplexity on the training prompts' answers
    config.tokenizer.path = "/tmp/fgjax_tiny_bpe_1024"  # trained here on first use
    config.tokenizer.train_vocab_size = 1024
    config.model.family = "gpt2"  # fresh tiny model (~0.1M parameters)
    config.model.hidden_size = 32
    config.model.intermediate_size = 64
    config.model.num_layers = 2
    config.model.num_heads = 2
    config.model.max_positions = 256
    config.sft.batch_size = 8
    config.sft.eval_batch_size = 16
    config.sft.learning_rate = 3e-3
    config.sft.max_prompt_len = 32  # the question and the start of the passages
    config.sft.max_answer_len = 64
    config.mesh.data = -1  # all devices on the batch; tiny parameters stay replicated
    config.mesh.fsdp = 1
    config.num_iterations = 60
    config.eval_every = 20
    config.checkpoint.every = 20
    config.checkpoint.best_metric = "eval/neg_perplexity"
    config.checkpoint.keep_best = 0
    config.logging.progress_keys = ("loss/total",)
    config.guards.kl_strikes = 0  # no KL in supervised training
    config.logging.plot = False  # metrics.plot_curves draws PPO metrics only
    return config
