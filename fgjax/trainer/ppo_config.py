"""The PPO job's config keys (with docs and allowed values) and their conversion to the
trainer's frozen dataclasses. Config files start from ``ppo_defaults()``."""

from __future__ import annotations

import ml_collections

from fgjax.config import (
    RUNNER_SCHEMA,
    boolean,
    check_divisible,
    choice,
    defaults,
    integer,
    number,
    path,
    string,
    string_list,
)
from fgjax.errors import ConfigError
from fgjax.rewards import RewardModelSpec
from fgjax.rollout import SamplingConfig
from fgjax.trainer.optim import OptimizerConfig
from fgjax.trainer.ppo import NORMALIZATIONS, PPOConfig

# Reward-model slots: the paper's three fine-grained RMs and the holistic preference RM.
REWARD_SLOTS = {
    # name: (kind, level, batch input, default positive/negative reward)
    "r1": ("token_cls", "subsentence", "rm_question", 0.3),
    "r2": ("token_cls", "sentence", "rm_passages", 0.5),
    "r3": ("seq_reg", "sequence", "rm_passages", 0.0),
    "holistic": ("seq_reg", "sequence", "rm_passages", 0.0),
}


def _reward_slot_fields(name: str) -> dict:
    kind, level, _, magnitude = REWARD_SLOTS[name]
    p = f"rewards.{name}."
    fields = {
        p + "checkpoint": path("", f"HF directory of the {name} reward model ({kind})"),
        p + "weight": number(1.0, f"weight of {name} in the dense reward sum"),
    }
    if kind == "token_cls":
        fields[p + "positive"] = number(magnitude, f"reward at a {level} end {name} calls OK")
        fields[p + "negative"] = number(-magnitude, f"reward at a {level} end with an error")
        fields[p + "error_label"] = integer(1, "the class meaning 'this segment has an error'", 0)
    else:
        fields[p + "scale"] = number(0.3, "normalised score x scale + bias at the last token")
        fields[p + "bias"] = number(0.0, "added after scaling")
        fields[p + "stats"] = path(
            "", "reward_stats.json (mean, std of training scores); '' = the checkpoint's own"
        )
    return fields


PPO_SCHEMA = {
    **RUNNER_SCHEMA,
    "job": choice("ppo", "which job fgjax.train runs", ("ppo",)),
    "data.task": choice("qa_feedback", "prompt source", ("qa_feedback",)),
    "data.dir": path("", "folder holding {split}.json (QA-Feedback prompt files)"),
    "data.train_split": string("train", "split whose prompts PPO trains on"),
    "data.eval_split": string("dev", "split evaluated every eval_every iterations"),
    "data.eval_prompts": integer(32, "prompts of the eval split used (greedy)", minimum=1),
    "data.max_prompt_len": integer(1024, "policy prompt tokens (longer prompts cut)", minimum=8),
    "data.max_rm_prompt_len": integer(1024, "reward-model prompt tokens", minimum=8),
    "model.tokenizer": path("", "tokenizer directory shared by policy and fused RMs"),
    "model.policy": path("", "HF directory of the SFT policy (also the frozen reference)"),
    "model.value": path("", "HF directory the value model starts from; '' = the policy's"),
    "model.dtype": choice("float32", "computation dtype", ("float32", "bfloat16")),
    "sampling.max_new_tokens": integer(200, "response tokens (static)", minimum=1),
    "sampling.num_samples": integer(4, "samples per prompt per rollout", minimum=1),
    "sampling.temperature": number(0.7, "sampling temperature", minimum=0.0),
    "sampling.top_k": integer(20, "top-k filter; 0 = off", minimum=0),
    "sampling.top_p": number(1.0, "nucleus filter; 1.0 = off", minimum=0.0),
    "ppo.prompts_per_rollout": integer(8, "prompts per PPO iteration (global)", minimum=1),
    "ppo.kl_coef": number(0.3, "per-token KL penalty coefficient", minimum=0.0),
    "ppo.gamma": number(1.0, "GAE discount", minimum=0.0),
    "ppo.lam": number(0.95, "GAE lambda", minimum=0.0),
    "ppo.cliprange": number(0.2, "policy ratio clip", minimum=0.0),
    "ppo.cliprange_value": number(0.2, "value clip around the old values", minimum=0.0),
    "ppo.vf_coef": number(1.0, "value-loss coefficient", minimum=0.0),
    "ppo.entropy_coef": number(0.0, "entropy bonus coefficient", minimum=0.0),
    "ppo.epochs": integer(4, "PPO epochs per rollout", minimum=1),
    "ppo.minibatch_size": integer(4, "rollout rows (prompts x samples) per minibatch", minimum=1),
    "ppo.whiten_rewards": boolean(True, "whiten rewards (scale only) before GAE"),
    "ppo.normalization": choice("reference", "whitening / accumulation mode", NORMALIZATIONS),
    "ppo.policy_value_sharing": boolean(False, "one backbone with LM and value heads"),
    "optim.learning_rate": number(1e-5, "Adam learning rate (peak)", minimum=0.0),
    "optim.eps": number(1e-5, "Adam epsilon", minimum=0.0),
    "optim.weight_decay": number(0.0, "AdamW weight decay; 0 = Adam", minimum=0.0),
    "optim.warmup_steps": integer(400, "optimizer steps of linear warmup", minimum=0),
    "optim.max_grad_norm": number(0.0, "clip each model's gradient norm; 0 = off", minimum=0.0),
    "rewards.use": string_list(("r1", "r2", "r3"), "fused reward models in the sum", REWARD_SLOTS),
    **{k: v for name in REWARD_SLOTS for k, v in _reward_slot_fields(name).items()},
}


def ppo_defaults() -> ml_collections.ConfigDict:
    return defaults(PPO_SCHEMA)


def check_ppo_config(config: ml_collections.ConfigDict, batch_devices: int) -> None:
    """Cross-key checks (single keys are checked by the schema)."""
    rows = config.ppo.prompts_per_rollout * config.sampling.num_samples
    check_divisible(config, "ppo.prompts_per_rollout", batch_devices, "the data*fsdp devices")
    if rows % config.ppo.minibatch_size:
        raise ConfigError(
            f"config key 'ppo.minibatch_size' = {config.ppo.minibatch_size}: must divide the "
            f"rollout's {rows} rows (ppo.prompts_per_rollout x sampling.num_samples)"
        )
    for key in ("data.dir", "model.tokenizer", "model.policy"):
        section, name = key.split(".")
        if not config[section][name]:
            raise ConfigError(f"config key {key!r} is empty; allowed: an existing path")
    if not config.rewards.use:
        raise ConfigError(
            "config key 'rewards.use' is empty; allowed: a list of " + f"{tuple(REWARD_SLOTS)}"
        )
    for name in config.rewards.use:
        if not config.rewards[name].checkpoint:
            raise ConfigError(
                f"config key 'rewards.{name}.checkpoint' is empty but {name!r} is in "
                "rewards.use; allowed: an existing path"
            )
    if config.sampling.temperature <= 0:
        raise ConfigError("config key 'sampling.temperature' must be > 0")


def sampling_config(config, eos_id: int, pad_id: int, greedy: bool = False) -> SamplingConfig:
    s = config.sampling
    return SamplingConfig(
        max_new_tokens=s.max_new_tokens,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        num_samples=1 if greedy else s.num_samples,
        temperature=s.temperature,
        top_k=s.top_k,
        top_p=s.top_p,
        greedy=greedy,
    )


def ppo_config(config) -> PPOConfig:
    p = config.ppo
    return PPOConfig(
        kl_coef=p.kl_coef,
        gamma=p.gamma,
        lam=p.lam,
        cliprange=p.cliprange,
        cliprange_value=p.cliprange_value,
        vf_coef=p.vf_coef,
        entropy_coef=p.entropy_coef,
        ppo_epochs=p.epochs,
        minibatch_size=p.minibatch_size,
        whiten_rewards=p.whiten_rewards,
        normalization=p.normalization,
        policy_value_sharing=p.policy_value_sharing,
    )


def optimizer_config(config, steps_per_iteration: int) -> OptimizerConfig:
    o = config.optim
    return OptimizerConfig(
        learning_rate=o.learning_rate,
        eps=o.eps,
        weight_decay=o.weight_decay,
        warmup_steps=o.warmup_steps,
        total_steps=config.num_iterations * steps_per_iteration,
        max_grad_norm=o.max_grad_norm,
    )


def reward_specs(config, stats_by_name: dict[str, tuple[float, float]]) -> list[RewardModelSpec]:
    """Specs of the RMs in ``rewards.use``; ``stats_by_name`` gives (mean, std) of seq RMs."""
    specs = []
    for name in config.rewards.use:
        kind, level, rm_input, _ = REWARD_SLOTS[name]
        slot = config.rewards[name]
        common = dict(
            name=name,
            kind=kind,
            level=level,
            checkpoint=slot.checkpoint,
            weight=slot.weight,
            input=rm_input,
        )
        if kind == "token_cls":
            specs.append(
                RewardModelSpec(
                    **common,
                    positive=slot.positive,
                    negative=slot.negative,
                    error_label=slot.error_label,
                )
            )
        else:
            mean, std = stats_by_name[name]
            specs.append(
                RewardModelSpec(**common, mean=mean, std=std, scale=slot.scale, bias=slot.bias)
            )
    return specs
