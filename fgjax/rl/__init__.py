"""Pure RL math on ``[B, T]`` arrays with masks: whitening, GAE, KL penalty, PPO losses.

Imports no models. Every function is jit-compatible and has a NumPy loop reference in
``tests/numpy_reference.py``.
"""

from fgjax.rl.gae import GAE_MODES, gae
from fgjax.rl.kl import kl_penalized_rewards
from fgjax.rl.logits import entropy_from_logits, logprobs_from_logits
from fgjax.rl.losses import (
    approx_kl,
    policy_clip_fraction,
    ppo_diagnostics,
    ppo_policy_loss,
    ppo_value_loss,
    value_clip_fraction,
)
from fgjax.rl.whiten import WHITEN_MODES, masked_mean, masked_sum, masked_var, masked_whiten

__all__ = [
    "GAE_MODES",
    "WHITEN_MODES",
    "approx_kl",
    "entropy_from_logits",
    "gae",
    "kl_penalized_rewards",
    "logprobs_from_logits",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "policy_clip_fraction",
    "ppo_diagnostics",
    "ppo_policy_loss",
    "ppo_value_loss",
    "value_clip_fraction",
]
