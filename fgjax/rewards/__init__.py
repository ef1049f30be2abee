"""Fused reward models: dense ``[B, T]`` segment rewards computed inside the compiled step."""

from fgjax.rewards.dense import (
    ModelReward,
    combine_rewards,
    sequence_rewards,
    token_classification_rewards,
)
from fgjax.rewards.fused import (
    SegmentFn,
    load_reward_models,
    make_reward_fn,
    pack_prompt_response,
    rm_outputs_on_response,
    score_model,
    score_responses,
)
from fgjax.rewards.spec import KINDS, LEVELS, RewardModelSpec, check_same_tokenizer

__all__ = [
    "KINDS",
    "LEVELS",
    "ModelReward",
    "RewardModelSpec",
    "SegmentFn",
    "check_same_tokenizer",
    "combine_rewards",
    "load_reward_models",
    "make_reward_fn",
    "pack_prompt_response",
    "rm_outputs_on_response",
    "score_model",
    "score_responses",
    "sequence_rewards",
    "token_classification_rewards",
]
