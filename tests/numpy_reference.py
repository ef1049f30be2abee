"""NumPy ports, with explicit Python loops over rows and time steps, of the release's RL math
(allenai/FineGrainedRLHF, ``fgrlhf/ppo.py`` and ``fgrlhf/utils.py``), written from its semantics
for the parity tests of ``fgjax.rl``. Float64 throughout; deliberately slow and literal.
"""

from __future__ import annotations

import math

import numpy as np


def _real_tokens(mask):
    """``(b, t)`` of every real token, row by row, time step by time step."""
    for b in range(mask.shape[0]):
        for t in range(mask.shape[1]):
            if mask[b, t]:
                yield b, t


def _masked_moments(x, mask):
    """Mean and mean of squares over the masked entries of the whole batch."""
    total, total_sq, count = 0.0, 0.0, 0.0
    for b, t in _real_tokens(mask):
        total += float(x[b, t])
        total_sq += float(x[b, t]) ** 2
        count += 1.0
    return total / count, total_sq / count


def whiten_reference(x, mask, shift_mean=True):
    """The release: masked mean and *std* ``s = sqrt(E[x^2] - E[x]^2)``, multiply by
    ``1/sqrt(s + 1e-8)``, add the mean back when not shifting; no re-masking."""
    mean, mean_sq = _masked_moments(x, mask)
    std = math.sqrt(mean_sq - mean**2)
    out = np.zeros(x.shape)
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            out[b, t] = (x[b, t] - mean) / math.sqrt(std + 1e-8)
            if not shift_mean:
                out[b, t] += mean
    return out


def whiten_standard(x, mask, shift_mean=True):
    """Unit-variance whitening (population variance), zero outside the mask."""
    mean, mean_sq = _masked_moments(x, mask)
    var = mean_sq - mean**2
    out = np.zeros(x.shape)
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            if mask[b, t]:
                out[b, t] = (x[b, t] - mean) / math.sqrt(var + 1e-8)
                if not shift_mean:
                    out[b, t] += mean
    return out


def gae_reference(rewards, values, mask, gamma, lam):
    """The release's loop: backwards over the longest response's length for every row, next
    value 0 after the last of those columns, advantages padded with 0 beyond it,
    ``returns = advantages + values`` everywhere."""
    batch, length = rewards.shape
    gen_length = max(int(sum(mask[b])) for b in range(batch))
    advantages = np.zeros((batch, length))
    for b in range(batch):
        last = 0.0
        for t in reversed(range(gen_length)):
            next_value = values[b, t + 1] if t < gen_length - 1 else 0.0
            delta = rewards[b, t] + gamma * next_value - values[b, t]
            last = delta + gamma * lam * last
            advantages[b, t] = last
    return advantages, advantages + values


def gae_standard(rewards, values, mask, gamma, lam):
    """Each row stops at its own last real token; outputs zero on padding."""
    batch, length = rewards.shape
    advantages = np.zeros((batch, length))
    returns = np.zeros((batch, length))
    for b in range(batch):
        row_length = int(sum(mask[b]))
        last = 0.0
        for t in reversed(range(row_length)):
            next_value = values[b, t + 1] if t + 1 < row_length else 0.0
            delta = rewards[b, t] + gamma * next_value - values[b, t]
            last = delta + gamma * lam * last
            advantages[b, t] = last
            returns[b, t] = last + values[b, t]
    return advantages, returns


def kl_penalized_rewards(rewards, logprobs, ref_logprobs, mask, kl_coef):
    kl = np.zeros(rewards.shape)
    penalized = np.zeros(rewards.shape)
    for b in range(rewards.shape[0]):
        for t in range(rewards.shape[1]):
            kl[b, t] = logprobs[b, t] - ref_logprobs[b, t] if mask[b, t] else 0.0
            penalized[b, t] = rewards[b, t] - kl_coef * kl[b, t]
    return penalized, kl


def ppo_policy_loss(logprobs, old_logprobs, advantages, mask, clip):
    """``(sum, count)`` of ``max(-A r, -A clip(r))`` over real tokens."""
    total, count = 0.0, 0.0
    for b, t in _real_tokens(mask):
        ratio = math.exp(logprobs[b, t] - old_logprobs[b, t])
        clipped = min(max(ratio, 1.0 - clip), 1.0 + clip)
        total += max(-advantages[b, t] * ratio, -advantages[b, t] * clipped)
        count += 1.0
    return total, count


def ppo_value_loss(values, old_values, returns, mask, clip):
    """``(sum, count)`` of ``0.5 * max((v - R)^2, (clip(v, v_old +- clip) - R)^2)``."""
    total, count = 0.0, 0.0
    for b, t in _real_tokens(mask):
        v, ret = values[b, t], returns[b, t]
        v_clipped = min(max(v, old_values[b, t] - clip), old_values[b, t] + clip)
        total += 0.5 * max((v - ret) ** 2, (v_clipped - ret) ** 2)
        count += 1.0
    return total, count


def ppo_diagnostics(logprobs, old_logprobs, values, old_values, mask, clip, clip_value):
    """Means of: ratio outside ``1 +- clip``; value moved more than ``clip_value``;
    ``0.5 * log_ratio^2``."""
    ratio_out, value_out, kl, count = 0.0, 0.0, 0.0, 0.0
    for b, t in _real_tokens(mask):
        log_ratio = logprobs[b, t] - old_logprobs[b, t]
        ratio_out += abs(math.exp(log_ratio) - 1.0) > clip
        value_out += abs(values[b, t] - old_values[b, t]) > clip_value
        kl += 0.5 * log_ratio**2
        count += 1.0
    return ratio_out / count, value_out / count, kl / count
