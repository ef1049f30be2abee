"""Tokenizers: load a local Hugging Face tokenizer, or train a small one from text.

Nothing is downloaded: ``load_tokenizer`` reads local files only.

Conventions of the trained tokenizers:

* ``kind="bpe"`` (GPT-2 / Llama style byte-level BPE, ``tokenizers`` library, saved as a
  ``GPT2Tokenizer``): ``<|endoftext|>`` is id 0 and serves as eos, bos and unk (as GPT-2). With
  ``pad_token=None`` the pad token *is* eos (GPT-2 has no pad token; masks, not ids, mark
  padding); ``pad_token="<pad>"`` adds a dedicated pad token with id 1. No eos is appended when
  encoding.
* ``kind="sentencepiece"`` (T5 style unigram, ``sentencepiece`` library, saved as a
  ``T5Tokenizer`` without sentinel ``<extra_id_*>`` tokens): pad ``<pad>`` = 0, eos ``</s>`` = 1,
  unk ``<unk>`` = 2; encoding appends ``</s>``. ``spiece.model`` is kept next to the HF files.

``special_tokens`` are extra tokens that are never split (e.g. a separator), given the ids
right after the fixed ones. ``vocab_size`` is an upper bound: a small corpus may yield fewer.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence

import sentencepiece
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

KINDS = ("bpe", "sentencepiece")
GPT2_EOS = "<|endoftext|>"
T5_PAD, T5_EOS, T5_UNK = "<pad>", "</s>", "<unk>"


def load_tokenizer(path: str) -> transformers.PreTrainedTokenizerBase:
    """``AutoTokenizer`` from a local directory. A tokenizer without a pad token gets
    ``pad = eos`` (the GPT-2 convention); one without an eos token is an error."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"tokenizer directory {path!r} does not exist")
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.eos_token is None:
        raise ValueError(f"tokenizer at {path!r} has no eos token; set eos_token in its config")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def train_tokenizer(
    texts: Iterable[str],
    kind: str,
    vocab_size: int,
    path: str,
    *,
    pad_token: str | None = None,
    special_tokens: Sequence[str] = (),
) -> transformers.PreTrainedTokenizerBase:
    """Train a tokenizer on ``texts``, save it in HF format to ``path`` (which must not exist
    or be empty; written to a temporary directory first, then renamed), and load it back."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {KINDS}")
    if os.path.isdir(path) and os.listdir(path):
        raise FileExistsError(f"tokenizer directory {path!r} exists and is not empty")
    texts = list(texts)
    if not texts:
        raise ValueError("train_tokenizer needs at least one text")
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=".tokenizer-")
    try:
        if kind == "bpe":
            tokenizer = _train_bpe(texts, vocab_size, pad_token, special_tokens)
        else:
            tokenizer = _train_sentencepiece(texts, vocab_size, pad_token, special_tokens, staging)
        tokenizer.save_pretrained(staging)
        if os.path.isdir(path):
            os.rmdir(path)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return load_tokenizer(path)


def _train_bpe(texts, vocab_size, pad_token, special_tokens) -> transformers.GPT2Tokenizer:
    fixed = [GPT2_EOS] + ([] if pad_token in (None, GPT2_EOS) else [pad_token])
    model = Tokenizer(models.BPE())
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    model.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=fixed + list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    model.train_from_iterator(texts, trainer)
    # tokenizers >= 0.20 stores merges as pairs, older versions as "a b" strings.
    merges = json.loads(model.to_str())["model"]["merges"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]
    return transformers.GPT2Tokenizer(
        vocab=model.get_vocab(),
        merges=merges,
        eos_token=GPT2_EOS,
        bos_token=GPT2_EOS,
        unk_token=GPT2_EOS,
        pad_token=pad_token or GPT2_EOS,
        additional_special_tokens=list(special_tokens),
    )


def _train_sentencepiece(
    texts, vocab_size, pad_token, special_tokens, workdir
) -> transformers.T5Tokenizer:
    if pad_token not in (None, T5_PAD):
        raise ValueError(f"sentencepiece tokenizers use the T5 pad {T5_PAD!r}, not {pad_token!r}")
    prefix = os.path.join(workdir, "spiece")
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_prefix=prefix,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece=T5_PAD,
        eos_piece=T5_EOS,
        unk_piece=T5_UNK,
        user_defined_symbols=list(special_tokens),
        character_coverage=1.0,
        hard_vocab_limit=False,  # a small corpus may not fill vocab_size
        minloglevel=2,
    )
    os.remove(prefix + ".vocab")
    return transformers.T5Tokenizer.from_pretrained(
        workdir,
        local_files_only=True,
        extra_ids=0,
        additional_special_tokens=list(special_tokens),
    )
