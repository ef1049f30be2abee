"""The optimizer: Adam(W) with warmup + linear decay, optional per-model gradient clipping."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    learning_rate: float = 1e-5
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-5
    weight_decay: float = 0.0  # > 0 gives AdamW
    warmup_steps: int = 0  # optimizer steps of linear warmup from 0
    total_steps: int = 0  # optimizer steps at which the rate reaches 0; 0 = constant after warmup
    max_grad_norm: float = 0.0  # > 0 clips each model's gradient (policy, value) to this norm


def learning_rate_schedule(cfg: OptimizerConfig) -> optax.Schedule:
    """Linear warmup to ``learning_rate`` then linear decay to 0 at ``total_steps``."""
    warmup = max(cfg.warmup_steps, 0)
    if cfg.total_steps <= 0:
        if warmup == 0:
            return optax.constant_schedule(cfg.learning_rate)
        return optax.linear_schedule(0.0, cfg.learning_rate, warmup)
    decay_steps = max(cfg.total_steps - warmup, 1)

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        up = step / max(warmup, 1)
        down = jnp.maximum(0.0, (cfg.total_steps - step) / decay_steps)
        return cfg.learning_rate * jnp.where(step < warmup, up, down)

    return schedule


def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
    """Adam (AdamW when ``weight_decay > 0``); the current rate is readable from the state
    (``opt_state.hyperparams["learning_rate"]``) for logging."""
    schedule = learning_rate_schedule(cfg)
    if cfg.weight_decay > 0:
        return optax.inject_hyperparams(optax.adamw)(
            learning_rate=schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay
        )
    return optax.inject_hyperparams(optax.adam)(
        learning_rate=schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps
    )


def clip_each_model(grads: dict, max_norm: float) -> tuple[dict, jax.Array]:
    """Clip every top-level entry (each model's gradients) to ``max_norm`` separately, as the
    release does for policy and value. Returns the clipped grads and the global norm before."""
    norm = optax.tree.norm(grads)
    if max_norm <= 0:
        return grads, norm

    def clip(tree):
        scale = jnp.minimum(1.0, max_norm / (optax.tree.norm(tree) + 1e-6))
        return jax.tree.map(lambda g: g * scale.astype(g.dtype), tree)

    return {name: clip(tree) for name, tree in grads.items()}, norm
