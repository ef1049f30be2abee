"""The compiled sampler: greedy = argmax of the full forward pass, filtered sampling follows
the top-k / temperature / top-p distribution, EOS stops rows, n samples per prompt."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ppo_fixtures import EOS, PAD, gpt2_config, llama_config, t5_config, tiny_batch

from fgjax.models import init_model
from fgjax.rollout import SamplingConfig, filter_logits, next_token, sample
from fgjax.trainer.forward import response_outputs

# chi-square critical values at p = 0.001
CHI2_CRITICAL = {3: 16.27, 4: 18.47, 5: 20.52}


@pytest.mark.parametrize("make_config", [gpt2_config, llama_config, t5_config])
def test_greedy_equals_argmax_of_full_forward(make_config):
    model, params = init_model(make_config(), jax.random.key(3))
    batch = tiny_batch(batch_size=4, prompt_len=6, seed=1)
    cfg = SamplingConfig(max_new_tokens=10, eos_token_id=EOS, pad_token_id=PAD, num_samples=2,
                         greedy=True)
    out = jax.jit(lambda p, b: sample(model, p, b["prompt_ids"], b["prompt_mask"],
                                      jax.random.key(0), cfg))(params, batch)
    ids, mask = np.asarray(out.response_ids), np.asarray(out.response_mask)
    np.testing.assert_array_equal(ids[0::2], ids[1::2])  # greedy: the n samples agree
    prompt_ids = jnp.repeat(batch["prompt_ids"], 2, axis=0)
    prompt_mask = jnp.repeat(batch["prompt_mask"], 2, axis=0)
    logits = response_outputs(model, params, prompt_ids, prompt_mask, out.response_ids,
                              out.response_mask, PAD)
    argmax = np.asarray(jnp.argmax(logits, axis=-1))
    assert mask[:, 0].all()
    np.testing.assert_array_equal(np.where(mask > 0, argmax, -1), np.where(mask > 0, ids, -1))


def test_eos_stops_rows_and_masks_the_rest():
    model, params = init_model(gpt2_config(), jax.random.key(0))
    # Make EOS likely so rows end at different steps.
    params["wte"]["embedding"] = params["wte"]["embedding"].at[EOS].mul(30.0)
    batch = tiny_batch(batch_size=8, prompt_len=6, seed=2)
    cfg = SamplingConfig(max_new_tokens=12, eos_token_id=EOS, pad_token_id=PAD, num_samples=4,
                         temperature=1.0)
    out = sample(model, params, batch["prompt_ids"], batch["prompt_mask"], jax.random.key(5), cfg)
    ids, mask = np.asarray(out.response_ids), np.asarray(out.response_mask)
    assert ids.shape == (32, 12)
    lengths = mask.sum(1)
    assert len(set(lengths.tolist())) > 1  # ragged: some rows stopped early
    for row_ids, row_mask, length in zip(ids, mask, lengths):
        np.testing.assert_array_equal(row_mask, np.arange(12) < length)  # a prefix
        eos_at = np.flatnonzero(row_ids[:length] == EOS)
        if length < 12:
            assert eos_at.tolist() == [length - 1]  # ended by its first EOS
        assert (row_ids[length:] == PAD).all()


def draw(logits, cfg, count=20000):
    keys = jax.random.split(jax.random.key(42), count)
    tokens = jax.jit(jax.vmap(lambda k: next_token(logits[None], k, cfg)[0]))(keys)
    return np.bincount(np.asarray(tokens), minlength=logits.shape[-1])


def chi_square(counts, probs):
    expected = probs * counts.sum()
    keep = expected > 0
    return float(np.sum((counts[keep] - expected[keep]) ** 2 / expected[keep]))


LOGITS = jnp.array([2.0, 1.5, 1.0, 0.5, 0.2, 0.0, -0.5, -1.0, -2.0, -3.0])


def test_top_k_temperature_frequencies():
    cfg = SamplingConfig(max_new_tokens=1, eos_token_id=0, pad_token_id=0, temperature=0.7,
                         top_k=4)
    counts = draw(LOGITS, cfg)
    probs = np.asarray(jax.nn.softmax(LOGITS[:4] / 0.7))
    probs = np.concatenate([probs, np.zeros(6)])
    assert counts[4:].sum() == 0
    assert chi_square(counts, probs) < CHI2_CRITICAL[3]
    # The test can fail: the untempered distribution is rejected.
    wrong = np.concatenate([np.asarray(jax.nn.softmax(LOGITS[:4])), np.zeros(6)])
    assert chi_square(counts, wrong) > CHI2_CRITICAL[3]


def test_top_p_keeps_the_smallest_nucleus():
    cfg = SamplingConfig(max_new_tokens=1, eos_token_id=0, pad_token_id=0, temperature=1.0,
                         top_p=0.8)
    probs = np.asarray(jax.nn.softmax(LOGITS))
    nucleus = int(np.searchsorted(np.cumsum(probs), 0.8) + 1)  # tokens until mass >= 0.8
    kept = np.asarray(filter_logits(LOGITS, cfg)) > -1e8
    assert kept.sum() == nucleus and kept[:nucleus].all()
    counts = draw(LOGITS, cfg)
    expected = np.where(kept, probs, 0) / probs[kept].sum()
    assert chi_square(counts, expected) < CHI2_CRITICAL[nucleus - 1]


def sorted_reference_filter(logits, top_k, top_p):
    """The sort-based filter (HF's warpers) in NumPy, one row at a time."""
    out = logits.astype(np.float64).copy()
    for row in out:
        if top_k:
            row[row < np.sort(row)[::-1][top_k - 1]] = -1e9
        if top_p < 1.0:
            desc = np.sort(row)[::-1]
            probs = np.exp(desc - desc.max())
            probs /= probs.sum()
            before = np.cumsum(probs) - probs
            row[row < desc[before < top_p].min()] = -1e9
    return out


@pytest.mark.parametrize("top_k,top_p", [(1, 1.0), (7, 1.0), (50, 1.0), (0, 0.9), (20, 0.7)])
def test_sort_free_filter_equals_sorted_reference(top_k, top_p):
    rng = np.random.default_rng(top_k)
    logits = rng.normal(size=(16, 300)).astype(np.float32) * 3
    logits[:, :40] = np.round(logits[:, :40])  # ties, also at the k-th value
    logits[0] = -np.abs(logits[0]) - 1  # an all-negative row
    cfg = SamplingConfig(max_new_tokens=1, eos_token_id=0, pad_token_id=0, top_k=top_k,
                         top_p=top_p)
    kept = np.asarray(jax.jit(lambda x: filter_logits(x, cfg))(logits)) > -1e8
    expected = sorted_reference_filter(logits, top_k, top_p) > -1e8
    np.testing.assert_array_equal(kept, expected)
    if top_k and top_p == 1.0:
        assert (kept.sum(1) >= top_k).all()


def test_sampling_config_rejects_bad_values():
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(max_new_tokens=4, eos_token_id=1, pad_token_id=0, top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        SamplingConfig(max_new_tokens=4, eos_token_id=1, pad_token_id=0, temperature=0.0)
