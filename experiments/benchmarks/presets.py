"""Benchmark sizes shared by ``ppo_step.py`` (fgjax) and ``torch_reference.py`` (PyTorch): one
``Preset`` per named setup, the ``transformers`` configs of every model, a synthetic
vocabulary and random prompts. Both sides build their models from the same HF configs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import transformers

PAD, EOS, UNK = 0, 1, 2  # T5's special ids; the synthetic vocabulary keeps them
PUNCTUATION = (b".", b",", b";", b"!", b"?")  # pieces that may close (sub-)sentences


@dataclasses.dataclass(frozen=True)
class Preset:
    family: str  # "t5" | "qwen2"
    vocab: int
    d_model: int
    heads: int
    kv_heads: int  # qwen2 only (grouped-query attention)
    d_kv: int  # t5 only
    d_ff: int
    layers: int  # t5: encoder and decoder layers each
    rm_d_model: int  # reward models: same family, their own width and depth
    rm_layers: int
    prompts: int
    samples: int  # per prompt
    prompt_len: int
    rm_question_len: int  # R1 reads [question ; response]; R2/R3 read [prompt ; response]
    new_tokens: int
    ppo_epochs: int
    minibatch: int  # rollout rows per minibatch
    reward_models: tuple[str, ...]  # of ("r1", "r2", "r3")
    top_k: int = 20
    temperature: float = 0.7
    kl_coef: float = 0.3
    learning_rate: float = 1e-5
    max_grad_norm: float = 1.0

    @property
    def rows(self) -> int:
        return self.prompts * self.samples


PRESETS = {
    # The official release's QA setup (T5 policy/value, R1/R2/R3, 4 samples, top-k 20, T 0.7,
    # 4 epochs, reference normalisation) shrunk for a 2-core CPU.
    "qa_release": Preset(
        family="t5", vocab=8000, d_model=128, heads=4, kv_heads=4, d_kv=32, d_ff=512, layers=2,
        rm_d_model=128, rm_layers=4, prompts=8, samples=4, prompt_len=256, rm_question_len=32,
        new_tokens=64, ppo_epochs=4, minibatch=4, reward_models=("r1", "r2", "r3"),
    ),
    "qwen2": Preset(
        family="qwen2", vocab=32000, d_model=128, heads=4, kv_heads=2, d_kv=32, d_ff=512,
        layers=2, rm_d_model=128, rm_layers=2, prompts=8, samples=1, prompt_len=16,
        rm_question_len=16, new_tokens=32, ppo_epochs=1, minibatch=4, reward_models=("r1",),
    ),
    # Minimal sizes for the smoke test: every code path, seconds.
    "smoke": Preset(
        family="t5", vocab=64, d_model=16, heads=2, kv_heads=2, d_kv=8, d_ff=32, layers=1,
        rm_d_model=16, rm_layers=1, prompts=2, samples=2, prompt_len=8, rm_question_len=4,
        new_tokens=4, ppo_epochs=2, minibatch=2, reward_models=("r1", "r2", "r3"),
    ),
}

# How each reward model reads the response: (head, level, batch input, +/- reward).
REWARD_MODELS = {
    "r1": ("token_cls", "subsentence", "rm_question", 0.3),
    "r2": ("token_cls", "sentence", "rm_passages", 0.5),
    "r3": ("seq_reg", "sequence", "rm_passages", 0.0),
}
R3_SCALE = 0.3


def policy_config(p: Preset) -> transformers.PretrainedConfig:
    """The policy's (and value model's, and reference's) HF config."""
    return _config(p, p.d_model, p.d_ff, p.layers, num_labels=2)


def reward_config(p: Preset, name: str) -> transformers.PretrainedConfig:
    head = REWARD_MODELS[name][0]
    if head == "seq_reg" and p.family == "t5":  # encoder + decoder: half the depth each
        return _config(p, p.rm_d_model, 4 * p.rm_d_model, max(p.rm_layers // 2, 1), 1)
    return _config(p, p.rm_d_model, 4 * p.rm_d_model, p.rm_layers, 1 if head == "seq_reg" else 3)


def _config(p: Preset, width: int, d_ff: int, layers: int, num_labels: int):
    if p.family == "t5":
        return transformers.T5Config(
            vocab_size=p.vocab, d_model=width, d_kv=p.d_kv, d_ff=d_ff, num_layers=layers,
            num_decoder_layers=layers, num_heads=p.heads, feed_forward_proj="relu",
            pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD,
            num_labels=num_labels, dropout_rate=0.0,
        )
    if p.family == "qwen2":
        return transformers.Qwen2Config(
            vocab_size=p.vocab, hidden_size=width, intermediate_size=d_ff,
            num_hidden_layers=layers, num_attention_heads=p.heads,
            num_key_value_heads=p.kv_heads, max_position_embeddings=p.prompt_len + p.new_tokens,
            tie_word_embeddings=False, pad_token_id=PAD, eos_token_id=EOS, bos_token_id=EOS,
            num_labels=num_labels,
        )
    raise ValueError(f"preset family {p.family!r}; allowed 't5', 'qwen2'")


def synthetic_pieces(vocab: int, seed: int = 0) -> list[bytes]:
    """Bytes of every id: specials (empty), punctuation pieces, and words with or without a
    leading space (continuations), so that sentences and sub-sentences occur in samples."""
    rng = np.random.default_rng(seed)
    pieces = [b"", b"", b""]  # pad, eos, unk
    while len(pieces) < vocab:
        i = len(pieces)
        if i % 40 < len(PUNCTUATION):  # ~12% punctuation
            pieces.append(PUNCTUATION[i % 40])
        else:
            word = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=rng.integers(1, 6)))
            pieces.append((" " if rng.random() < 0.8 else "").encode() + f"{word}{i}".encode())
    return pieces[:vocab]


def segment_end_ids(vocab: int) -> tuple[set[int], set[int]]:
    """Ids of pieces ending a sentence (``.!?``) and a sub-sentence (``,;!?``)."""
    pieces = synthetic_pieces(vocab)
    sentence = {i for i, s in enumerate(pieces) if s in (b".", b"!", b"?")}
    subsentence = {i for i, s in enumerate(pieces) if s in (b",", b";", b"!", b"?")}
    return sentence, subsentence


def random_batch(p: Preset, seed: int = 0) -> dict[str, np.ndarray]:
    """Right-padded int32 prompts: ``prompt`` ``[B, P]`` (= ``rm_passages``, the release's R2/R3
    input) and ``rm_question`` ``[B, Q]``, each row of random length over at least half."""
    rng = np.random.default_rng(seed)
    batch = {}
    for name, length in (("prompt", p.prompt_len), ("rm_question", p.rm_question_len)):
        ids = rng.integers(3, p.vocab, size=(p.prompts, length)).astype(np.int32)
        lengths = rng.integers(max(length // 2, 1), length + 1, size=p.prompts)
        mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
        batch[f"{name}_ids"] = np.where(mask > 0, ids, PAD).astype(np.int32)
        batch[f"{name}_mask"] = mask
    batch["rm_passages_ids"], batch["rm_passages_mask"] = batch["prompt_ids"], batch["prompt_mask"]
    return batch
