"""fgjax.rewards: dense segment rewards by hand, packing, and fused reward models (tiny GPT-2
and T5) against the same models run row by row on unpadded sequences."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers

from fgjax.models import build_model
from fgjax.rewards import (
    RewardModelSpec,
    check_same_tokenizer,
    combine_rewards,
    make_reward_fn,
    pack_prompt_response,
    rm_outputs_on_response,
    score_responses,
    sequence_rewards,
    token_classification_rewards,
)

PAD = 0
R1 = RewardModelSpec(
    "relevance", "token_cls", "subsentence", positive=0.3, negative=-0.3, error_label=1,
    ok_label=2, input="rm_question",
)  # fmt: skip
R2 = RewardModelSpec(
    "factuality", "token_cls", "sentence", positive=0.5, negative=-0.5, error_label=0, ok_label=2
)
R3 = RewardModelSpec("completeness", "seq_reg", "sequence", mean=1.0, std=2.0, scale=0.3)


def logits_at(length, labels, rows):
    """``[1, length, labels]`` zeros with ``rows = {position: logits}`` filled in."""
    out = np.zeros((1, length, labels), np.float32)
    for pos, values in rows.items():
        out[0, pos] = values
    return jnp.asarray(out)


def test_dense_reward_by_hand():
    # A 7-token response (T = 8, last column padding). Sub-sentences end at tokens 2 and 6,
    # the one sentence at token 6 (the last token closes every segment).
    # R1 (error 1 vs ok 2): at 2 ok (logit 2 > 1) -> +0.3; at 6 error (3 > 0) -> -0.3.
    # R2 (error 0 vs ok 2): at 6 ok (1 > -1) -> +0.5. Logits elsewhere are ignored, even
    # error-looking ones (position 4).
    # R3: score 2 -> (2 - 1) / 2 * 0.3 + 0 = 0.15 at token 6.
    # Weights 1, 1, 1: token 2 -> 0.3; token 6 -> -0.3 + 0.5 + 0.15 = 0.35.
    # Weights 0.5, 2, 1: token 2 -> 0.15; token 6 -> -0.15 + 1.0 + 0.15 = 1.0.
    response_mask = jnp.array([[1, 1, 1, 1, 1, 1, 1, 0]])
    sub_ends = jnp.array([[0, 0, 1, 0, 0, 0, 1, 0]])
    sent_ends = jnp.array([[0, 0, 0, 0, 0, 0, 1, 0]])
    r1 = token_classification_rewards(
        logits_at(8, 3, {2: [0, 1, 2], 4: [0, 9, 0], 6: [0, 3, 0]}), sub_ends, 0.3, -0.3, 1, 2
    )
    r2 = token_classification_rewards(
        logits_at(8, 3, {6: [-1, 5, 1]}), sent_ends, 0.5, -0.5, 0, 2
    )
    r3 = sequence_rewards(jnp.array([2.0]), response_mask, 1.0, 2.0, 0.3, 0.0)
    np.testing.assert_allclose(r1.dense, [[0, 0, 0.3, 0, 0, 0, -0.3, 0]], atol=1e-7)
    np.testing.assert_allclose(r2.dense, [[0, 0, 0, 0, 0, 0, 0.5, 0]], atol=1e-7)
    np.testing.assert_allclose(r3.dense, [[0, 0, 0, 0, 0, 0, 0.15, 0]], atol=1e-7)
    assert (int(r1.n_segments[0]), int(r1.n_errors[0])) == (2, 1)
    outputs = {"relevance": r1, "factuality": r2, "completeness": r3}
    dense, metrics = combine_rewards(outputs, (R1, R2, R3))
    np.testing.assert_allclose(dense, [[0, 0, 0.3, 0, 0, 0, 0.35, 0]], atol=1e-6)
    assert float(metrics["reward/relevance"]) == pytest.approx(0.0, abs=1e-7)
    assert float(metrics["reward/relevance_ok_ratio"]) == pytest.approx(0.5)
    assert float(metrics["reward/factuality_ok_ratio"]) == pytest.approx(1.0)
    assert float(metrics["reward/completeness_score"]) == pytest.approx(0.5)
    weighted = (
        RewardModelSpec(**{**R1.__dict__, "weight": 0.5}),
        RewardModelSpec(**{**R2.__dict__, "weight": 2.0}),
        R3,
    )
    dense, _ = combine_rewards(outputs, weighted)
    np.testing.assert_allclose(dense, [[0, 0, 0.15, 0, 0, 0, 1.0, 0]], atol=1e-6)


def test_error_decision_argmax_and_ties():
    ends = jnp.array([[1, 1, 1]])
    logits = jnp.array([[[0.0, 2.0, 1.0], [3.0, 1.0, 2.0], [0.0, 1.0, 1.0]]])
    # Full argmax, error label 1: argmaxes 1, 0, 1 (a tie picks the first) -> -, +, -.
    plain = token_classification_rewards(logits, ends, 1.0, -1.0, error_label=1)
    np.testing.assert_allclose(plain.dense, [[-1, 1, -1]])
    # Two-way (error 1 vs ok 2): 2 > 1 error; 1 < 2 ok; tie 1 == 1 -> error, as torch.argmax.
    pair = token_classification_rewards(logits, ends, 1.0, -1.0, error_label=1, ok_label=2)
    np.testing.assert_allclose(pair.dense, [[-1, 1, -1]])
    pair = token_classification_rewards(logits, ends, 1.0, -1.0, error_label=2, ok_label=0)
    np.testing.assert_allclose(pair.dense, [[-1, 1, -1]])  # 1 > 0; 2 < 3; 1 > 0
    assert int(pair.n_errors[0]) == 2


def test_sequence_reward_lands_on_each_rows_last_token():
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    dense = sequence_rewards(jnp.array([3.0, -1.0, 1.0, 5.0]), mask, 1.0, 2.0, 0.3, 0.1).dense
    # (s - 1) / 2 * 0.3 + 0.1: 3 -> 0.4; -1 -> -0.2; 1 -> 0.1; the empty row gets nothing.
    want = [[0, 0, 0, 0.4], [0, -0.2, 0, 0], [0.1, 0, 0, 0], [0, 0, 0, 0]]
    np.testing.assert_allclose(dense, want, atol=1e-6)


def test_pack_prompt_response_by_hand():
    prompt_ids = jnp.array([[11, 12, 0, 0], [0, 0, 0, 21], [31, 32, 33, 34]])  # right, left, full
    prompt_mask = jnp.array([[1, 1, 0, 0], [0, 0, 0, 1], [1, 1, 1, 1]])
    response_ids = jnp.array([[5, 6, 9], [7, 9, 9], [8, 4, 3]])
    response_mask = jnp.array([[1, 1, 0], [1, 0, 0], [1, 1, 1]])
    ids, mask, lengths = pack_prompt_response(
        prompt_ids, prompt_mask, response_ids, response_mask, PAD
    )
    np.testing.assert_array_equal(
        ids, [[11, 12, 5, 6, 0, 0, 0], [21, 7, 0, 0, 0, 0, 0], [31, 32, 33, 34, 8, 4, 3]]
    )
    np.testing.assert_array_equal(
        mask, [[1, 1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]]
    )
    np.testing.assert_array_equal(lengths, [2, 1, 4])


# ---- fused reward models on tiny random GPT-2 / T5 -------------------------------------------

VOCAB, END_IDS = 40, (3, 4)  # tokens 3 and 4 end a segment in these tests
GPT2 = dict(vocab_size=VOCAB, n_positions=32, n_embd=16, n_layer=1, n_head=2,
            pad_token_id=PAD, bos_token_id=1, eos_token_id=2)
T5 = dict(
    vocab_size=VOCAB, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2,
    relative_attention_num_buckets=8, relative_attention_max_distance=16,
    decoder_start_token_id=PAD, dropout_rate=0.0,
)  # fmt: skip


def segment_fn(response_ids, response_mask):
    """Segment ends: an END_IDS token, or the last response token; both levels the same."""
    last = jnp.arange(response_ids.shape[1])[None] == (jnp.sum(response_mask, 1) - 1)[:, None]
    ends = (jnp.isin(response_ids, jnp.array(END_IDS)) | last) & (response_mask > 0)
    return {"subsentence": ends.astype(jnp.int32), "sentence": ends.astype(jnp.int32)}


def fused_inputs(seed=0, prompts=2, samples=2, n_new=6):
    rng = np.random.default_rng(seed)
    rows = prompts * samples
    response_ids = rng.integers(3, VOCAB, size=(rows, n_new))
    lengths = np.array([5, 3, n_new, 1])[:rows]
    response_mask = (np.arange(n_new)[None] < lengths[:, None]).astype(np.int32)
    response_ids[0, 1], response_ids[2, 2] = END_IDS  # segment ends inside responses
    response_ids = np.where(response_mask > 0, response_ids, PAD)
    question_mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]])[:prompts]  # right-padded
    prompt_mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])[:prompts]  # left-padded
    batch = {
        "rm_question_ids": np.where(question_mask, rng.integers(5, VOCAB, (prompts, 4)), PAD),
        "rm_question_mask": question_mask,
        "prompt_ids": np.where(prompt_mask, rng.integers(5, VOCAB, (prompts, 5)), PAD),
        "prompt_mask": prompt_mask,
    }
    return batch, response_ids, response_mask


@functools.partial(jax.jit, static_argnums=0)
def apply_model(model, params, *inputs):
    return model(params, *inputs)


def row_by_row(specs, models, params, batch, response_ids, response_mask, width=12):
    """The weighted dense reward computed one response at a time: the RM prompt's real tokens
    and the response's real tokens joined on the host, padded on the right to ``width`` (which
    cannot change earlier outputs) so each model compiles once."""
    samples = response_ids.shape[0] // batch["prompt_ids"].shape[0]
    ends = np.asarray(segment_fn(jnp.asarray(response_ids), jnp.asarray(response_mask))["sentence"])
    dense = np.zeros(response_ids.shape)
    for r in range(response_ids.shape[0]):
        n = int(response_mask[r].sum())
        for spec in specs:
            ids_key, mask_key = spec.input_keys
            prompt = list(batch[ids_key][r // samples][batch[mask_key][r // samples] > 0])
            tokens = prompt + list(response_ids[r, :n])
            seq = jnp.asarray([tokens + [PAD] * (width - len(tokens))])
            mask = jnp.asarray([[1] * len(tokens) + [0] * (width - len(tokens))])
            model = models[spec.name]
            if spec.kind == "token_cls":
                logits = np.asarray(apply_model(model, params[spec.name], seq, mask))[0]
                for j in range(n):
                    if ends[r, j]:
                        ok, error = logits[len(prompt) + j, [spec.ok_label, spec.error_label]]
                        reward = spec.negative if error >= ok else spec.positive
                        dense[r, j] += spec.weight * reward
            else:
                extra = ()
                if model.is_encoder_decoder:
                    extra = (jnp.concatenate([jnp.full((1, 1), PAD), seq[:, :-1]], 1), mask)
                score = float(apply_model(model, params[spec.name], seq, mask, *extra)[0])
                normalised = (score - spec.mean) / spec.std * spec.scale + spec.bias
                dense[r, n - 1] += spec.weight * normalised
    return dense


def check_fused_against_rows(family_config, key):
    specs = (
        R1,
        RewardModelSpec(**{**R2.__dict__, "weight": 2.0}),
        R3,
    )
    keys = jax.random.split(key, 3)
    models, params = {}, {}
    for spec, k, labels in zip(specs, keys, (3, 3, 1)):
        model = build_model(family_config(num_labels=labels).to_dict(), head=spec.kind)
        models[spec.name], params[spec.name] = model, jax.jit(model.init)(k)
    batch, response_ids, response_mask = fused_inputs()
    reward_fn = jax.jit(make_reward_fn(models, specs, segment_fn, PAD))
    dense, metrics = reward_fn(
        params, jax.tree.map(jnp.asarray, batch), jnp.asarray(response_ids),
        jnp.asarray(response_mask),
    )  # fmt: skip
    want = row_by_row(specs, models, params, batch, response_ids, response_mask)
    np.testing.assert_allclose(np.asarray(dense), want, atol=1e-5)
    # Every segment end gets a reward (R3 adds to the last ones); inner ends exist.
    ends = np.asarray(segment_fn(jnp.asarray(response_ids), jnp.asarray(response_mask))["sentence"])
    assert np.count_nonzero(want) == ends.sum() > response_ids.shape[0]
    assert np.all(np.asarray(dense)[response_mask == 0] == 0)
    assert set(metrics) >= {"reward/relevance_ok_ratio", "reward/completeness_score"}


def test_fused_gpt2_reward_models_match_unpadded_rows():
    check_fused_against_rows(
        lambda **kw: transformers.GPT2Config(**GPT2, **kw), jax.random.key(0)
    )


def test_fused_t5_reward_models_match_unpadded_rows():
    check_fused_against_rows(lambda **kw: transformers.T5Config(**T5, **kw), jax.random.key(1))


def test_score_responses_errors_name_the_reward_model():
    # Every error here is raised before any parameter is read.
    model, params = build_model(GPT2 | {"model_type": "gpt2", "num_labels": 3}, "token_cls"), None
    batch, response_ids, response_mask = fused_inputs()
    segments = segment_fn(jnp.asarray(response_ids), jnp.asarray(response_mask))
    args = (jnp.asarray(response_ids), jnp.asarray(response_mask), segments, PAD)
    missing = {k: v for k, v in batch.items() if not k.startswith("rm_question")}
    with pytest.raises(KeyError, match="'relevance' reads batch\\['rm_question_ids'\\]"):
        score_responses({"relevance": model}, {"relevance": params}, (R1,), missing, *args)
    wrong = {**R3.__dict__, "name": "relevance"}
    with pytest.raises(ValueError, match="'relevance': spec kind 'seq_reg', model head"):
        score_responses(
            {"relevance": model}, {"relevance": params}, (RewardModelSpec(**wrong),), batch, *args
        )
    three = {k: v[:1] if k.endswith(("_ids", "_mask")) else v for k, v in batch.items()}
    odd = (jnp.asarray(response_ids[:3]), jnp.asarray(response_mask[:3]), segments, PAD)
    three["rm_question_ids"] = np.concatenate([batch["rm_question_ids"]] * 2)[:2]
    three["rm_question_mask"] = np.concatenate([batch["rm_question_mask"]] * 2)[:2]
    with pytest.raises(ValueError, match="3 responses is not a multiple of the 2 prompts"):
        score_responses({"relevance": model}, {"relevance": params}, (R1,), three, *odd)
    with pytest.raises(ValueError, match="repeated: \\['relevance'\\]"):
        make_reward_fn({"relevance": model}, (R1, R1), segment_fn, PAD)


def test_spec_validation_names_the_field():
    with pytest.raises(ValueError, match="'r1': level='sequence' for kind 'token_cls'"):
        RewardModelSpec("r1", "token_cls", "sequence", error_label=1)
    with pytest.raises(ValueError, match="'r1': token_cls needs error_label"):
        RewardModelSpec("r1", "token_cls", "sentence")
    with pytest.raises(ValueError, match="'r3': std must be > 0"):
        RewardModelSpec("r3", "seq_reg", "sequence", std=0.0)
    with pytest.raises(ValueError, match="kind='cls'"):
        RewardModelSpec("r3", "cls", "sequence")
    assert R1.input_keys == ("rm_question_ids", "rm_question_mask")


def word_tokenizer(words):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>")


def test_check_same_tokenizer():
    policy = word_tokenizer(["a", "b", "c"])
    check_same_tokenizer(policy, {"relevance": word_tokenizer(["a", "b", "c"])})
    with pytest.raises(ValueError, match="reward model 'factuality': its tokenizer's vocab"):
        check_same_tokenizer(
            policy,
            {"relevance": word_tokenizer(["a", "b", "c"]), "factuality": word_tokenizer(["c"])},
        )


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_token_cls_outputs_match_the_rm_training_layout(family):
    """RM training data (fgjax.data.rm_tokenize) uses ``concat_prompt_response``'s layout
    (prompt left-padded, answer from column P); a token classifier reads the same logits on
    response tokens from our packed rows."""
    from fgjax.sequences import concat_prompt_response

    config = (
        transformers.GPT2Config(**GPT2, num_labels=3)
        if family == "gpt2"
        else transformers.T5Config(**T5, num_labels=3)
    )
    model = build_model(config.to_dict(), head="token_cls")
    params = jax.jit(model.init)(jax.random.key(2))
    batch, response_ids, response_mask = fused_inputs()
    prompt_ids = jnp.repeat(jnp.asarray(batch["prompt_ids"]), 2, axis=0)
    prompt_mask = jnp.repeat(jnp.asarray(batch["prompt_mask"]), 2, axis=0)
    response_ids, response_mask = jnp.asarray(response_ids), jnp.asarray(response_mask)
    ours = jax.jit(rm_outputs_on_response, static_argnums=(0, 6))(
        model, params, prompt_ids, prompt_mask, response_ids, response_mask, PAD
    )
    ids, mask = concat_prompt_response(prompt_ids, prompt_mask, response_ids, response_mask, PAD)
    p = prompt_ids.shape[1]
    theirs = apply_model(model, params, ids, mask)[:, p:]
    real = np.asarray(response_mask) > 0
    np.testing.assert_allclose(np.asarray(ours)[real], np.asarray(theirs)[real], atol=1e-5)
